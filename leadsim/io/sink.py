"""Where a run's chunks of draws go: one :class:`Sink` interface for memory, netCDF and Zarr.

The serial loop (:func:`leadsim.engine.run_draws`) and the dask loop (:mod:`leadsim.distributed`) drive a
sink the same way, in the spirit of emcee's ``Backend.save_step``:

1. ``chunks = sink.open(cfg, header, chunks)`` before any work: the sink checks its target and returns the
   chunks it still needs (all of them, or only the missing ones when a Zarr run resumes);
2. ``sink.save_chunk(start, stop, arrays)`` for each finished chunk, in whatever order chunks finish;
3. ``sink.close()`` once every chunk is saved (a netCDF sink writes its file here, atomically);
   ``sink.abort()`` on an error or interrupt (nothing partial is left, except a Zarr run's finished chunks,
   which a resume keeps).

:func:`sink_for` is the one place where an output path's suffix picks the format.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import xarray as xr

from leadsim.config import Config
from leadsim.io.netcdf import open_netcdf, save_netcdf
from leadsim.io.schema import RunHeader, build_dataset

__all__ = ["MemorySink", "NetCDFSink", "RunHeader", "Sink", "is_zarr_path", "open_result", "save", "sink_for"]

Bounds = list[tuple[int, int]]


@runtime_checkable
class Sink(Protocol):
    """The output interface of a run (see the module docstring for the call order)."""

    def open(self, cfg: Config, header: RunHeader, chunks: Sequence[tuple[int, int]]) -> Bounds: ...

    def save_chunk(self, start: int, stop: int, arrays: Mapping[str, np.ndarray]) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


class MemorySink:
    """Gathers every chunk into full-size arrays in memory; :attr:`dataset` after :meth:`close`."""

    def __init__(self) -> None:
        self.cfg: Config | None = None
        self.header = RunHeader()
        self.arrays: dict[str, np.ndarray] = {}
        self.dataset: xr.Dataset | None = None

    def open(self, cfg: Config, header: RunHeader, chunks: Sequence[tuple[int, int]]) -> Bounds:
        self.cfg, self.header, self.arrays, self.dataset = cfg, header, {}, None
        return list(chunks)

    def save_chunk(self, start: int, stop: int, arrays: Mapping[str, np.ndarray]) -> None:
        self._check_open()
        n = self.cfg.simulation.draws
        for k, v in arrays.items():
            if k not in self.arrays:
                self.arrays[k] = np.empty((n, *v.shape[1:]), dtype=v.dtype)
            self.arrays[k][start:stop] = v

    def close(self) -> None:
        self._check_open()
        self.dataset = build_dataset(self.cfg, self.arrays, self.header.constants, self.header.attrs)
        self.arrays = {}

    def abort(self) -> None:
        self.arrays = {}

    def _check_open(self) -> None:
        if self.cfg is None or self.header is None:
            raise RuntimeError(f"{type(self).__name__}.open() must be called before saving or closing")


class NetCDFSink(MemorySink):
    """Gathers in memory and writes one netCDF file atomically at :meth:`close` (nothing on abort)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = Path(path)

    def open(self, cfg: Config, header: RunHeader, chunks: Sequence[tuple[int, int]]) -> Bounds:
        parent = self.path.resolve().parent
        if not parent.is_dir():  # fail before any work, not after the whole simulation
            raise FileNotFoundError(f"output folder does not exist: {parent}")
        return super().open(cfg, header, chunks)

    def close(self) -> None:
        super().close()
        save_netcdf(self.dataset, self.path)


def is_zarr_path(path: str | os.PathLike[str]) -> bool:
    """Whether a path names a Zarr store: a ``.zarr`` suffix, or an existing folder."""
    p = Path(path)
    return p.suffix == ".zarr" or p.is_dir()


def sink_for(path: str | os.PathLike[str], *, resume: bool = False, overwrite: bool = False) -> Sink:
    """The sink that writes a run to ``path``: a resumable Zarr store for ``*.zarr``, else netCDF."""
    if is_zarr_path(path):
        from leadsim.io.zarrstore import ZarrSink

        return ZarrSink(path, resume=resume, overwrite=overwrite)
    return NetCDFSink(path)


def save(ds: xr.Dataset, path: str | os.PathLike[str]) -> Path:
    """Write a result atomically: netCDF-4, or a Zarr store for ``*.zarr`` (needs the ``dask`` extra).

    On any error the temporary file is removed and no partial file is left.
    """
    if is_zarr_path(path):
        from leadsim.io.zarrstore import save_zarr

        return save_zarr(ds, path)
    return save_netcdf(ds, path)


def open_result(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a saved result (netCDF file or Zarr store) fully loaded into memory."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such result: {path}")
    if is_zarr_path(path):
        from leadsim.io.zarrstore import open_store

        return open_store(path)  # refuses an interrupted run
    return open_netcdf(path)
