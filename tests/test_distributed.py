"""dask.distributed scale-out: a 2-worker LocalCluster gives the serial dataset bit for bit."""

from __future__ import annotations

import sys
from pathlib import Path

import numba
import pytest

import leadsim
from leadsim.cli import main
from tests.helpers import assert_same_run as _same
from tests.helpers import interrupt_after, run_zarr, small_config

pytest.importorskip("distributed")

from leadsim.distributed import DaskUnavailableError, cluster, require_dask, simulate_distributed
from leadsim.io.zarrstore import read_manifest

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"aco.beneficiaries": 300, "simulation.draws": 16, "simulation.chunk_draws": 4}


@pytest.fixture(scope="module")
def client():
    with cluster(workers=2) as c:  # 2 processes x 1 thread, numba with 1 thread each
        yield c


def test_two_worker_cluster_equals_serial_run(client, tmp_path):
    cfg = small_config(**SMALL)
    serial = leadsim.simulate(cfg, progress=False)
    dist = simulate_distributed(cfg, client)
    _same(dist, serial)
    assert float(dist.net_settlement.sum()) == float(serial.net_settlement.sum())
    # each worker: NUMBA_NUM_THREADS=1 in its environment, and tasks ran numba on one thread
    envs = client.run(lambda: __import__("os").environ.get("NUMBA_NUM_THREADS"))
    assert sorted(envs.values()) == ["1", "1"]
    seen = client.run(lambda: numba.get_num_threads())
    assert sorted(seen.values()) == [1, 1]
    # a Zarr run on the cluster, interrupted after two chunks and resumed there, equals the serial run
    path = tmp_path / "run.zarr"
    with pytest.raises(KeyboardInterrupt):
        run_zarr(cfg, path, client=client, on_chunk=interrupt_after(2), progress=False)
    assert read_manifest(path).n_done == 2
    run_zarr(cfg, path, client=client, resume=True, progress=False)
    _same(leadsim.open(path), serial)


def test_missing_dask_gives_install_hint(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(DaskUnavailableError, match=r"pip install 'leadsim\[dask\]'"):
        require_dask()
    rc = main(["run", str(ROOT / "configs/default.toml"), "--workers", "2", "-q", "-o", "unused.nc"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith("leadsim: error: running on a dask cluster needs dask.distributed")
    assert not Path("unused.nc").exists()


def test_bad_scheduler_address_is_one_line(capsys):
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        rc = main(["run", str(ROOT / "configs/default.toml"), "--scheduler", "tcp://127.0.0.1:9", "-q", "-o",
                   "unused.nc", "--draws", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert err[0].startswith("leadsim: error: cannot connect to the dask scheduler at tcp://127.0.0.1:9")


@pytest.mark.slow
def test_cli_workers_flag_equals_serial(tmp_path):
    """`leadsim run --workers 2` writes the same netCDF as a serial run (slow: starts its own cluster)."""
    sets = [f"--set={k}={v}" for k, v in SMALL.items()]
    assert main(["run", str(ROOT / "configs/default.toml"), "-q", "--workers", "2", "-o",
                 str(tmp_path / "d.nc"), *sets]) == 0
    assert main(["run", str(ROOT / "configs/default.toml"), "-q", "-o", str(tmp_path / "s.nc"), *sets]) == 0
    _same(leadsim.open(tmp_path / "d.nc"), leadsim.open(tmp_path / "s.nc"))


@pytest.mark.parametrize("mode", ["qmc", "tilted"])
def test_cluster_equals_serial_run_in_every_sampling_mode(client, mode):
    """QMC points and tilted weights are keyed by draw index, so two dask workers give the serial bits."""
    cfg = small_config(**{**SMALL, "simulation.sampling": mode})
    serial = leadsim.simulate(cfg, progress=False)
    _same(simulate_distributed(cfg, client), serial)
    assert serial.attrs["sampling"] == mode
