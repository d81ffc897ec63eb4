"""Variance attribution, the analysis half: Shapley values of Var and TVaR over the risk sources, with their error.

Input: the result of every subset of sources switched on, on the same draws
(:func:`leadsim.attribution.source_runs`). Output: how much of the variance and of TVaR 99% of the ten-year
result each source accounts for, per track, with bootstrap standard errors (``docs/model.md``, variance
attribution).
"""

from __future__ import annotations

from math import factorial

import numpy as np
import xarray as xr

from leadsim.analysis.formatting import money, percent
from leadsim.analysis.risk import tail_metrics

__all__ = ["MEASURES", "SOURCE_LABELS", "attribute_runs", "attribution_text", "measure_values", "shapley"]

SOURCE_LABELS: dict[str, str] = {
    "beneficiary": "beneficiary-level noise",
    "outliers": "outliers above the tail splice",
    "national": "national trend",
    "regional": "regional trend",
    "aco_level": "the ACO's own cost level",
    "quality": "quality score",
    "care_management": "care-management effect uncertainty",
}
"""How tables and charts name the sources of :data:`leadsim.attribution.SOURCES`."""

MEASURES: tuple[str, ...] = ("variance", "tvar")
"""What is attributed: the variance of the ten-year result, and its TVaR at level ``p`` (loss side)."""


def shapley(values: np.ndarray, k: int) -> np.ndarray:
    """Shapley values of a game given on all ``2^k`` coalitions (axis 0, bit ``i`` = player ``i``).

    Parameters
    ----------
    values : ndarray, shape (2^k, ...)
        ``v(S)`` for every subset ``S`` (index = bitmask).
    k : int
        Number of players.

    Returns
    -------
    ndarray, shape (k, ...)
        ``phi_i = sum_{S not containing i} |S|! (k - |S| - 1)! / k! (v(S + i) - v(S))``.

    Notes
    -----
    Efficiency: ``sum_i phi_i = v(all) - v(none)`` exactly (up to rounding), whatever ``v`` is; a player
    that never changes ``v`` gets 0; symmetric players get equal values (Shapley 1953).
    """
    values = np.asarray(values, dtype=float)
    if values.shape[0] != 2**k:
        raise ValueError(f"values must have 2^k = {2**k} rows (got {values.shape[0]})")
    weight = np.array([factorial(s) * factorial(k - s - 1) / factorial(k) for s in range(k)])
    subsets = np.arange(2**k)
    size = np.array([bin(s).count("1") for s in subsets])
    out = np.zeros((k, *values.shape[1:]))
    for i in range(k):
        without = subsets[(subsets >> i & 1) == 0]
        w = weight[size[without]].reshape((-1,) + (1,) * (values.ndim - 1))
        out[i] = np.sum(w * (values[without | (1 << i)] - values[without]), axis=0)
    return out


def measure_values(x: np.ndarray, p: float) -> np.ndarray:
    """Variance and TVaR_p of samples ``x`` (draws on axis 1: shape (subsets, n, tracks)) -> (2, subsets, tracks).

    Notes
    -----
    Variance with ``ddof = 1``; TVaR on the loss side by :func:`leadsim.analysis.risk.tail_metrics`
    (``docs/model.md``).
    """
    var = x.var(axis=1, ddof=1)
    moved = np.moveaxis(x, 1, 0)                               # (n, subsets, tracks)
    tv = tail_metrics(moved, p).tvar[0]
    return np.stack([var, tv])


