"""Shared test helpers: small, fast configurations."""

from __future__ import annotations

import warnings

import xarray as xr

import leadsim
from leadsim.config import LeadsimWarning


def small_config(**overrides):
    """A small standard ACO (500 beneficiaries, 16 draws) for fast tests; overrides are dotted keys."""
    base = {"simulation.draws": 16, "aco.beneficiaries": 500, "simulation.chunk_draws": 8}
    base.update(overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LeadsimWarning)
        return leadsim.load_config(overrides=base)


def assert_same_run(a: xr.Dataset, b: xr.Dataset) -> None:
    """Two results are identical bit for bit, except for the ``created`` timestamp."""
    a, b = a.copy(), b.copy()
    a.attrs.pop("created")
    b.attrs.pop("created")
    xr.testing.assert_identical(a, b)


class ObservedSink:
    """A sink that passes every call to ``inner`` and calls ``on_chunk(start, stop)`` after each saved chunk."""

    def __init__(self, inner, on_chunk):
        self.inner, self.on_chunk = inner, on_chunk

    def open(self, cfg, header, chunks):
        return self.inner.open(cfg, header, chunks)

    def save_chunk(self, start, stop, arrays):
        self.inner.save_chunk(start, stop, arrays)
        self.on_chunk(start, stop, arrays)

    def close(self):
        self.inner.close()

    def abort(self):
        self.inner.abort()

    def __getattr__(self, name):
        return getattr(self.inner, name)


def run_zarr(cfg, path, *, resume=False, overwrite=False, client=None, progress=False, on_chunk=None):
    """``leadsim.run`` into a Zarr store, calling ``on_chunk(start, stop, arrays)`` after each chunk; the manifest."""
    from leadsim.io.zarrstore import ZarrSink

    sink = ZarrSink(path, resume=resume, overwrite=overwrite)
    leadsim.run(cfg, sink if on_chunk is None else ObservedSink(sink, on_chunk), client=client, progress=progress)
    return sink.manifest


def interrupt_after(n: int):
    """An ``on_chunk`` callback that raises KeyboardInterrupt once ``n`` chunks have finished."""
    done: list[int] = []

    def on_chunk(lo, hi, res):
        done.append(lo)
        if len(done) == n:
            raise KeyboardInterrupt

    return on_chunk
