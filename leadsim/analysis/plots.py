"""Figures of a run (matplotlib): fan chart, loss exceedance, distribution, comparison, waterfall, convergence.

Every function takes an optional ``ax`` and returns the :class:`matplotlib.figure.Figure` it drew on. Without
``ax`` a new Figure is made with :class:`matplotlib.figure.Figure` (no pyplot state, safe headless and in
loops). Money is in USD, positive to the ACO; losses are drawn as positive amounts where an axis says "loss".
All functions are vectorised over draws and fine for 100,000 draws.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import ParamSpec, TypeVar

import matplotlib
import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from leadsim.analysis.formatting import money_formatter, scale_for
from leadsim.analysis.risk import (
    Design,
    design_se,
    effective_draws,
    horizon,
    order_index,
    sample_design,
    tail_metrics,
    tail_prob,
)

__all__ = [
    "attribution_chart",
    "comparison",
    "convergence",
    "fan_chart",
    "loss_exceedance",
    "settlement_distribution",
    "waterfall",
    "waterfall_data",
]

Runs = xr.Dataset | Mapping[str, xr.Dataset]

_TRACK_COLOURS = {"global": "#1f5fa8", "professional": "#d8792b", "enhanced": "#3a8f4b"}
_CYCLE = ["#1f5fa8", "#d8792b", "#3a8f4b", "#a23b72", "#6b6b6b", "#8c6d1f", "#17a2b8", "#c0392b"]


PLAIN_TEXT = {"text.parse_math": False, "text.usetex": False}
"""Names and labels come from configs and results: draw them literally (``$...$`` is not mathtext)."""

_P = ParamSpec("_P")
_R = TypeVar("_R")


def plain_text(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Create every text of the figure with math parsing off (see :data:`PLAIN_TEXT`)."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with matplotlib.rc_context(PLAIN_TEXT):
            return fn(*args, **kwargs)

    return wrapper


def _new_ax(ax: Axes | None, size: tuple[float, float] = (7.0, 4.2)) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    fig = Figure(figsize=size, dpi=100, layout="constrained")
    return fig, fig.add_subplot()


def _pct(p: float) -> str:
    return f"{100 * p:g}%"


def _colour(label: str, i: int) -> str:
    return _TRACK_COLOURS.get(label, _CYCLE[i % len(_CYCLE)])


def _series(runs: Runs, var: str) -> list[tuple[str, np.ndarray]]:
    """(label, horizon values per draw) for each track of each run."""
    items = {"": runs} if isinstance(runs, xr.Dataset) else dict(runs)
    out = []
    for name, ds in items.items():
        h = horizon(ds, var) if "year" in ds[var].dims else ds[var]
        h = h if "track" in h.dims else h.expand_dims(track=[str(ds["track"].values)] if "track" in ds.coords
                                                      else [var])
        for t in h["track"].values:
            label = f"{name}: {t}" if name else str(t)
            out.append((label, h.sel(track=t).values.astype(float)))
    return out


def _designs(runs: Runs, var: str) -> list[Design]:
    """The sample design (weights, QMC batches) of each curve of :func:`_series`, in the same order."""
    items = {"": runs} if isinstance(runs, xr.Dataset) else dict(runs)
    out = []
    for ds in items.values():
        h = horizon(ds, var) if "year" in ds[var].dims else ds[var]
        out += [sample_design(ds)] * (h.sizes["track"] if "track" in h.dims else 1)
    return out


def _quantiles(values: np.ndarray, qs: Sequence[float], weight: np.ndarray | None) -> np.ndarray:
    """Quantiles over draws (axis 0): numpy's default, or the weighted ``inverted_cdf`` of a tilted run."""
    if weight is None:
        return np.quantile(values, qs, axis=0)
    return np.quantile(values, qs, axis=0, method="inverted_cdf",
                       weights=np.broadcast_to(weight.reshape((-1,) + (1,) * (values.ndim - 1)), values.shape))


def _head(design: Design, m: int) -> Design:
    """The design of the first ``m`` draws."""
    return Design(None if design.weight is None else design.weight[:m],
                  None if design.batch is None else design.batch[:m])


def _subtitle(runs: Runs) -> str:
    if not isinstance(runs, xr.Dataset):
        return f"{len(runs)} runs: " + ", ".join(runs)
    ds = runs
    return f"{ds.attrs.get('aco_name', '')} | {ds.attrs.get('policy_name', '')} | {ds.sizes['draw']:,} draws"


