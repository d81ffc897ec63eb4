"""Reproducibility: the same config and seed give bit-identical datasets whatever the thread count or chunking.

Every random number is keyed by (seed, draw, slot, year, stream) and each draw is written to its own row,
so ``NUMBA_NUM_THREADS`` and ``simulation.chunk_draws`` must not change a single bit. Datasets are compared
variable by variable with ``assert_array_equal``; global attrs may differ only in ``created``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import leadsim

REPO = Path(__file__).resolve().parents[1]
SMALL = {"aco.beneficiaries": 300, "simulation.draws": 20, "aco.growth": 0.01}


def _attrs(ds: xr.Dataset) -> dict:
    """Global attrs without ``created``, with the config parsed and its ``simulation.chunk_draws`` dropped
    (the chunk size is recorded in the config but, by contract, changes nothing else)."""
    out = {k: v for k, v in ds.attrs.items() if k != "created"}
    cfg = tomllib.loads(out.pop("config_toml"))
    cfg["simulation"].pop("chunk_draws")
    out["config"] = cfg
    return out


def assert_identical(a: xr.Dataset, b: xr.Dataset) -> None:
    """Same variables, coordinates and bits; attrs equal except the creation time (and the chunk size)."""
    assert set(a.data_vars) == set(b.data_vars)
    for name in a.data_vars:
        assert a[name].dims == b[name].dims, name
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
        assert a[name].attrs == b[name].attrs, name
    for name in a.coords:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    assert set(a.attrs) == set(b.attrs)
    assert _attrs(a) == _attrs(b)


@pytest.mark.slow
def test_threads_1_vs_2_bit_identical(tmp_path):
    """``leadsim run`` in subprocesses with NUMBA_NUM_THREADS=1 and 2 writes the same data."""
    sets = [arg for k, v in SMALL.items() for arg in ("--set", f"{k}={v}")]
    procs = {}
    for n in (1, 2):
        # the subprocess imports this checkout's leadsim, whatever copy is installed
        path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "NUMBA_NUM_THREADS": str(n), "CI": "1", "PYTHONPATH": path}
        cmd = [sys.executable, "-m", "leadsim.cli", "run", str(REPO / "configs" / "default.toml"),
               "-o", str(tmp_path / f"t{n}.nc"), "-q", *sets]
        procs[n] = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
    for n, p in procs.items():
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, (n, out, err)
    a, b = leadsim.open(tmp_path / "t1.nc"), leadsim.open(tmp_path / "t2.nc")
    assert a.sizes["draw"] == 20
    assert a.expenditure.values.std(axis=0).min() > 0  # draws differ from one another
    assert_identical(a, b)


def test_chunk_draws_bit_identical():
    """chunk_draws 1, 7 and 64 give the same bits."""
    runs = {}
    for chunk in (1, 7, 64):
        cfg = leadsim.load_config(overrides={**SMALL, "simulation.chunk_draws": chunk})
        runs[chunk] = leadsim.simulate(cfg, progress=False)
    assert_identical(runs[1], runs[7])
    assert_identical(runs[1], runs[64])


@pytest.mark.slow
def test_common_random_numbers_across_presets():
    """A different policy on the same seed sees the same spending (and another seed does not)."""
    base = leadsim.simulate(leadsim.load_config(overrides=SMALL), progress=False)
    other = leadsim.simulate(leadsim.load_config(overrides={**SMALL, "policy.preset": "mssp_enhanced"}),
                             progress=False)
    assert other.attrs["policy_name"] != base.attrs["policy_name"]
    for name in ("expenditure", "member_months", "deaths", "entrants", "outliers", "national_growth",
                 "aco_growth", "quality_score"):
        np.testing.assert_array_equal(other[name].values, base[name].values, err_msg=name)
    assert not np.array_equal(other.stop_loss_payout.values, base.stop_loss_payout.values)
    # the seed is the only source of randomness: another seed gives other spending
    reseeded = leadsim.simulate(leadsim.load_config(overrides={**SMALL, "simulation.seed": 7}), progress=False)
    assert not np.array_equal(reseeded.expenditure.values, base.expenditure.values)


def test_thread_setting_is_restored_after_a_run():
    """``simulation.threads`` applies to the run only: numba's process-wide thread count is put back."""
    import numba

    from tests.helpers import small_config

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs a numba pool of at least 2 threads")
    numba.set_num_threads(2)
    leadsim.simulate(small_config(**{"simulation.threads": 1, "simulation.draws": 4}), progress=False)
    assert numba.get_num_threads() == 2
    numba.set_num_threads(1)
    leadsim.simulate(small_config(**{"simulation.threads": 2, "simulation.draws": 4}), progress=False)
    assert numba.get_num_threads() == 1
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
