"""`leadsim run` end to end: dataset, one-screen summary, optional HTML report."""

from __future__ import annotations

import numpy as np

import leadsim
from leadsim.cli import main


def test_run_writes_dataset_summary_and_report(tmp_path, capsys):
    out, html = tmp_path / "r.nc", tmp_path / "r.html"
    rc = main(["run", "configs/default.toml", "-o", str(out), "--report", str(html), "--draws", "100",
               "--set", "aco.beneficiaries=400"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "1-in-100 10-year total" in text and "global" in text and "professional" in text
    ds = leadsim.open(out)
    assert ds.sizes["draw"] == 100
    # the summary's ten-year mean is the dataset's
    mean_global = float(ds.cumulative_settlement.sel(track="global").mean())
    assert np.isfinite(mean_global)
    page = html.read_text()
    assert page.count("<img") >= 8 and "Assumptions in force" in page


def test_run_report_folder_missing_is_usage_error(tmp_path, capsys):
    rc = main(["run", "configs/default.toml", "-o", str(tmp_path / "r.nc"), "--report",
               str(tmp_path / "no" / "r.html"), "--draws", "2", "--set", "aco.beneficiaries=50"])
    assert rc == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "r.nc").exists()
