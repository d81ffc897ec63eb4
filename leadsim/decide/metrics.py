"""Per-option decision metrics with Monte Carlo standard errors, paired differences and the ranking criterion.

Every figure goes through :func:`estimate`, which returns the estimate, its standard error and the per-draw
influence values from the public functions of :mod:`leadsim.analysis.risk`; paired differences and the
criterion combine influence values draw by draw, so they carry the covariance of common random numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leadsim.analysis.risk import Design, design_se, influence, tail_metrics

__all__ = ["CRITERIA", "Estimate", "criterion", "estimate", "paired", "rank", "subset", "weighted_mean",
           "worst_cash_position"]

CRITERIA: tuple[str, ...] = ("mean_tvar", "constrained")
"""Ranking criteria: ``mean_tvar`` = mean - lambda x TVaR_99 of the ten-year result; ``constrained`` = the highest
mean among options with P(worst cumulative loss > guarantee) <= alpha."""


@dataclass(frozen=True)
class Estimate:
    """An estimate per column, its Monte Carlo standard error, the influence value of every draw, and the
    :class:`~leadsim.analysis.risk.Design` of the draws (None: plain, equal weights, independent draws)."""

    value: np.ndarray
    se: np.ndarray
    influence: np.ndarray  # (n, ...) same shape as the data
    design: Design | None = None

    def column(self, i: int) -> Estimate:
        """The estimate of column ``i`` (last axis), on the same draws and design."""
        return Estimate(self.value[i], self.se[i], self.influence[:, i], self.design)


def _plain(design: Design | None) -> bool:
    return design is None or design.trivial


def _se(inf: np.ndarray, design: Design | None, shape: tuple[int, ...]) -> np.ndarray:
    """Standard error of an estimate from its influence values: ``sd(IF)/sqrt(n)`` for plain draws (the formula
    of every earlier release, bit for bit), :func:`~leadsim.analysis.risk.design_se` for weighted or batched ones."""
    n = inf.shape[0]
    if _plain(design):
        return inf.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.full(shape, np.nan)
    return design_se(inf, design)


def weighted_mean(x: np.ndarray, design: Design | None = None) -> np.ndarray:
    """Mean over draws (axis 0) under ``design``: ``sum w_i x_i / sum w`` (``x.mean(axis=0)`` without weights)."""
    x = np.asarray(x, dtype=float)
    if design is None or design.weight is None:
        return x.mean(axis=0)
    w = design.weight / design.weight.sum()
    return np.tensordot(w, x, axes=(0, 0))


def subset(design: Design | None, rows: np.ndarray) -> Design | None:
    """The design of the draws ``rows`` (a sub-sample keeps its draws' weights and batches)."""
    if design is None:
        return None
    return Design(None if design.weight is None else design.weight[rows],
                  None if design.batch is None else design.batch[rows])


def estimate(x: np.ndarray, metric: str, p: float | None = None, design: Design | None = None) -> Estimate:
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
    design : Design, optional
        Weights and batches of the draws (:func:`leadsim.analysis.risk.sample_design`: tilted or QMC
        sampling); ``None`` or a trivial design is plain Monte Carlo.

    Returns
    -------
    Estimate

    Notes
    -----
    Standard errors are the influence-function ones of :mod:`leadsim.analysis.risk` (``docs/design.md``,
    "Risk metrics"): ``sd(IF)/sqrt(n)`` for the mean and probabilities (``sqrt(p (1 - p) / n)``), the
    Siddiqui-sparsity VaR and Manistre-Hancock TVaR errors of :func:`~leadsim.analysis.risk.tail_metrics`.
    Under a non-trivial design the estimates are self-normalised weighted ones (a draw of weight ``k`` counts
    as ``k`` copies) and every standard error is :func:`~leadsim.analysis.risk.design_se` of the weighted
    influence values, summed by QMC replicate (``docs/design.md``, "Sampling and weights").
    """
    x = np.asarray(x, dtype=float)
    design = None if _plain(design) else design
    if metric in ("VaR", "TVaR"):
        if p is None:
            raise ValueError(f"{metric} needs a confidence level p")
        value, se = tail_metrics(x, p, design).of(metric)
        return Estimate(value[0], se[0], influence(x, metric, p, design), design)
    if metric == "prob":
        metric = "mean"
    if metric not in ("mean", "p_loss"):
        raise ValueError(f"unknown metric {metric!r}")
    inf = influence(x, metric, design=design)
    if metric == "mean":
        value = x.mean(axis=0) if design is None else weighted_mean(x, design)
    else:
        value = (x < 0).mean(axis=0) if design is None else weighted_mean(x < 0, design)
    return Estimate(value, _se(inf, design, np.shape(value)), inf, design)


def paired(a: Estimate, b: Estimate) -> tuple[np.ndarray, np.ndarray]:
    """``a - b`` on the same draws and its standard error from the influence differences ``IF_a - IF_b``.

    ``b`` may have fewer trailing axes than ``a`` (one baseline against every option): it is broadcast. The
    standard error is ``sd(IF_a - IF_b) / sqrt(n)`` for plain draws and
    :func:`~leadsim.analysis.risk.design_se` of the difference under the draws' design (both estimates must
    come from the same draws, hence the same design).
    """
    ia = a.influence
    ib = np.broadcast_to(b.influence.reshape(b.influence.shape + (1,) * (ia.ndim - b.influence.ndim)), ia.shape)
    vb = np.broadcast_to(np.reshape(b.value, np.shape(b.value) + (1,) * (np.ndim(a.value) - np.ndim(b.value))),
                         np.shape(a.value))
    return a.value - vb, _se(ia - ib, _same_design(a, b), np.shape(a.value))


def _same_design(a: Estimate, b: Estimate) -> Design | None:
    if a.design is not b.design and not (_plain(a.design) and _plain(b.design)):
        da, db = a.design or Design(), b.design or Design()
        same = all((u is None and v is None) or (u is not None and v is not None and np.array_equal(u, v))
                   for u, v in ((da.weight, db.weight), (da.batch, db.batch)))
        if not same:
            raise ValueError("a paired difference needs two estimates on the same draws (their designs differ)")
    return a.design


def criterion(mean: Estimate, tvar99: Estimate, lam: float) -> Estimate:
    """``mean - lam x TVaR_99`` with its standard error (influence ``IF_mean - lam IF_TVaR``, under the draws'
    design as :func:`paired`)."""
    inf = mean.influence - lam * tvar99.influence
    design = _same_design(mean, tvar99)
    return Estimate(mean.value - lam * tvar99.value, _se(inf, design, np.shape(mean.value)), inf, design)


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
