"""The notebooks execute headless (nbclient) at a small draw count, as in CI."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_notebooks_found_and_committed_without_outputs():
    assert [p.name for p in NOTEBOOKS] == ["01_quickstart.ipynb", "02_tail_risk.ipynb", "03_lead_vs_mssp.ipynb",
                                         "04_decisions.ipynb", "05_fit_your_aco.ipynb"]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear outputs"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, monkeypatch, tmp_path):
    monkeypatch.setenv("LEADSIM_NB_DRAWS", os.environ.get("LEADSIM_NB_DRAWS", "100"))
    monkeypatch.setenv("LEADSIM_NB_BENEFICIARIES", os.environ.get("LEADSIM_NB_BENEFICIARIES", "1000"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    repo = str(Path(__file__).resolve().parents[1])  # the kernel imports this checkout's leadsim
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3