@plain_text
def fan_chart(ds: xr.Dataset, track: str | None = None, ax: Axes | None = None,
              bands: Sequence[float] = (0.90, 0.50)) -> Figure:
    """Fan chart of the benchmark vs spending per member-month (PBPM) over the performance years.

    Parameters
    ----------
    ds : xarray.Dataset
        A leadsim result.
    track : str, optional
        Track whose benchmark is drawn as a fan (default: the first); the other tracks' median benchmarks are
        drawn as dashed lines.
    ax : matplotlib.axes.Axes, optional
    bands : sequence of float
        Central probability of each shaded band (default 90% and 50%), plus the median line.

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    Benchmark PBPM = ``benchmark / member_months`` (final, after discount and withhold), drawn as shaded
    bands; spending PBPM = ``expenditure / member_months`` summed over populations (before stop-loss
    relief), drawn as lines (median solid, bands dashed/dotted). Quantiles across draws per year. The two
    move together (the benchmark is trended by the same national and regional growth), so the overlap of
    the bands overstates the spread of savings; see the waterfall and exceedance plots for that.
    """
    fig, ax = _new_ax(ax)
    tracks = [str(t) for t in ds["track"].values]
    track = track or tracks[0]
    mm = ds["member_months"].sum("population")
    spend = (ds["expenditure"].sum("population") / mm).transpose("draw", "year").values
    bench = (ds["benchmark"] / mm).transpose("draw", "year", "track")
    years = ds["year"].values
    weight = sample_design(ds).weight

    lines = {0: ":", 1: "--"}
    for k, b in enumerate(sorted(bands, reverse=True)):
        lo, hi = _quantiles(bench.sel(track=track).values, [(1 - b) / 2, (1 + b) / 2], weight)
        ax.fill_between(years, lo, hi, color=_TRACK_COLOURS.get(track, _CYCLE[0]), alpha=0.15 + 0.2 * k, lw=0,
                        label=f"benchmark ({track}) {b:.0%} band")
        lo, hi = _quantiles(spend, [(1 - b) / 2, (1 + b) / 2], weight)
        ax.plot(years, lo, color="#b03a2e", ls=lines.get(k, "-."), lw=1.3, label=f"spending {b:.0%} band")
        ax.plot(years, hi, color="#b03a2e", ls=lines.get(k, "-."), lw=1.3)
    ax.plot(years, _quantiles(bench.sel(track=track).values, [0.5], weight)[0],
            color=_TRACK_COLOURS.get(track, _CYCLE[0]), lw=2.2, label=f"benchmark ({track}) median")
    ax.plot(years, _quantiles(spend, [0.5], weight)[0], color="#b03a2e", lw=2.2, label="spending median")
    for i, t in enumerate(tracks):
        if t != track:
            ax.plot(years, _quantiles(bench.sel(track=t).values, [0.5], weight)[0], ls="--", lw=1.5,
                    color=_TRACK_COLOURS.get(t, _CYCLE[i]), label=f"benchmark ({t}) median")
    ax.set_xticks(years)
    ax.tick_params(axis="x", labelrotation=45)
    ax.yaxis.set_major_formatter(money_formatter(1.0, ""))
    ax.set_ylabel("USD per member-month")
    ax.set_title(f"Benchmark vs spending PBPM\n{_subtitle(ds)}", fontsize=10)
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    ax.grid(alpha=0.3)
    return fig


def _wilson(p: np.ndarray, n: int, z: float) -> tuple[np.ndarray, np.ndarray]:
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


