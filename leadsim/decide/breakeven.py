"""Break-even care-management effect: the spending change at which an option's ten-year result breaks even.

Two criteria (``BREAK_EVEN``): ``mean_zero``, the constant proportional change of spending ``delta`` at which the
mean ten-year result is 0; ``p_loss_half``, the ``delta`` at which P(ten-year loss) = 50%. ``delta = -0.03`` means
spending 3% below what it would otherwise be, in every year, on top of the configured care-management effect.
Both are found by root finding on common random numbers without re-running the kernel where the change only
scales spending (``docs/design.md``, "Decisions"; ``docs/methodology.md`` for the ledger).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from leadsim.analysis.risk import Design
from leadsim.decide.metrics import estimate, weighted_mean

__all__ = ["BRACKET", "BREAK_EVEN", "TOL", "BreakEven", "draw_roots", "solve"]

BREAK_EVEN: tuple[str, ...] = ("mean_zero", "p_loss_half")
"""Break-even criteria: mean ten-year result = 0; P(ten-year loss) = 50%."""

BRACKET: tuple[float, float] = (-0.5, 0.5)
"""Spending changes searched; a break-even outside is reported as not found (NaN)."""

_STEP = 1e-3  # central-difference step of d mean / d delta for the delta-method standard error
TOL = 1e-9
"""Precision of the break-even roots (as a spending change) in :func:`leadsim.decide.decide`."""


@dataclass(frozen=True)
class BreakEven:
    """Break-even ``delta`` and its Monte Carlo standard error for each criterion of :data:`BREAK_EVEN`."""

    value: np.ndarray  # (2,)
    se: np.ndarray     # (2,)


def draw_roots(cum_at: Callable[[np.ndarray], np.ndarray], n: int,
               bracket: tuple[float, float] = BRACKET, tol: float = TOL) -> np.ndarray:
    """Each draw's own break-even: the ``delta_i`` with ten-year result ``cum_i(delta_i) = 0``, by bisection.

    Parameters
    ----------
    cum_at : callable
        ``cum_at(delta)`` with ``delta`` of shape (n,) (one change per draw) returns the ten-year results (n,).
    n : int
        Number of draws.
    tol : float
        Width of the final bracket of each root.

    Returns
    -------
    ndarray (n,)
        Roots; a draw in loss even at the lower end of the bracket gets the lower end, one in gain even at the
        upper end gets the upper end.

    Notes
    -----
    The ten-year result falls as spending rises (gross savings fall and every sharing schedule is non-decreasing in
    the savings rate), so ``cum_i(delta) < 0`` exactly when ``delta > delta_i``: P(ten-year loss at ``delta``) is
    the share of draws with ``delta_i < delta``, and the ``delta`` where it is 50% is the median of the
    ``delta_i``. All draws are bisected together, one vectorised settlement per step.
    """
    lo = np.full(n, bracket[0])
    hi = np.full(n, bracket[1])
    pos_lo = cum_at(lo) > 0
    neg_hi = cum_at(hi) < 0
    for _ in range(int(np.ceil(np.log2((bracket[1] - bracket[0]) / tol)))):
        mid = 0.5 * (lo + hi)
        gain = cum_at(mid) >= 0
        lo = np.where(gain, mid, lo)
        hi = np.where(gain, hi, mid)
    roots = 0.5 * (lo + hi)
    roots = np.where(~pos_lo, bracket[0], roots)
    return np.where(~neg_hi, bracket[1], roots)


def solve(cum_at: Callable[[float | np.ndarray], np.ndarray], n: int,
          bracket: tuple[float, float] = BRACKET, tol: float = TOL, design: Design | None = None) -> BreakEven:
    """Both break-even effects of one option with their standard errors.

    Parameters
    ----------
    cum_at : callable
        ``cum_at(delta)``: the ten-year result of every draw (n,) at spending change ``delta`` (a number, or an
        array of one per draw).
    n : int
        Number of draws.
    tol : float
        Precision of the roots.
    design : Design, optional
        Weights and batches of the draws (tilted or QMC sampling, :func:`leadsim.analysis.risk.sample_design`);
        ``None`` is plain Monte Carlo.

    Returns
    -------
    BreakEven
        NaN where the root is outside ``bracket``.

    Notes
    -----
    ``mean_zero``: Brent's method on ``m(delta) = mean_i cum_i(delta)``, which is smooth. Its standard error is the
    delta method ``se(delta*) = se(m(delta*)) / |m'(delta*)|``, with ``se(m) = sd(cum_i(delta*)) / sqrt(n)`` and
    ``m'`` a central difference on the same draws (exact common random numbers, so no extra noise).
    ``p_loss_half``: the median of the per-draw roots of :func:`draw_roots`, with the quantile standard error of
    :func:`leadsim.decide.metrics.estimate` (Siddiqui sparsity, as for VaR).

    Under a weighted ``design`` (``docs/design.md``, "Sampling and weights") ``m`` is the weighted mean
    ``sum w_i cum_i / sum w``, ``se(m)`` is :func:`~leadsim.analysis.risk.design_se` of its influence values,
    and P(ten-year loss at ``delta``) is the weighted share of draws with ``delta_i < delta``, so the
    ``p_loss_half`` root is the weighted median of the ``delta_i`` (the first sorted root whose cumulative
    weight share reaches 1/2) with the weighted-quantile standard error.
    """
    lo, hi = bracket
    value = np.full(2, np.nan)
    se = np.full(2, np.nan)
    if design is not None and design.weight is None and design.batch is None:
        design = None

    def m(d: float) -> float:
        return float(np.mean(cum_at(d)) if design is None else weighted_mean(cum_at(d), design))

    m_lo, m_hi = m(lo), m(hi)
    if m_lo > 0 > m_hi:
        root = brentq(m, lo, hi, xtol=tol)
        slope = (m(root + _STEP) - m(root - _STEP)) / (2 * _STEP)
        se_m = float(estimate(cum_at(root), "mean", design=design).se)
        value[0] = root
        se[0] = se_m / abs(slope) if slope != 0 else np.nan
    roots = draw_roots(lambda d: cum_at(d), n, bracket, tol)
    med = estimate(roots, "VaR", p=0.5, design=design)  # loss-side VaR at 0.5 is minus the (weighted) median
    median = -float(med.value)
    if lo < median < hi:
        value[1] = median
        se[1] = float(med.se)
    if n < 2:  # one draw: no standard error at all (never a confident zero)
        se[:] = np.nan
    return BreakEven(value, se)
