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


def interrupt_after(n: int):
    """An ``on_chunk`` callback that raises KeyboardInterrupt once ``n`` chunks have finished."""
    done: list[int] = []

    def on_chunk(lo, hi, res):
        done.append(lo)
        if len(done) == n:
            raise KeyboardInterrupt

    return on_chunk
