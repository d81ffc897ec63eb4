"""Resumable Zarr runs: chunk-by-chunk region writes, the manifest, resume, refusal of changed configs."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import leadsim
from leadsim.cli import main
from leadsim.errors import ResumeMismatchError, StoreError
from leadsim.io.zarrstore import MANIFEST_NAME, read_manifest
from tests.helpers import assert_same_run as _same
from tests.helpers import interrupt_after, run_zarr, small_config

pytest.importorskip("zarr")
pytest.importorskip("dask")

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"aco.beneficiaries": 300, "simulation.draws": 16, "simulation.chunk_draws": 4}


@pytest.fixture(scope="module")
def cfg():
    return small_config(**SMALL)


@pytest.fixture(scope="module")
def serial(cfg):
    return leadsim.simulate(cfg, progress=False)


def test_zarr_run_equals_serial_and_is_draw_chunked(cfg, serial, tmp_path):
    written = []
    m = run_zarr(cfg, tmp_path / "run.zarr", progress=False, on_chunk=lambda lo, hi, r: written.append((lo, hi)))
    assert written == [(0, 4), (4, 8), (8, 12), (12, 16)]
    assert m.complete and m.chunks_done == [[0, 4]] and m.n_chunks == 4
    back = leadsim.open(tmp_path / "run.zarr")
    _same(back, serial)
    lazy = xr.open_zarr(tmp_path / "run.zarr")
    assert lazy.net_settlement.encoding["chunks"] == (4, 10, 2)
    assert lazy.member_months.encoding["chunks"] == (4, 10, 3)
    manifest = json.loads((tmp_path / "run.zarr" / MANIFEST_NAME).read_text())
    assert manifest["seed"] == 20270101 and manifest["chunk_draws"] == 4 and manifest["draws"] == 16
    assert len(manifest["config_hash"]) == 64 and manifest["config"]["aco.beneficiaries"] == 300


def test_interrupted_run_resumes_only_missing_chunks(cfg, serial, tmp_path):
    path = tmp_path / "run.zarr"
    with pytest.raises(KeyboardInterrupt):
        run_zarr(cfg, path, progress=False, on_chunk=interrupt_after(2))
    m = read_manifest(path)
    assert m.chunks_done == [[0, 2]] and not m.complete and m.n_done == 2
    with pytest.raises(StoreError, match=r"incomplete run \(2 of 4 chunks written\)"):
        leadsim.open(path)
    part = leadsim.io.zarrstore.open_store(path, allow_incomplete=True)
    assert np.isnan(part.net_settlement.values[8:]).all()
    np.testing.assert_array_equal(part.net_settlement.values[:8], serial.net_settlement.values[:8])
    resumed = []
    m = run_zarr(cfg, path, resume=True, progress=False, on_chunk=lambda lo, hi, r: resumed.append((lo, hi)))
    assert resumed == [(8, 12), (12, 16)]
    assert m.complete
    _same(leadsim.open(path), serial)
    # nothing left to do: a second resume computes nothing
    again = []
    run_zarr(cfg, path, resume=True, progress=False, on_chunk=lambda lo, hi, r: again.append(lo))
    assert again == []


def test_chunk_written_but_not_recorded_is_redone(cfg, serial, tmp_path, monkeypatch):
    """A crash between a chunk's data write and its manifest update: the chunk is simply computed again."""
    import leadsim.io.zarrstore as store

    path = tmp_path / "run.zarr"
    real = store.write_manifest
    calls = {"n": 0}

    def flaky(where, manifest):
        calls["n"] += 1
        if calls["n"] == 3:  # 1: creation, 2: chunk 0, 3: chunk 1 (its data is already on disk)
            raise OSError(errno.EIO, "I/O error")
        real(where, manifest)

    monkeypatch.setattr(store, "write_manifest", flaky)
    with pytest.raises(OSError):
        run_zarr(cfg, path, progress=False)
    monkeypatch.setattr(store, "write_manifest", real)
    assert read_manifest(path).chunks_done == [[0, 1]]
    redo = []
    run_zarr(cfg, path, resume=True, progress=False, on_chunk=lambda lo, hi, r: redo.append(lo))
    assert redo == [4, 8, 12]
    _same(leadsim.open(path), serial)