@plain_text
def loss_exceedance(runs: Runs, var: str = "net_settlement", ax: Axes | None = None, conf: float = 0.95,
                    points: int = 400) -> Figure:
    """Loss exceedance curve ``P(loss > x)`` over the horizon per track (or per run and track), with bands.

    Parameters
    ----------
    runs : xarray.Dataset or mapping of label to Dataset
        One run (a curve per track) or several (a curve per run and track).
    var : str
        Variable; an annual one is totalled over the horizon (:func:`leadsim.analysis.risk.horizon`).
    ax : matplotlib.axes.Axes, optional
    conf : float
        Confidence of the pointwise band (Wilson score interval for a binomial proportion).
    points : int
        Loss levels evaluated per curve (quantiles of the sample), so the figure stays light at 100,000 draws.

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    Loss ``L = -X``; the curve is the empirical survival function ``#{L_i > x} / n`` on a log scale down to
    ``1/n``; the band is Wilson's interval ``(p + z^2/2n ± z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)``
    (Wilson 1927, JASA 22:209), which stays inside (0, 1) in the far tail. The dotted lines mark 1-in-20 and
    1-in-100; a curve crosses them at VaR 95% and 99%.
    """
    from scipy.special import ndtri

    fig, ax = _new_ax(ax)
    series = _series(runs, var)
    z = float(ndtri(0.5 + conf / 2))
    allv = np.concatenate([-v for _, v in series])
    scale, unit = scale_for(allv)
    n_min = min(v.size for _, v in series)
    for i, ((label, x), design) in enumerate(zip(series, _designs(runs, var), strict=True)):
        order = np.argsort(-x, kind="stable")
        loss = -x[order]
        n = loss.size
        grid = np.unique(np.quantile(loss, np.linspace(0, 1, points), method="inverted_cdf"))
        if design.weight is None:
            p = 1.0 - np.searchsorted(loss, grid, side="right") / n
        else:  # weighted survival function; the band uses Kish's effective sample size
            cum = np.concatenate([[0.0], np.cumsum(design.weight[order])]) / design.weight.sum()
            p = 1.0 - cum[np.searchsorted(loss, grid, side="right")]
            n = max(int(effective_draws(design, n)), 1)
        keep = p > 1e-15
        lo, hi = _wilson(p[keep], n, z)
        c = _colour(label, i)
        ax.fill_between(grid[keep], np.maximum(lo, 0.1 / n), hi, color=c, alpha=0.2, lw=0, step="post")
        ax.step(grid[keep], p[keep], where="post", color=c, lw=1.8, label=label)
    for q, txt in ((0.05, "1 in 20"), (0.01, "1 in 100")):
        ax.axhline(q, color="0.4", ls=":", lw=1)
        ax.text(1.0, q, f" {txt}", transform=ax.get_yaxis_transform(), va="center", fontsize=7, color="0.3")
    ax.axvline(0, color="0.2", lw=0.8)
    ax.set_yscale("log")
    ax.set_ylim(0.5 / n_min, 1.05)
    ax.xaxis.set_major_formatter(money_formatter(scale, unit))
    ax.set_xlabel("ten-year loss to the ACO (negative = gain)")
    ax.set_ylabel("probability the loss is exceeded")
    ax.set_title(f"Loss exceedance with {conf:.0%} bands\n{_subtitle(runs)}", fontsize=10)
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3, which="both")
    return fig


