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

The numba functions here are the engine's; the ``*_np`` twins are vectorised numpy versions used by the
macro drivers and by tests.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["GAMMA", "MACRO_SLOT", "N_STREAMS", "RNG_SCHEME", "Stream"]

RNG_SCHEME = ("splitmix64-counter/v1: word(seed, draw, slot, year, stream) = "
              "splitmix64(key(seed, draw, slot) + (year*16 + stream + 1)*0x9E3779B97F4A7C15); "
              "two 32-bit uniforms per word; Box-Muller normals")

GAMMA = np.uint64(0x9E3779B97F4A7C15)
_K0 = np.uint64(0x243F6A8885A308D3)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
_MASK32 = np.uint64(0xFFFFFFFF)
_INV32 = 1.0 / 4294967296.0
_TWO_PI = 2.0 * np.pi

N_STREAMS = 16
MACRO_SLOT = np.uint64(0xFFFFFFFFFFFFFFFF)  # slot id reserved for per-draw macro drivers


class Stream:
    """Stream numbers (the second part of the counter) and what each one feeds."""

    LATENT = 0        # beneficiary: Box-Muller pair -> latent innovation eta, death noise xi
    EVENTS = 1        # beneficiary: two uniforms -> exit, transition / entrant population
    SIGNAL = 2        # beneficiary: concurrent risk-model signal noise
    NATIONAL = 0      # macro: national shock (pair: national, regional)
    ACO = 1           # macro: ACO-specific shock (pair: ACO, spare)
    QUALITY = 2       # macro: quality score uniform


@nb.njit(cache=True, inline="always")
def mix64(z: np.uint64) -> np.uint64:
    """SplitMix64 finaliser: a bijective 64-bit avalanche."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@nb.njit(cache=True, inline="always")
def key(seed: np.uint64, draw: np.uint64, slot: np.uint64) -> np.uint64:
    """The 64-bit key of one (seed, draw, slot) address."""
    return mix64(mix64(mix64(seed ^ _K0) ^ draw) ^ slot)


@nb.njit(cache=True, inline="always")
def word(k: np.uint64, counter: np.uint64) -> np.uint64:
    """The random 64-bit word at ``counter`` of the stream keyed ``k``."""
    return mix64(k + (counter + np.uint64(1)) * GAMMA)


@nb.njit(cache=True, inline="always")
def uniforms(w: np.uint64) -> tuple[float, float]:
    """Two uniforms from one word: ``u1`` in (0, 1] (safe for log), ``u2`` in [0, 1)."""
    u1 = (float(w >> _S32) + 1.0) * _INV32
    u2 = float(w & _MASK32) * _INV32
    return u1, u2


@nb.njit(cache=True, inline="always")
def normals(w: np.uint64) -> tuple[float, float]:
    """Two independent standard normals from one word (Box-Muller)."""
    u1, u2 = uniforms(w)
    r = np.sqrt(-2.0 * np.log(u1))
    t = _TWO_PI * u2
    return r * np.cos(t), r * np.sin(t)


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