def test_disk_full_mid_run_keeps_completed_chunks(cfg, serial, tmp_path, monkeypatch):
    path = tmp_path / "run.zarr"
    real = xr.Dataset.to_zarr
    writes = {"n": 0}

    def full(self, store=None, *args, region=None, **kw):
        if region is not None:
            writes["n"] += 1
            if writes["n"] == 3:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, store, *args, region=region, **kw)

    monkeypatch.setattr(xr.Dataset, "to_zarr", full)
    rc = main(["run", str(ROOT / "configs/default.toml"), "-q", "-o", str(path),
               *[f"--set={k}={v}" for k, v in SMALL.items()]])
    assert rc == 1
    assert read_manifest(path).chunks_done == [[0, 2]]
    monkeypatch.setattr(xr.Dataset, "to_zarr", real)
    assert main(["run", str(ROOT / "configs/default.toml"), "-q", "-o", str(path), "--resume",
                 *[f"--set={k}={v}" for k, v in SMALL.items()]]) == 0
    _same(leadsim.open(path), serial)


def test_resume_with_changed_config_is_refused(cfg, tmp_path, capsys):
    path = tmp_path / "run.zarr"
    run_zarr(cfg, path, progress=False)
    before = read_manifest(path)
    changed = small_config(**SMALL, **{"simulation.seed": 7, "population.esrd.tail_alpha": 3.5})
    with pytest.raises(ResumeMismatchError) as info:
        run_zarr(changed, path, resume=True)
    assert info.value.problems[1:] == ["population.esrd.tail_alpha: 4.0 in the store, 3.5 now",
                                       "simulation.seed: 20270101 in the store, 7 now"]
    # the chunk size shapes the store: also refused
    with pytest.raises(ResumeMismatchError, match="chunk_draws"):
        run_zarr(small_config(**{**SMALL, "simulation.chunk_draws": 8}), path, resume=True)
    # threads never change results: allowed
    run_zarr(small_config(**SMALL, **{"simulation.threads": 1}), path, resume=True)
    assert read_manifest(path).config_hash == before.config_hash
    # through the CLI: exit 2, one line per problem, naming the change
    rc = main(["run", str(ROOT / "configs/default.toml"), "-q", "-o", str(path), "--resume", "--seed", "9",
               *[f"--set={k}={v}" for k, v in SMALL.items()]])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-2].startswith(f"leadsim: error: cannot resume {path}: the config differs")
    assert err[-1] == "leadsim: error: simulation.seed: 20270101 in the store, 9 now"


def test_existing_store_needs_resume_or_overwrite(cfg, tmp_path):
    path = tmp_path / "run.zarr"
    run_zarr(cfg, path, progress=False)
    with pytest.raises(StoreError, match=r"already exists \(complete, 4 chunks\): add --resume"):
        run_zarr(cfg, path)
    other = small_config(**{**SMALL, "simulation.seed": 3})
    run_zarr(other, path, overwrite=True, progress=False)
    assert read_manifest(path).seed == 3 and leadsim.open(path).attrs["seed"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["run.zarr"]  # no temporary folders left


def test_export_zarr_to_netcdf_and_back(cfg, serial, tmp_path, capsys):
    run_zarr(cfg, tmp_path / "run.zarr", progress=False)
    assert main(["export", str(tmp_path / "run.zarr"), str(tmp_path / "run.nc")]) == 0
    _same(leadsim.open(tmp_path / "run.nc"), serial)
    leadsim.save(leadsim.open(tmp_path / "run.nc"), tmp_path / "copy.zarr")
    _same(leadsim.open(tmp_path / "copy.zarr"), serial)
    assert read_manifest(tmp_path / "copy.zarr").complete


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "leadsim.cli", "run", str(ROOT / "configs/default.toml"), "-q",
            "--set", "aco.beneficiaries=300", *args]


def test_sigkill_part_way_then_resume_equals_uninterrupted(tmp_path):
    """A `leadsim run -o x.zarr` process killed with SIGKILL after >= 1 chunk, resumed, equals a clean run."""
    draws, chunk = 48, 2
    path = tmp_path / "x.zarr"
    env = {**os.environ, "CI": "1"}
    proc = subprocess.Popen(_cli("--draws", str(draws), "--chunk-draws", str(chunk), "-o", str(path)), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done = 0
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            m = read_manifest(path) if (path / MANIFEST_NAME).exists() else None
            if m is not None and m.n_done >= 1:
                proc.send_signal(signal.SIGKILL)
                done = m.n_done
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    killed_at = read_manifest(path)
    assert 1 <= done <= killed_at.n_done < killed_at.n_chunks == draws // chunk
    resumed = subprocess.run(_cli("--draws", str(draws), "--chunk-draws", str(chunk), "-o", str(path),
                                  "--resume"), env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert read_manifest(path).complete
    # the uninterrupted run (a Zarr run equals it too: test_zarr_run_equals_serial_and_is_draw_chunked)
    cfg = small_config(**{"aco.beneficiaries": 300, "simulation.draws": draws, "simulation.chunk_draws": chunk})
    _same(leadsim.open(path), leadsim.simulate(cfg, progress=False))
    assert [p.name for p in tmp_path.iterdir()] == ["x.zarr"]  # no temporary folder left behind
