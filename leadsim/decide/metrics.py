"""Per-option decision metrics with Monte Carlo standard errors, paired differences and the ranking criterion.

Every figure goes through :func:`estimate`, which returns the estimate, its standard error and the per-draw
influence values from the public functions of :mod:`leadsim.analysis.risk`; paired differences and the
criterion combine influence values draw by draw, so they carry the covariance of common random numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leadsim.analysis.risk import influence, tail_metrics

__all__ = ["CRITERIA", "Estimate", "criterion", "estimate", "paired", "rank", "worst_cash_position"]

CRITERIA: tuple[str, ...] = ("mean_tvar", "constrained")
"""Ranking criteria: ``mean_tvar`` = mean - lambda x TVaR_99 of the ten-year result; ``constrained`` = the highest
mean among options with P(worst cumulative loss > guarantee) <= alpha."""


@dataclass(frozen=True)
class Estimate:
    """An estimate per column, its Monte Carlo standard error, and the influence value of every draw."""

    value: np.ndarray
    se: np.ndarray
    influence: np.ndarray  # (n, ...) same shape as the data


def estimate(x: np.ndarray, metric: str, p: float | None = None, weights: np.ndarray | None = None) -> Estimate:
    """One metric of per-draw values (draws on axis 0), its standard error and influence values.

    Parameters
    ----------
    x : ndarray, shape (n, ...)
        Per-draw values: a settlement (positive to the ACO) for ``mean``, ``p_loss``, ``VaR``, ``TVaR``; a
        0/1 event for ``prob``.
    metric : {"mean", "p_loss", "VaR", "TVaR", "prob"}
        ``VaR``/``TVaR`` are loss-side at level ``p`` (positive = loss), as in :mod:`leadsim.analysis.risk`.
    p : float, optional
        Confidence level of VaR/TVaR.
    weights : ndarray (n,), optional
        Per-draw weights; ``None`` is equal weights (the only case until weighted draws reach
        :mod:`leadsim.analysis.risk`: this is the one place to wire them in).

    Returns
    -------
    Estimate

    Notes
    -----
    Standard errors are the influence-function ones of :mod:`leadsim.analysis.risk` (``docs/design.md``,
    "Risk metrics"): ``sd(IF)/sqrt(n)`` for the mean and probabilities (``sqrt(p (1 - p) / n)``), the
    Siddiqui-sparsity VaR and Manistre-Hancock TVaR errors of :func:`~leadsim.analysis.risk.tail_metrics`.
    """
    if weights is not None:
        raise NotImplementedError("weighted draws are not wired into leadsim.decide yet")
    x = np.asarray(x, dtype=float)
    n = x.shape[0]
    if metric in ("VaR", "TVaR"):
        if p is None:
            raise ValueError(f"{metric} needs a confidence level p")
        value, se = tail_metrics(x, p).of(metric)
        return Estimate(value[0], se[0], influence(x, metric, p))
    if metric == "prob":
        metric = "mean"
    if metric not in ("mean", "p_loss"):
        raise ValueError(f"unknown metric {metric!r}")
    inf = influence(x, metric)
    value = x.mean(axis=0) if metric == "mean" else (x < 0).mean(axis=0)
    se = inf.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.full(np.shape(value), np.nan)
    return Estimate(value, se, inf)


def paired(a: Estimate, b: Estimate) -> tuple[np.ndarray, np.ndarray]:
    """``a - b`` on the same draws and its standard error ``sd(IF_a - IF_b) / sqrt(n)``.

    ``b`` may have fewer trailing axes than ``a`` (one baseline against every option): it is broadcast.
    """
    ia = a.influence
    ib = np.broadcast_to(b.influence.reshape(b.influence.shape + (1,) * (ia.ndim - b.influence.ndim)), ia.shape)
    vb = np.broadcast_to(np.reshape(b.value, np.shape(b.value) + (1,) * (np.ndim(a.value) - np.ndim(b.value))),
                         np.shape(a.value))
    n = ia.shape[0]
    se = (ia - ib).std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.full(np.shape(a.value), np.nan)
    return a.value - vb, se


def criterion(mean: Estimate, tvar99: Estimate, lam: float) -> Estimate:
    """``mean - lam x TVaR_99`` with its standard error (influence ``IF_mean - lam IF_TVaR``)."""
    inf = mean.influence - lam * tvar99.influence
    n = inf.shape[0]
    se = inf.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.full(np.shape(mean.value), np.nan)
    return Estimate(mean.value - lam * tvar99.value, se, inf)


def rank(name: str, value: np.ndarray, mean: np.ndarray, p_beyond: np.ndarray, alpha: float) -> np.ndarray:
    """Rank of each option (1 = best) under criterion ``name``.

    ``mean_tvar``: by ``value`` (mean - lambda TVaR), highest first. ``constrained``: options with
    ``p_beyond <= alpha`` by mean, highest first, then the others by ``p_beyond``, lowest first.
    """
    if name == "mean_tvar":
        order = np.lexsort((np.arange(len(value)), -np.asarray(value)))
    elif name == "constrained":
        feasible = np.asarray(p_beyond) <= alpha
        key = np.where(feasible, -np.asarray(mean), np.inf)
        order = np.lexsort((np.asarray(p_beyond), key, ~feasible))
    else:
        raise ValueError(f"criterion must be one of {', '.join(CRITERIA)} (got {name!r})")
    out = np.empty(len(order), dtype=np.int64)
    out[order] = np.arange(1, len(order) + 1)
    return out


def worst_cash_position(net: np.ndarray, cash: np.ndarray, discount: np.ndarray | None = None) -> np.ndarray:
    """Capital each draw needs to cover its worst cumulative cash position at a settlement (years on axis 1).

    Parameters
    ----------
    net, cash : ndarray, shape (n, years, ...)
        Annual accrual result (``net_settlement``) and what changes hands at settlement (``cash_settlement``,
        the result minus the recouped enhanced PCC advance ``a_t = net_t - cash_t``).
    discount : ndarray (years,), optional
        Discount factors, as in ``cumulative_settlement``.

    Returns
    -------
    ndarray, shape (n, ...)
        ``max(0, max_t (P_t - (C_{t-1} + cash_t)))`` with ``C_t`` the cumulative result to year ``t`` and
        ``P_t = max(0, max_{s<t} C_s)`` its running peak before the settlement (the start counts as a peak).

    Notes
    -----
    At year ``t``'s settlement the ACO has settled the earlier years (``C_{t-1}``, their advances already netted)
    and now owes the recoupment of this year's advance beside the year's result: its position is
    ``C_{t-1} + cash_t = C_t - a_t``. Gains already paid out are not counted on to absorb later losses (the fall is
    measured from the running peak, as :func:`leadsim.analysis.risk.drawdown` does), and a revolving advance costs
    capital once, not once a year. Without an advance it is exactly ``drawdown(net)``
    (``docs/design.md``, "Decisions"; ``docs/methodology.md`` §3.6-3.7 for the cash view).
    """
    net = np.asarray(net, dtype=float)
    cash = np.asarray(cash, dtype=float)
    if discount is not None:
        d = np.asarray(discount).reshape((1, -1) + (1,) * (net.ndim - 2))
        net, cash = net * d, cash * d
    c = np.cumsum(net, axis=1)
    before = np.concatenate([np.zeros_like(c[:, :1]), c[:, :-1]], axis=1)
    peak = np.maximum(np.maximum.accumulate(before, axis=1), 0.0)
    return np.maximum((peak - (before + cash)).max(axis=1), 0.0)
