"""Banded (marginal) schedules: the one piecewise-linear rule behind risk corridors, stop-loss and RTA.

A leaf module (numpy only) shared by the cost model's stop-loss pricing and the ledger; the numba kernel
applies the same formula inside its beneficiary loop (:mod:`leadsim.model._kernel`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["marginal_bands", "stop_loss_payout"]


def marginal_bands(x: np.ndarray, breakpoints: list[float] | np.ndarray,
                   shares: list[float] | np.ndarray) -> np.ndarray:
    """``sum_k s_k clip(x - b_k, 0, b_{k+1} - b_k)`` with ``b_K = inf``: a marginal band schedule.

    Parameters
    ----------
    x : ndarray
        Amounts, ``x >= 0`` (``|savings rate|``, dollars, ``|trend deviation|``).
    breakpoints : sequence of float
        ``b_0 = 0 < b_1 < ... < b_{K-1}``; the last band is open above.
    shares : sequence of float
        ``s_k``, the share of the part of ``x`` inside band ``k``.

    Notes
    -----
    The one schedule behind risk corridors (``docs/methodology.md`` §3.4 [LEAD-2 / REACH]), stop-loss bands
    (§3.2 [ASSUMED bands]) and the REACH RTA pass-through (§4 [REACH]). Continuous and piecewise linear
    in ``x``; non-decreasing when every share is non-negative.
    """
    x = np.asarray(x, dtype=float)
    b = np.asarray(breakpoints, dtype=float)
    s = np.asarray(shares, dtype=float)
    upper = np.append(b[1:], np.inf)
    out = np.zeros_like(x)
    for lo, hi, share in zip(b, upper, s, strict=True):
        out = out + share * np.clip(x - lo, 0.0, hi - lo)
    return out


def stop_loss_payout(x: np.ndarray, attachments: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Per-beneficiary stop-loss payout ``sum_k s_k clip(x - a_k, 0, a_{k+1} - a_k)``, ``a_K = inf``.

    Notes
    -----
    REACH offered CMS stop-loss on annual per-beneficiary spending in bands [REACH]; LEAD's terms are
    unpublished, default 50% of $125k-250k, 75% of $250k-500k, 90% above $500k [ASSUMED]
    (``docs/methodology.md`` §3.2).
    """
    return marginal_bands(np.maximum(x, 0.0), attachments, shares)
