"""Output failures: disk full, no permission, interrupted write. Each is one line from the CLI, a non-zero exit,
and no partial file (netCDF: nothing at the target and no temporary file; Zarr: only completed chunks)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import xarray as xr

import leadsim
from leadsim.cli import main

ROOT = Path(__file__).resolve().parent.parent
SETS = ["--set=aco.beneficiaries=300", "--set=simulation.draws=8", "--set=simulation.chunk_draws=4"]


def _run(out: Path, *extra: str) -> int:
    return main(["run", str(ROOT / "configs/default.toml"), "-q", "-o", str(out), *SETS, *extra])


def _stderr(capsys) -> list[str]:
    """stderr lines without the (expected) small-ACO warning."""
    return [x for x in capsys.readouterr().err.strip().splitlines() if not x.startswith("leadsim: warning:")]


def _partial_netcdf(exc: BaseException):
    """A to_netcdf that writes some bytes to its target, then fails like the disk or the user would."""

    def write(self, path=None, *args, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"\x89HDF\r\n\x1a\n" + b"\0" * 4096)
        raise exc

    return write


@pytest.mark.parametrize("exc, rc, text", [
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), 1, "No space left on device; no partial file was left"),
    (PermissionError(errno.EACCES, os.strerror(errno.EACCES)), 1, "Permission denied; no partial file was left"),
    (KeyboardInterrupt(), 130, "interrupted; no partial output was left"),
])
def test_netcdf_write_failure_leaves_nothing(tmp_path, monkeypatch, capsys, exc, rc, text):
    out = tmp_path / "run.nc"
    monkeypatch.setattr(xr.Dataset, "to_netcdf", _partial_netcdf(exc))
    assert _run(out) == rc
    err = _stderr(capsys)
    assert len(err) == 1 and err[0].startswith("leadsim: error: cannot write" if rc == 1 else "leadsim: ")
    assert err[0].endswith(text)
    assert list(tmp_path.iterdir()) == []  # neither run.nc nor a temporary file


def test_failed_write_keeps_the_previous_result(tmp_path, monkeypatch, capsys):
    """Overwriting a result and failing half-way leaves the old file intact (atomic rename)."""
    out = tmp_path / "run.nc"
    assert _run(out) == 0
    before = out.read_bytes()
    monkeypatch.setattr(xr.Dataset, "to_netcdf", _partial_netcdf(OSError(errno.ENOSPC, "No space left on device")))
    assert _run(out, "--seed", "5", "--overwrite") == 1
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.nc"]


def test_read_only_folder_is_refused_before_running(tmp_path, capsys, monkeypatch):
    if os.geteuid() == 0:  # root ignores folder permissions (CI runs as root): answer as the owner's mode bits would
        import leadsim.cli

        real_access = os.access
        monkeypatch.setattr(leadsim.cli.os, "access", lambda path, mode: real_access(path, mode) and not (
            mode & os.W_OK and not os.stat(path).st_mode & 0o200))
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert _run(ro / "run.nc") == 2
        assert _run(ro / "run.zarr") == 2
    finally:
        ro.chmod(0o755)
    err = _stderr(capsys)
    assert err == [f"leadsim: error: -o {ro / 'run.nc'}: folder {ro} is not writable",
                   f"leadsim: error: -o {ro / 'run.zarr'}: folder {ro} is not writable"]
    assert list(ro.iterdir()) == []


def test_permission_denied_at_write_time(tmp_path, monkeypatch, capsys):
    """The folder looked writable but the write is refused (e.g. ACLs, root-squashed NFS): one line, no file."""
    import leadsim.atomic as atomic

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path / ".run.nc.x.tmp"))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", denied)
    assert _run(tmp_path / "run.nc") == 1
    err = _stderr(capsys)
    assert err == [f"leadsim: error: cannot write {tmp_path / 'run.nc'}: Permission denied; no partial file was left"]
    assert list(tmp_path.iterdir()) == []


def test_zarr_store_creation_failure_leaves_no_store(tmp_path, monkeypatch, capsys):
    """Disk full while the store's metadata is written: no store and no temporary folder remain."""
    real = xr.Dataset.to_zarr

    def full(self, store=None, *args, compute=True, **kwargs):
        if not compute:  # the template (metadata) write
            real(self, store, *args, compute=compute, **kwargs)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, store, *args, compute=compute, **kwargs)

    monkeypatch.setattr(xr.Dataset, "to_zarr", full)
    out = tmp_path / "run.zarr"
    assert _run(out) == 1
    err = _stderr(capsys)
    assert err == [f"leadsim: error: cannot write {out}: No space left on device; {out} keeps no chunk; "
                   "rerun with --resume to finish"]
    assert list(tmp_path.iterdir()) == []


def test_zarr_interrupt_reports_what_is_kept(tmp_path, monkeypatch, capsys):
    import leadsim.io.zarrstore as store

    real = store.ZarrSink.save_chunk
    n = {"chunks": 0}

    def interrupt_second(self, lo, hi, res):
        n["chunks"] += 1
        if n["chunks"] == 2:
            raise KeyboardInterrupt
        real(self, lo, hi, res)

    monkeypatch.setattr(store.ZarrSink, "save_chunk", interrupt_second)
    out = tmp_path / "run.zarr"
    assert _run(out) == 130
    err = _stderr(capsys)
    assert err == [f"leadsim: interrupted; {out} keeps 1 of 2 chunks; rerun with --resume to finish"]
    assert store.read_manifest(out).chunks_done == [[0, 1]]
    monkeypatch.setattr(store.ZarrSink, "save_chunk", real)
    assert _run(out, "--resume") == 0
    assert store.read_manifest(out).complete
    assert leadsim.open(out).sizes["draw"] == 8


def test_export_of_incomplete_run_is_refused(tmp_path, capsys):
    from tests.helpers import run_zarr, small_config

    cfg = small_config(**{"aco.beneficiaries": 300, "simulation.draws": 8, "simulation.chunk_draws": 4})

    def stop(lo, hi, res):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_zarr(cfg, tmp_path / "run.zarr", on_chunk=stop, progress=False)
    assert main(["export", str(tmp_path / "run.zarr"), str(tmp_path / "run.nc")]) == 2
    err = _stderr(capsys)
    assert err == [f"leadsim: error: {tmp_path / 'run.zarr'} is an incomplete run (1 of 2 chunks written); "
                   f"finish it with `leadsim run CONFIG -o {tmp_path / 'run.zarr'} --resume`"]
    assert not (tmp_path / "run.nc").exists()
