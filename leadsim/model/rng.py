"""Keyed, counter-based random numbers (no global state, no per-thread state).

Every random number in leadsim is a pure function of its *logical address*: ``(seed, draw, slot, year,
stream)``. A draw's numbers therefore do not depend on which thread, chunk or dask worker computes it, and
two runs that differ only in policy see the same spending (common random numbers).

Scheme (``RNG_SCHEME``)
-----------------------
``key(seed, draw, slot) = mix(mix(mix(seed ^ K0) ^ draw) ^ slot)`` and the 64-bit word at counter ``c`` is
``mix(key + (c + 1) * GAMMA)``, where ``mix`` is the SplitMix64 finaliser (Steele, Lea & Flood 2014) and
``GAMMA = 0x9E3779B97F4A7C15``. The counter is ``year_index * N_STREAMS + stream``. Macro drivers use
``slot = MACRO_SLOT`` (beneficiary slots are ``0 .. n_slots-1``). A word yields two 32-bit uniforms;
Box-Muller turns them into two independent standard normals (``|z| <= 6.66``, so spliced tails are exact
to a probability of 3e-11 per draw).

The numba versions of these functions live with the kernels in :mod:`leadsim.model._kernel` (numba's disk
cache only notices edits to a compiled function's own file); here are the constants' names, the scheme string
and the ``*_np`` twins: vectorised numpy versions used by the macro drivers and by tests.
"""

from __future__ import annotations

import numpy as np

from leadsim.model._kernel import (
    _INV32,
    _K0,
    _M1,
    _M2,
    _MASK32,
    _S27,
    _S30,
    _S31,
    _S32,
    _TWO_PI,
    GAMMA,
    N_STREAMS,
    Stream,
)

__all__ = ["GAMMA", "MACRO_SLOT", "N_STREAMS", "RNG_SCHEME", "Stream"]

RNG_SCHEME = ("splitmix64-counter/v1: word(seed, draw, slot, year, stream) = "
              "splitmix64(key(seed, draw, slot) + (year*16 + stream + 1)*0x9E3779B97F4A7C15); "
              "two 32-bit uniforms per word; Box-Muller normals")

MACRO_SLOT = np.uint64(0xFFFFFFFFFFFFFFFF)  # slot id reserved for per-draw macro drivers


# ---------------------------------------------------------------------------------------------------------
# numpy twins (vectorised; identical integers, floats equal to within libm rounding)
# ---------------------------------------------------------------------------------------------------------
def mix64_np(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> _S30)) * _M1
        z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def key_np(seed: int, draw: np.ndarray | int, slot: np.ndarray | int) -> np.ndarray:
    s = np.asarray(np.uint64(seed), dtype=np.uint64)
    d = np.asarray(draw, dtype=np.uint64)
    sl = np.asarray(slot, dtype=np.uint64)
    return mix64_np(mix64_np(mix64_np(s ^ _K0) ^ d) ^ sl)


def word_np(k: np.ndarray, counter: np.ndarray | int) -> np.ndarray:
    c = np.asarray(counter, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return mix64_np(np.asarray(k, dtype=np.uint64) + (c + np.uint64(1)) * GAMMA)


def uniforms_np(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = np.asarray(w, dtype=np.uint64)
    u1 = ((w >> _S32).astype(np.float64) + 1.0) * _INV32
    u2 = (w & _MASK32).astype(np.float64) * _INV32
    return u1, u2


def normals_np(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    u1, u2 = uniforms_np(w)
    r = np.sqrt(-2.0 * np.log(u1))
    t = _TWO_PI * u2
    return r * np.cos(t), r * np.sin(t)
