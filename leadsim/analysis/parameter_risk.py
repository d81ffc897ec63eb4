"""How much of a run's variance is parameter risk (``simulation.parameter_draws``): the law of total variance
between and within the parameter sets the draws used.

A run with parameter draws records the set of each draw (the ``parameter_set`` variable). :func:`variance_split`
splits the variance of a per-draw result (by default the ten-year cumulative settlement, per track) into the
variance of the sets' conditional means (parameter risk) and the mean variance within a set (process risk), with
a jackknife standard error; :func:`parameter_risk` applies it to a Dataset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

__all__ = ["JACKKNIFE_GROUPS", "VarianceSplit", "parameter_risk", "variance_split"]

JACKKNIFE_GROUPS = 20
"""Groups of draws (draw position modulo this) deleted one at a time for the standard error."""


@dataclass(frozen=True)
class VarianceSplit:
    """The split of a per-draw result's variance, per column (e.g. track).

    Attributes
    ----------
    share, share_se : ndarray (columns,)
        Parameter-risk share of the variance and its jackknife standard error.
    between, total : ndarray (columns,)
        Parameter-risk variance (between sets, Monte Carlo noise removed) and the total variance.
    n_sets : int
        Parameter sets used by at least one draw.
    n_draws : int
    """

    share: np.ndarray
    share_se: np.ndarray
    between: np.ndarray
    total: np.ndarray
    n_sets: int
    n_draws: int


def _split(y: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(between, total)`` per column of ``y`` (draws, columns) for the integer set labels ``groups``."""
    labels, inv, counts = np.unique(groups, return_inverse=True, return_counts=True)
    n, k = y.shape[0], labels.size
    sums = np.zeros((k, y.shape[1]))
    np.add.at(sums, inv, y)
    means = sums / counts[:, None]
    grand = y.mean(axis=0)
    ssb = (counts[:, None] * (means - grand) ** 2).sum(axis=0)
    ssw = ((y - means[inv]) ** 2).sum(axis=0)
    msw = ssw / (n - k) if n > k else np.zeros_like(ssw)
    return (ssb - (k - 1) * msw) / n, (ssb + ssw) / n  # the between part unfloored (see variance_split)


def variance_split(y: np.ndarray, groups: np.ndarray) -> VarianceSplit:
    """Split the variance of ``y`` into parameter risk (between sets) and process risk (within sets).

    Parameters
    ----------
    y : ndarray (draws,) or (draws, columns)
        A per-draw result.
    groups : ndarray of int (draws,)
        The parameter set of each draw.

    Returns
    -------
    VarianceSplit

    Notes
    -----
    The run is a mixture: a draw's set ``k`` has probability ``p_k`` and, given the set, the result has mean
    ``m_k`` and variance ``v_k``, so by the law of total variance ``Var Y = sum p_k (m_k - m)^2 + sum p_k v_k``;
    the first term is the parameter risk. With ``n_k`` draws in set ``k`` (``N`` in all, ``K`` sets), the sums
    of squares between and within sets satisfy ``SST = SSB + SSW``, and ``E[SSB] = N Var_p(m_k) + (K - 1)
    sigma_w^2`` (one-way analysis of variance; the set means carry Monte Carlo noise), so the parameter
    variance is estimated by ``(SSB - (K - 1) MSW) / N`` with ``MSW = SSW / (N - K)``, the total by ``SST / N``,
    and the share is their ratio, reported floored at 0. Its standard error is the delete-a-group jackknife (of
    the unfloored ratio, so that a share near 0 still gets an SE) over
    :data:`JACKKNIFE_GROUPS` groups of draws (draw position modulo the group count; Efron and Tibshirani, *An
    Introduction to the Bootstrap*, 1993, §11.5), which takes both the within-set noise and the random set
    counts into account. The variance is that of this run's mixture of its parameter sets (each set
    equally likely, ``docs/fit.md`` §4); it does not include the uncertainty of having drawn only ``K`` sets.
    Draws are weighted equally.
    """
    y2 = np.asarray(y, dtype=float)
    y2 = y2[:, None] if y2.ndim == 1 else y2
    g = np.asarray(groups)
    n = y2.shape[0]
    between, total = _split(y2, g)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, between / total, 0.0)  # unfloored here: the jackknife needs its spread
        pos = np.arange(n) % JACKKNIFE_GROUPS
        n_groups = min(JACKKNIFE_GROUPS, n)
        if n_groups >= 2:
            reps = []
            for j in range(n_groups):
                keep = pos != j
                b, t = _split(y2[keep], g[keep])
                reps.append(np.where(t > 0, b / t, 0.0))
            reps_a = np.array(reps)
            se = np.sqrt((n_groups - 1) / n_groups * ((reps_a - reps_a.mean(axis=0)) ** 2).sum(axis=0))
        else:
            se = np.full_like(share, np.nan)
    return VarianceSplit(np.maximum(share, 0.0), se, np.maximum(between, 0.0), total, int(np.unique(g).size), n)


def parameter_risk(ds: xr.Dataset, variable: str = "cumulative_settlement") -> VarianceSplit | None:
    """:func:`variance_split` of a run's ``variable`` (draw first; one column per track), or None when the run
    has no parameter draws (no ``parameter_set`` variable).

    Raises
    ------
    ValueError
        When the run's draws carry unequal weights (a ``weight`` variable not all 1, e.g. importance-sampled
        draws): the split assumes equally weighted draws, and a weighted split is not implemented.
    """
    if "parameter_set" not in ds:
        return None
    if "weight" in ds and not np.all(ds["weight"].values == 1.0):
        raise ValueError("parameter_risk: the run's draws are weighted (importance sampling); the split between "
                         "and within parameter sets needs equally weighted draws")
    da = ds[variable]
    rest = [d for d in da.dims if d != "draw"]
    y = da.transpose("draw", *rest).values.reshape(da.sizes["draw"], -1)
    return variance_split(y, ds["parameter_set"].values)