@plain_text
def settlement_distribution(runs: Runs, var: str = "net_settlement", ax: Axes | None = None,
                            bins: int | None = None, p: float = 0.99) -> Figure:
    """Distribution of the ten-year cumulative settlement per track (or per run and track).

    Parameters
    ----------
    runs : xarray.Dataset or mapping of label to Dataset
    var : str
        Variable, totalled over the horizon when annual (default: ``cumulative_settlement``).
    ax : matplotlib.axes.Axes, optional
    bins : int, optional
        Histogram bins, shared by all curves (default ``sqrt(draws)`` within 15-80).
    p : float
        Level whose loss-side VaR is marked (dashed; solid = mean).

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = _new_ax(ax)
    series = _series(runs, var)
    allv = np.concatenate([v for _, v in series])
    scale, unit = scale_for(allv)
    if bins is None:
        bins = int(np.clip(np.sqrt(min(v.size for _, v in series)), 15, 80))
    edges = np.histogram_bin_edges(allv, bins=bins)
    for i, ((label, x), design) in enumerate(zip(series, _designs(runs, var), strict=True)):
        c = _colour(label, i)
        dens, _ = np.histogram(x, bins=edges, density=True, weights=design.weight)
        ax.stairs(dens, edges, color=c, lw=1.8, label=label, fill=False)
        ax.stairs(dens, edges, color=c, alpha=0.12, fill=True)
        var_p = float(tail_metrics(x, p, design).var[0])
        ax.axvline(np.average(x, weights=design.weight), color=c, lw=1.2)
        ax.axvline(-var_p, color=c, lw=1.2, ls="--")
    ax.axvline(0, color="0.2", lw=0.8)
    ax.xaxis.set_major_formatter(money_formatter(scale, unit))
    ax.set_yticks([])
    ax.set_xlabel(f"ten-year {var.replace('_', ' ')} (positive = paid to the ACO)")
    ax.set_ylabel("density")
    ax.set_title(f"Ten-year settlement: solid = mean, dashed = 1-in-{round(1 / (1 - p))} loss\n{_subtitle(runs)}",
                 fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


@plain_text
def comparison(runs: Runs, var: str = "net_settlement", p: float = 0.99, ax: Axes | None = None) -> Figure:
    """Risk-return comparison of tracks or policies: mean ten-year settlement vs TVaR, with 95% error bars.

    Parameters
    ----------
    runs : xarray.Dataset or mapping of label to Dataset
        One run (a point per track) or several runs, e.g. ``{"LEAD": lead, "MSSP": mssp}``.
    var : str
        Variable, totalled over the horizon when annual.
    p : float
        TVaR level.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    Up and to the left is better: more expected money with a smaller tail loss. Error bars are ±1.96
    Monte Carlo standard errors (:func:`leadsim.analysis.risk.tail_metrics`; the mean's is ``sd/sqrt(n)``). When runs
    share draws, differences between points are more precise than the bars suggest: see
    :func:`leadsim.analysis.risk.paired_difference`.
    """
    fig, ax = _new_ax(ax)
    series = _series(runs, var)
    rows = []
    for (label, x), design in zip(series, _designs(runs, var), strict=True):
        tm = tail_metrics(x, p, design)
        mean = (x.mean(), x.std(ddof=1) / np.sqrt(x.size)) if design.trivial else (
            np.average(x, weights=design.weight), float(design_se(x - np.average(x, weights=design.weight), design)))
        rows.append((label, float(tm.tvar[0]), float(tm.tvar_se[0]), *mean))
    vals = np.array([[r[1], r[3]] for r in rows])
    scale, unit = scale_for(vals)
    for i, (label, tv, tv_se, m, m_se) in enumerate(rows):
        c = _colour(label, i)
        ax.errorbar(tv, m, xerr=1.96 * tv_se, yerr=1.96 * m_se, fmt="o", color=c, ms=7, capsize=3, label=label)
        ax.annotate(label, (tv, m), textcoords="offset points", xytext=(6, 6), fontsize=8, color=c)
    ax.axhline(0, color="0.2", lw=0.8)
    ax.xaxis.set_major_formatter(money_formatter(scale, unit))
    ax.yaxis.set_major_formatter(money_formatter(scale, unit))
    ax.set_xlabel(f"TVaR {_pct(p)} of the ten-year loss (tail risk)")
    ax.set_ylabel("mean ten-year settlement (to the ACO)")
    ax.set_title("Risk and return by track / policy (±1.96 s.e.)", fontsize=10)
    ax.margins(0.15)
    ax.grid(alpha=0.3)
    return fig


_STEPS = ("benchmark before discount", "discount", "withhold retained", "spending", "stop-loss (relief - charge)",
          "corridors (CMS share)", "sequestration", "add-ons", "operating cost")


def waterfall_data(ds: xr.Dataset, track: str | None = None, draw: str | int = "mean",
                   year: int | None = None) -> dict[str, float]:
    """The settlement waterfall's steps in USD, summed over the years (or one ``year``).

    Parameters
    ----------
    ds : xarray.Dataset
    track : str, optional
        Default: the first track.
    draw : "mean", "1-in-100" or int
        The mean over draws; the draw at the 1% lower quantile (``inverted_cdf``) of the track's horizon
        settlement (of the year's settlement when ``year`` is given); or a draw label.
    year : int, optional
        One performance year instead of the sum over the horizon.

    Returns
    -------
    dict
        Steps in order (:data:`_STEPS`) and the totals ``final benchmark``, ``gross savings``, ``net settlement``
        and ``draw`` (the draw label used, or -1 for the mean). The steps add up: ``benchmark before discount +
        sum(steps) = net settlement``.

    Notes
    -----
    ``benchmark before discount = benchmark + benchmark_discount + withhold_retained``; ``stop-loss = gross
    savings - (benchmark - expenditure)`` (relief times neutrality, minus the charge); ``corridors = shared
    savings + sequestration - gross savings`` (what the corridor leaves with CMS); the sum over years is
    undiscounted.
    """
    track = track or str(ds["track"].values[0])
    t = ds.sel(track=track)
    if year is not None:
        t = t.sel(year=[year])
    chosen = -1
    if isinstance(draw, str):
        w = sample_design(ds).weight
        if draw == "mean":
            t = t.mean("draw") if w is None else t.weighted(xr.DataArray(w, dims="draw")).mean("draw")
        elif draw in ("1-in-100", "1in100", "var99"):
            x = (horizon(t) if year is None else t["net_settlement"].sum("year")).values
            order = np.argsort(x, kind="stable")
            if w is None:
                k = int(order_index(x.size, np.atleast_1d(tail_prob(0.99)))[0])
            else:  # the weighted inverted_cdf quantile's draw
                k = int(np.searchsorted(np.cumsum(w[order]) / w.sum(), tail_prob(0.99) - 1e-12))
            idx = int(order[k])
            chosen = int(t["draw"].values[idx])
            t = t.isel(draw=idx)
        else:
            raise ValueError(f"draw must be 'mean', '1-in-100' or a draw label, got {draw!r}")
    else:
        chosen = int(draw)
        t = t.sel(draw=draw)
    s = {k: float(t[k].sum()) for k in ("benchmark", "benchmark_discount", "withhold_retained", "gross_savings",
                                        "shared_savings", "sequestration", "add_on_payments", "net_settlement")}
    s["operating_cost"] = float(t["operating_cost"].sum()) if "operating_cost" in t else 0.0
    spend = float(t["expenditure"].sum())
    out = {
        "benchmark before discount": s["benchmark"] + s["benchmark_discount"] + s["withhold_retained"],
        "discount": -s["benchmark_discount"],
        "withhold retained": -s["withhold_retained"],
        "spending": -spend,
        "stop-loss (relief - charge)": s["gross_savings"] - (s["benchmark"] - spend),
        "corridors (CMS share)": s["shared_savings"] + s["sequestration"] - s["gross_savings"],
        "sequestration": -s["sequestration"],
        "add-ons": s["add_on_payments"],
        "operating cost": -s["operating_cost"],
        "final benchmark": s["benchmark"],
        "gross savings": s["gross_savings"],
        "net settlement": s["net_settlement"],
        "draw": float(chosen),
    }
    tiny = 1e-9 * max(abs(out["benchmark before discount"]), 1.0)
    return {k: (0.0 if abs(v) < tiny else v) for k, v in out.items()}


@plain_text
def waterfall(ds: xr.Dataset, track: str | None = None, draw: str | int = "mean", year: int | None = None,
              ax: Axes | None = None) -> Figure:
    """Settlement waterfall: benchmark → discount → withhold → spending → stop-loss → corridors → sequestration →
    add-ons → net, for the mean or the 1-in-100 draw.

    Parameters
    ----------
    ds : xarray.Dataset
    track : str, optional
    draw : "mean", "1-in-100" or int
        See :func:`waterfall_data`.
    year : int, optional
        One performance year (default: the sum over the horizon).
    ax : matplotlib.axes.Axes, optional
        The area is split into two panels (a broken axis): the benchmark-sized steps on top, the steps near
        zero below, so a discount of 2% and a net result of 0.3% of benchmark are both readable.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, parent = _new_ax(ax, size=(7.0, 5.2))
    w = waterfall_data(ds, track, draw, year)
    steps = list(_STEPS)
    if w["operating cost"] == 0.0:
        steps.remove("operating cost")
    labels, bottoms, heights, kinds = [], [], [], []
    level = 0.0
    for name in steps:
        v = w[name]
        if name == "benchmark before discount":
            labels.append(name)
            bottoms.append(0.0)
            heights.append(v)
            kinds.append("total")
            level = v
            continue
        labels.append(name)
        bottoms.append(level)
        heights.append(v)
        kinds.append("step")
        level += v
        if name == "withhold retained":
            labels.append("final benchmark")
            bottoms.append(0.0)
            heights.append(level)
            kinds.append("total")
        if name == "stop-loss (relief - charge)":
            labels.append("gross savings")
            bottoms.append(0.0)
            heights.append(level)
            kinds.append("total")
    labels.append("net settlement")
    bottoms.append(0.0)
    heights.append(level)
    kinds.append("total")
    b, h = np.array(bottoms), np.array(heights)
    tops, lows = np.maximum(b, b + h), np.minimum(b, b + h)
    big = w["benchmark before discount"]
    scale, unit = scale_for(np.array([big]))
    small_scale, small_unit = scale_for(np.abs(h[np.abs(h) < 0.5 * abs(big)]) if big else h)

    # top panel: the benchmark level; bottom panel: everything near zero
    near = [lv for lv in (*tops, *lows) if abs(lv) < 0.5 * abs(big)] + [0.0]
    lo_rng = (min(near), max(near))
    pad = 0.12 * (lo_rng[1] - lo_rng[0] or abs(big) * 0.01)
    far = [lv for lv in (*tops, *lows) if abs(lv) >= 0.5 * abs(big)]
    hi_rng = (min(far), max(far)) if far else (big, big)
    hpad = 0.25 * (hi_rng[1] - hi_rng[0] or abs(big) * 0.01)
    parent.set_axis_off()
    top = parent.inset_axes((0.0, 0.60, 1.0, 0.36))
    bot = parent.inset_axes((0.0, 0.0, 1.0, 0.56))
    xs = np.arange(len(labels))
    colours = ["#5b6770" if k == "total" else ("#2e8b57" if v >= 0 else "#c0392b") for k, v in zip(kinds, h,
                                                                                                    strict=True)]
    for axis in (top, bot):
        axis.bar(xs, h, bottom=b, color=colours, width=0.65, edgecolor="white")
        for i in range(len(xs) - 1):
            if kinds[i + 1] == "step" or kinds[i] == "step":
                lvl = b[i] + h[i]
                axis.plot([i + 0.33, i + 0.67], [lvl, lvl], color="0.5", lw=0.7)
        axis.grid(alpha=0.3, axis="y")
    top.set_ylim(hi_rng[0] - hpad, hi_rng[1] + hpad)
    bot.set_ylim(lo_rng[0] - pad, lo_rng[1] + pad)
    top.yaxis.set_major_formatter(money_formatter(scale, unit) if scale >= 1e9 else money_formatter(1e6, "M"))
    bot.yaxis.set_major_formatter(money_formatter(small_scale, small_unit))
    top.spines["bottom"].set_visible(False)
    bot.spines["top"].set_visible(False)
    top.set_xticks([])
    bot.set_xticks(xs, labels, rotation=35, ha="right", fontsize=8)
    bot.axhline(0, color="0.2", lw=0.8)
    for axis, (y0, y1) in ((top, top.get_ylim()), (bot, bot.get_ylim())):
        for i, (bi, hi_, k) in enumerate(zip(b, h, kinds, strict=True)):
            end = bi + hi_ if k == "step" else hi_
            if y0 <= end <= y1 and not (axis is bot and abs(end) >= 0.5 * abs(big)):
                sc, un = (scale, unit) if abs(hi_) >= 1e9 else scale_for(np.array([hi_]))
                txt = f"{'+' if (hi_ > 0 and k == 'step') else ''}{hi_ / sc:,.2f}{un}"
                axis.annotate(txt, (i, end), textcoords="offset points", xytext=(0, 3 if hi_ >= 0 else -9),
                              ha="center", fontsize=7)
    # break marks
    d = 0.012
    for axis, yy in ((top, 0.0), (bot, 1.0)):
        kw = {"transform": axis.transAxes, "color": "0.3", "clip_on": False, "lw": 1}
        axis.plot((-d, d), (yy - 2 * d, yy + 2 * d), **kw)
        axis.plot((1 - d, 1 + d), (yy - 2 * d, yy + 2 * d), **kw)
    which = "mean over draws" if w["draw"] < 0 else f"1-in-100 draw (draw {int(w['draw'])})" \
        if draw != "mean" and not isinstance(draw, int) else f"draw {int(w['draw'])}"
    period = f"PY{year}" if year is not None else "ten-year total (undiscounted)"
    top.set_title(f"Settlement waterfall: {track or str(ds['track'].values[0])}, {which}, {period}\n"
                  f"net settlement {'-' if w['net settlement'] < 0 else ''}${abs(w['net settlement']) / 1e6:,.2f}M; "
                  "benchmark axis broken", fontsize=10)
    return fig


@plain_text
def convergence(ds: xr.Dataset, var: str = "net_settlement", p: float = 0.99, track: str | None = None,
                ax: Axes | None = None, points: int = 40) -> Figure:
    """Running TVaR of the ten-year loss against the number of draws, with its ±1.96 standard-error band.

    Parameters
    ----------
    ds : xarray.Dataset
    var : str
        Variable, totalled over the horizon when annual.
    p : float
        TVaR level.
    track : str, optional
        One track; default all tracks.
    ax : matplotlib.axes.Axes, optional
    points : int
        Draw counts evaluated, geometrically spaced from ``max(20, ceil(1/(1-p)))`` to all draws.

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    The estimate over the first ``m`` draws (in draw order) and its standard error from
    :func:`leadsim.analysis.risk.tail_metrics`. The band should narrow like ``1/sqrt(m)`` and the estimate settle inside
    the final band; if it is still drifting, the tail needs more draws.
    """
    fig, ax = _new_ax(ax)
    pairs = [(s, d) for s, d in zip(_series(ds, var), _designs(ds, var), strict=True) if track is None or s[0] == track]
    series = [s for s, _ in pairs]
    n = min(x.size for _, x in series)
    start = min(n, max(20, int(np.ceil(1 / (1 - p)))))
    ms = np.unique(np.geomspace(start, n, points).astype(int))
    allv = []
    for i, ((label, x), design) in enumerate(pairs):
        est = np.empty(ms.size)
        se = np.empty(ms.size)
        for j, m in enumerate(ms):
            tm = tail_metrics(x[:m], p, _head(design, m))
            est[j], se[j] = tm.tvar[0], tm.tvar_se[0]
        c = _colour(label, i)
        ax.fill_between(ms, est - 1.96 * se, est + 1.96 * se, color=c, alpha=0.2, lw=0)
        ax.plot(ms, est, color=c, lw=1.8, label=f"{label}: {est[-1] / 1e6:,.2f}M ± {1.96 * se[-1] / 1e6:,.2f}M")
        allv.append(est)
    scale, unit = scale_for(np.concatenate(allv))
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}" if str(int(v))[0] in "25" else ""))
    ax.yaxis.set_major_formatter(money_formatter(scale, unit))
    ax.set_xlabel("draws used")
    ax.set_ylabel(f"TVaR {_pct(p)} of the ten-year loss")
    ax.set_title(f"Convergence of TVaR {_pct(p)} (band: ±1.96 s.e.)\n{_subtitle(ds)}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return fig



@plain_text
def attribution_chart(attr: xr.Dataset, fig: Figure | None = None) -> Figure:
    """Shapley shares of the variance and of TVaR of the ten-year result by risk source, per track.

    Parameters
    ----------
    attr : xarray.Dataset
        From :func:`leadsim.analysis.attribution.attribute_runs` (``share`` and ``share_se`` over measure,
        source, track).
    fig : matplotlib.figure.Figure, optional
        Drawn on (two panels side by side); a new Figure by default.

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    Bars are the shares of ``v(all) - v(none)`` (they sum to 100% per panel and track); error bars are ±1.96
    bootstrap standard errors over draws (``docs/model.md``, variance attribution).
    """
    from leadsim.analysis.attribution import SOURCE_LABELS

    if fig is None:
        fig = Figure(figsize=(10.0, 4.6), dpi=100, layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    sources = [str(s) for s in attr["source"].values]
    tracks = [str(t) for t in attr["track"].values]
    y = np.arange(len(sources))
    h = 0.8 / max(len(tracks), 1)
    p = float(attr.attrs.get("tvar_level", 0.99))
    for ax, measure, title in zip(axes, ("variance", "tvar"),
                                  ("Share of the variance", f"Share of TVaR {_pct(p)} beyond the all-off result"),
                                  strict=True):
        for i, t in enumerate(tracks):
            share = attr.share.sel(measure=measure, track=t).values
            se = attr.share_se.sel(measure=measure, track=t).values
            ax.barh(y + (i - (len(tracks) - 1) / 2) * h, 100 * share, height=h, color=_colour(t, i), label=t,
                    xerr=np.where(np.isfinite(se), 196 * se, 0.0), error_kw={"capsize": 2, "lw": 0.8})
        ax.axvline(0, color="0.2", lw=0.8)
        ax.set_title(title, fontsize=10)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}%"))
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_yticks(y, [SOURCE_LABELS.get(s, s) for s in sources], fontsize=8)
    axes[0].invert_yaxis()
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Where the ten-year risk comes from (Shapley shares, ±1.96 s.e.; "
                 f"{int(attr.attrs.get('draws', 0)):,} draws)", fontsize=10)
    return fig