def attribute_runs(runs: xr.Dataset, p: float = 0.99, n_boot: int = 200, seed: int = 0) -> xr.Dataset:
    """Shapley attribution of the variance and TVaR_p of the ten-year result to each risk source.

    Parameters
    ----------
    runs : xarray.Dataset
        From :func:`leadsim.attribution.source_runs`: ``cumulative_settlement`` (subset, draw, track).
    p : float
        TVaR level (default 0.99).
    n_boot : int
        Bootstrap resamples of the draws for the standard errors (0: no standard errors).
    seed : int
        Seed of the bootstrap resampling (not of the simulation).

    Returns
    -------
    xarray.Dataset
        Over (measure, source, track): ``shapley`` (USD^2 for variance, USD for TVaR), ``share`` (of the
        total), and their ``_se``; over (measure, track): ``total = v(all) - v(none)`` and ``value_all``,
        ``value_none`` with ``_se``. ``value`` (measure, subset, track) holds every subset's value.

    Notes
    -----
    ``v(S)`` is the variance (or TVaR_p) of the result with the sources in ``S`` on and the others off, all
    on the same draws; ``phi_i`` its Shapley value (:func:`shapley`): the average, over the orders in which
    the sources can be switched on, of what switching ``i`` on adds. The values add up to
    ``v(all) - v(none)``; for the variance ``v(none) = 0`` (nothing random is left), for TVaR ``v(none)``
    is the loss with every source off, so the TVaR shares split the tail beyond that deterministic result.
    Shares can be negative (a source that diversifies the tail) and exceed 1 in sum of absolutes.
    Monte Carlo error: ``n_boot`` bootstrap resamples of the draws, the same resample for every subset (so
    the common random numbers are kept); the standard error of each figure is the bootstrap SD. The means of
    the kernel outputs used when beneficiary noise is off are not resampled (their error is of order
    ``1/sqrt(draws)`` of the beneficiary noise of one draw and is ignored).
    """
    x = np.asarray(runs["cumulative_settlement"].transpose("subset", "draw", "track").values, dtype=float)
    k = runs.sizes["source"]
    n = x.shape[1]

    def figures(sample: np.ndarray) -> tuple[np.ndarray, ...]:
        v = measure_values(sample, p)                         # (2, subsets, tracks)
        phi = np.moveaxis(shapley(np.moveaxis(v, 1, 0), k), 0, 1)   # (2, k, tracks)
        total = v[:, -1] - v[:, 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(total[:, None] != 0, phi / total[:, None], np.nan)
        return v, phi, share, total

    v, phi, share, total = figures(x)
    rng = np.random.default_rng(seed)
    boots = [figures(x[:, rng.integers(0, n, n)]) for _ in range(int(n_boot))]

    def se(i: int, shape: tuple[int, ...]) -> np.ndarray:
        if len(boots) < 2:
            return np.full(shape, np.nan)
        return np.nanstd(np.stack([b[i] for b in boots]), axis=0, ddof=1)

    v_se, phi_se, share_se, total_se = (se(i, a.shape) for i, a in enumerate((v, phi, share, total)))
    dims3, dims2 = ("measure", "source", "track"), ("measure", "track")
    ds = xr.Dataset(
        {
            "shapley": (dims3, phi), "shapley_se": (dims3, phi_se),
            "share": (dims3, share), "share_se": (dims3, share_se),
            "total": (dims2, total), "total_se": (dims2, total_se),
            "value_all": (dims2, v[:, -1]), "value_all_se": (dims2, v_se[:, -1]),
            "value_none": (dims2, v[:, 0]), "value_none_se": (dims2, v_se[:, 0]),
            "value": (("measure", "subset", "track"), v),
            "source_on": runs["source_on"],
        },
        coords={"measure": list(MEASURES), "source": runs["source"].values, "track": runs["track"].values,
                "subset": runs["subset"].values},
        attrs={**runs.attrs, "tvar_level": p, "draws": n, "bootstrap": int(n_boot),
               "method": "Shapley values over 2^k subsets of sources switched off on common random numbers; "
                         "bootstrap standard errors over draws"},
    )
    return ds


def attribution_text(attr: xr.Dataset) -> str:
    """A one-screen table: per source and track, the share of the variance and of TVaR with their SEs."""
    tracks = [str(t) for t in attr["track"].values]
    p = float(attr.attrs.get("tvar_level", 0.99))
    cols = [(t, m, f"{t} {name}") for t in tracks for m, name in (("variance", "Var"), ("tvar", f"TVaR {p:.1%}"))]
    widths = [max(18, len(label) + 3) for *_, label in cols]
    head = f"{'source':38}" + "".join(f"{label:>{w}}" for (*_, label), w in zip(cols, widths, strict=True))
    lines = [f"Variance attribution of the ten-year result: Shapley shares ± bootstrap se "
             f"({int(attr.attrs.get('draws', 0)):,} draws, {attr.sizes['subset']} subsets)", head]
    for s in attr["source"].values:
        row = f"{SOURCE_LABELS.get(str(s), str(s)):38}"
        for (t, m, _), w in zip(cols, widths, strict=True):
            sh = float(attr.share.sel(measure=m, source=s, track=t))
            e = float(attr.share_se.sel(measure=m, source=s, track=t))
            row += f"{percent(sh, e):>{w}}"
        lines.append(row)
    sd = "".join(f"{t}: SD {money(float(np.sqrt(attr.value_all.sel(measure='variance', track=t))))}, "
                 f"TVaR {money(float(attr.value_all.sel(measure='tvar', track=t)))} "
                 f"(all off: {money(float(attr.value_none.sel(measure='tvar', track=t)))}); "
                 for t in tracks)
    lines.append(f"All sources on: {sd.rstrip('; ')}")
    return "\n".join(lines)
