"""numba's on-disk cache never serves a stale kernel after an edit of ``leadsim/model/_kernel.py``.

numba keys a cached kernel on the source file of the compiled function (its timestamp and size), so a
helper or constant in another module could change while the old machine code is reused. leadsim keeps every
``@njit`` function and every constant a kernel reads in ``_kernel.py`` (``test_architecture`` checks the
first). Here a copy of the package is run in fresh processes sharing one ``NUMBA_CACHE_DIR``:

1. a cold run compiles and writes the cache (a cache miss);
2. an unchanged rerun loads the kernel from the cache (a hit, no miss) and gives identical numbers;
3. after editing an inlined helper (fast test) or a constant the kernel reads (slow test) in the copy's
   ``_kernel.py``, a fresh run recompiles (a miss) and its numbers change as the edit implies.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "leadsim"

FLOOR = """
import json, numpy as np
from leadsim.model import _kernel
out = np.zeros(3)
_kernel.floor_chunk(np.uint64(7), np.arange(3, dtype=np.int64), 40, 10, 0.5, out)
st = _kernel.floor_chunk.stats
print(json.dumps({"file": _kernel.__file__, "x": out.tolist(),
                  "hits": sum(st.cache_hits.values()), "misses": sum(st.cache_misses.values())}))
"""

SIMULATE = """
import json, warnings
import leadsim
from leadsim.model import _kernel
warnings.simplefilter("ignore")
cfg = leadsim.load_config(overrides={"simulation.draws": 3, "aco.beneficiaries": 200, "simulation.chunk_draws": 3})
ds = leadsim.simulate(cfg, progress=False)
st = _kernel.cohort_chunk.stats
print(json.dumps({"file": _kernel.__file__, "x": ds.expenditure.values.ravel().tolist(),
                  "entrants": ds.entrants.values.ravel().tolist(),
                  "hits": sum(st.cache_hits.values()), "misses": sum(st.cache_misses.values())}))
"""


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "pkg"
    shutil.copytree(PACKAGE, root / "leadsim", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    configs = PACKAGE.parent / "configs"
    if configs.is_dir():
        shutil.copytree(configs, root / "configs")
    return root


def _run(root: Path, tmp_path: Path, script: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "LEADSIM_", "PYTHON"))}
    env.update(PYTHONPATH=str(root), NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"),
               LEADSIM_CACHE_DIR=str(tmp_path / "table-cache"), NUMBA_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(out["file"]).resolve() == (root / "leadsim" / "model" / "_kernel.py").resolve()  # the copy ran
    return out


def _edit(root: Path, old: str, new: str) -> None:
    f = root / "leadsim" / "model" / "_kernel.py"
    text = f.read_text()
    assert text.count(old) == 1, old
    f.write_text(text.replace(old, new))


def _cold_warm(root, tmp_path, script):
    cold = _run(root, tmp_path, script)
    assert (cold["hits"], cold["misses"]) == (0, 1)  # compiled and written to the cache
    assert any((tmp_path / "numba-cache").rglob("*.nbi"))
    warm = _run(root, tmp_path, script)
    assert (warm["hits"], warm["misses"]) == (1, 0)  # loaded from the cache, not compiled
    assert warm["x"] == cold["x"]
    return cold


def test_an_edited_inline_helper_is_recompiled(tmp_path):
    root = _copy(tmp_path)
    before = _cold_warm(root, tmp_path, FLOOR)
    # ``uniforms`` is inlined into every kernel: halve u1, so every Box-Muller radius grows
    _edit(root, "u1 = (float(w >> _S32) + 1.0) * _INV32\n", "u1 = (float(w >> _S32) + 1.0) * _INV32 * 0.5\n")
    after = _run(root, tmp_path, FLOOR)
    assert after["misses"] == 1 and after["hits"] == 0
    assert all(a != b for a, b in zip(after["x"], before["x"], strict=True))
    again = _run(root, tmp_path, FLOOR)  # and the new kernel is what the cache now serves
    assert (again["hits"], again["misses"], again["x"]) == (1, 0, after["x"])


@pytest.mark.slow
def test_an_edited_kernel_constant_is_recompiled(tmp_path):
    root = _copy(tmp_path)
    before = _cold_warm(root, tmp_path, SIMULATE)
    # an entrant's spending is half a year's draw; make it a quarter: only entrants' spending changes
    _edit(root, "ENTRANT_EXPOSURE = 0.5\n", "ENTRANT_EXPOSURE = 0.25\n")
    after = _run(root, tmp_path, SIMULATE)
    assert after["misses"] == 1
    assert after["entrants"] == before["entrants"] and sum(before["entrants"]) > 0
    assert sum(after["x"]) < sum(before["x"])
    changed = [i for i, (a, b) in enumerate(zip(after["x"], before["x"], strict=True)) if a != b]
    assert changed and all(before["entrants"][i] > 0 for i in changed)
