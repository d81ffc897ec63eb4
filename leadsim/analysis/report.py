"""Self-contained HTML reports: one run (``leadsim report``) and several side by side (``leadsim compare``).

The HTML has no external resources: figures are embedded as base64 PNG ``<img>`` tags, tables are plain
``<table>`` elements, the CSS is inline. Every figure is an ``<img class="figure" data-figure=NAME>`` and every
table a ``<table data-table=NAME>`` so tests (and headless Chromium) can check that each is present.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from leadsim._version import __version__
from leadsim.analysis import plots
from leadsim.analysis.formatting import money, percent
from leadsim.analysis.risk import HORIZON, LEVELS, paired_difference, sampling_note, summarize
from leadsim.atomic import atomic_path

__all__ = ["attribution_html", "attribution_section", "compare_html", "compare_text", "report_html", "write_html"]

COMPARE_FIGURES = ("comparison", "loss_exceedance", "settlement_distribution")
COMPARE_TABLES = ("runs", "compare_metrics", "paired_differences")

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;color:#222;
line-height:1.4;padding:0 16px}
h1{font-size:1.6em;margin-bottom:0.2em}h2{border-bottom:1px solid #ccc;padding-bottom:3px;margin-top:1.6em}
.sub{color:#555;margin-top:0}
table{border-collapse:collapse;margin:8px 0 16px;font-size:0.86em}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right;white-space:nowrap}
th{background:#f3f5f7}td.l,th.l{text-align:left}
.se{color:#777;font-size:0.85em}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:12px}
figure{margin:0;min-width:0}.wrap td{white-space:normal;word-break:break-word}
figure img{width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:0.85em;color:#555}
pre{background:#f7f7f7;border:1px solid #e3e3e3;padding:8px;overflow-x:auto;font-size:0.8em}
.note{font-size:0.88em;color:#444;background:#fbfbf3;border-left:3px solid #d9c65a;padding:6px 10px}
"""


def _png(fig: Figure, dpi: int = 110) -> str:
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context(plots.PLAIN_TEXT):  # tick labels are made when drawing
        fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(name: str, fig: Figure, caption: str) -> str:
    return (f'<figure><img class="figure" data-figure="{html.escape(name)}" alt="{html.escape(caption)}" '
            f'src="data:image/png;base64,{_png(fig)}"><figcaption>{html.escape(caption)}</figcaption></figure>')


def _m(x: float, digits: int = 2) -> str:
    return money(x, 1e6, "M", digits)


def _mse(x: float, se: float) -> str:
    """Money with its standard error; no ``±`` part when the error is unknown (e.g. a single draw)."""
    if not np.isfinite(se) or not np.isfinite(x):
        return _m(x)
    return f"{_m(x)} <span class='se'>± {abs(se) / 1e6:,.2f}</span>"


def _p(x: float, se: float | None = None) -> str:
    if se is None or not np.isfinite(x) or not np.isfinite(se):
        return percent(x)
    return f"{percent(x)} <span class='se'>± {se:.1%}</span>"


def _col(v: float, width: int, scale: float = 1e6) -> str:
    """A right-aligned number of a text table in units of ``scale``; ``n/a`` when not finite."""
    return f"{v / scale:>{width},.2f}" if np.isfinite(v) else f"{'n/a':>{width}}"


def _pm(se: float) -> str:
    """`` ± <se in $M>`` for text output, or '' when the standard error is unknown (a single draw)."""
    return f" ± {se / 1e6:,.2f}" if np.isfinite(se) else " (no s.e.: one draw)"


def _table(name: str, header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1, cls: str = "") -> str:
    """An HTML table; ``header`` and ``rows`` are HTML already (escape data values before), ``name`` is text."""
    name, cls = html.escape(name, quote=True), html.escape(cls, quote=True)
    th = "".join(f"<th class='l'>{h}</th>" if i < left else f"<th>{h}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td class='l'>{c}</td>" if i < left else f"<td>{c}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f'<table data-table="{name}" class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<meta name='generator' content='leadsim {__version__}'><style>{_CSS}</style></head>"
            f"<body>{body}</body></html>\n")


def _level_name(p: float) -> str:
    return f"{100 * p:g}%"


def _horizon_rows(s: xr.Dataset) -> list[list[str]]:
    tracks = list(s["track"].values)
    h = s.sel(period=HORIZON)

    def row(label: str, fn) -> list[str]:
        return [label, *(fn(t) for t in tracks)]

    rows = [
        row("Mean", lambda t: _mse(float(h["mean"].sel(track=t)), float(h.mean_se.sel(track=t)))),
        row("Standard deviation", lambda t: _mse(float(h.sd.sel(track=t)), float(h.sd_se.sel(track=t)))),
    ]
    for metric in ("VaR", "TVaR"):
        rows += [row(f"{metric} {_level_name(lv)} (loss)", lambda t, lv=lv, m=metric: _mse(
            float(h[m].sel(track=t, level=lv)), float(h[f"{m}_se"].sel(track=t, level=lv))))
            for lv in s["level"].values]
    rows += [
        row("P(ten-year loss)", lambda t: _p(float(h.p_loss.sel(track=t)), float(h.p_loss_se.sel(track=t)))),
        row("P(some year's cash owed > guarantee)", lambda t: _p(float(h.p_beyond_guarantee.sel(track=t)),
                                                             float(h.p_beyond_guarantee_se.sel(track=t)))),
        row("P(worst cumulative loss > guarantee)", lambda t: _p(
            float(s.p_drawdown_beyond_guarantee.sel(track=t)), float(s.p_drawdown_beyond_guarantee_se.sel(track=t)))),
        row("Worst cumulative drawdown: mean", lambda t: _mse(float(s.drawdown_mean.sel(track=t)),
                                                              float(s.drawdown_mean_se.sel(track=t)))),
    ]
    if 0.99 in s["level"].values:
        rows.append(row("Worst cumulative drawdown: 1 in 100", lambda t: _mse(
            float(s.drawdown_VaR.sel(track=t, level=0.99)), float(s.drawdown_VaR_se.sel(track=t, level=0.99)))))
    return rows


def _annual_rows(s: xr.Dataset, track: str) -> tuple[list[str], list[list[str]]]:
    lv = 0.99 if 0.99 in s["level"].values else float(s["level"].values[-1])
    header = ["Year", "Mean", f"VaR {_level_name(lv)}", f"TVaR {_level_name(lv)}", "P(loss)", "P(owed &gt; FG)"]
    rows = []
    for period in s["period"].values:
        r = s.sel(period=period)
        cells = ["ten-year" if period == HORIZON else html.escape(f"PY{period}")]
        x = r.sel(track=track)
        cells += [_mse(float(x["mean"]), float(x.mean_se)),
                  _mse(float(x.VaR.sel(level=lv)), float(x.VaR_se.sel(level=lv))),
                  _mse(float(x.TVaR.sel(level=lv)), float(x.TVaR_se.sel(level=lv))),
                  _p(float(x.p_loss)), _p(float(x.p_beyond_guarantee))]
        rows.append(cells)
    return header, rows


def _provenance_rows(ds: xr.Dataset) -> list[list[str]]:
    keys = ("title", "aco_name", "policy_name", "seed", "leadsim_version", "numba_version", "numpy_version",
            "rng_scheme", "created")
    rows = [[k, html.escape(str(ds.attrs[k]))] for k in keys if k in ds.attrs]
    rows.append(["draws", f"{ds.sizes['draw']:,}"])
    rows.append(["report generated by", f"leadsim {__version__}"])
    return rows


def _sampling_html(ds: xr.Dataset) -> str:
    """`` · tilted sampling, weighted (...): every table and figure uses the draws' weights`` ("" if plain)."""
    note = sampling_note(ds)
    return f" · {html.escape(note)}: every table and figure uses the draws' weights" if note else ""


def report_html(ds: xr.Dataset, source: str | None = None, levels: Sequence[float] = LEVELS,
                attribution: xr.Dataset | None = None) -> str:
    """The HTML report of one run: metrics with standard errors, figures, assumptions, provenance.

    Parameters
    ----------
    ds : xarray.Dataset
        A leadsim result.
    source : str, optional
        Where the result was read from (shown in the header).
    levels : sequence of float
        VaR/TVaR levels in the tables.
    attribution : xarray.Dataset, optional
        A variance attribution of the same config (:func:`leadsim.analysis.attribution.attribute_runs`): adds its
        section (:func:`attribution_section`) before the figures.

    Returns
    -------
    str
        A complete, self-contained HTML document.
    """
    s = summarize(ds, levels=levels)
    tracks = [str(t) for t in ds["track"].values]
    fg = float(ds["financial_guarantee"]) if "financial_guarantee" in ds else float("nan")
    title = ds.attrs.get("title", "leadsim run")
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p class='sub'>{ds.sizes['draw']:,} draws · seed {html.escape(str(ds.attrs.get('seed', '?')))} · "
             f"leadsim {html.escape(str(ds.attrs.get('leadsim_version', __version__)))}"
             f"{' · ' + html.escape(source) if source else ''}{_sampling_html(ds)}</p>",
             "<p class='note'>Sign convention: settlement is positive when paid <b>to the ACO</b>, negative when "
             "owed to CMS. VaR and TVaR are on the <b>loss side</b> and reported as positive loss amounts: VaR "
             "99% is minus the 1% lower quantile of settlement (numpy <code>inverted_cdf</code>); TVaR 99% is the "
             "mean loss in the worst 1% of draws. A negative VaR means the 1-in-100 outcome is still a gain. "
             "Small grey numbers are Monte Carlo standard errors (asymptotic, from influence functions); ± "
             f"1.96 of them is a 95% interval. Financial guarantee (FG): {_m(fg)}.</p>"]
    parts.append("<h2>Ten-year results</h2>")
    parts.append(_table("horizon_metrics", ["Metric", *map(html.escape, tracks)], _horizon_rows(s)))
    parts.append("<h2>Year by year</h2><p>Annual net settlement; the last row is the ten-year total. P(owed &gt; FG):"
                 " probability that the cash owed at settlement (the loss plus the recouped enhanced PCC advance)"
                 " exceeds that year's financial guarantee; on the last row, in any year.</p>")
    for t in tracks:
        header, rows = _annual_rows(s, t)
        parts.append(f"<h3>{html.escape(t)}</h3>" + _table(f"annual_metrics_{t}", header, rows))
    if attribution is not None:
        parts.append(attribution_section(attribution))

    figs = [
        _figure("fan_chart", plots.fan_chart(ds), "Benchmark (bands) vs spending (lines) per member-month"),
        _figure("loss_exceedance", plots.loss_exceedance(ds), "Ten-year loss exceedance with 95% bands"),
        _figure("settlement_distribution", plots.settlement_distribution(ds),
                "Distribution of the ten-year cumulative settlement"),
        _figure("comparison", plots.comparison(ds), "Mean vs TVaR 99% by track"),
    ]
    for t in tracks:
        figs.append(_figure(f"waterfall_mean_{t}", plots.waterfall(ds, track=t, draw="mean"),
                            f"Settlement waterfall, {t}: mean over draws (ten-year total)"))
        figs.append(_figure(f"waterfall_1in100_{t}", plots.waterfall(ds, track=t, draw="1-in-100"),
                            f"Settlement waterfall, {t}: the 1-in-100 draw of the ten-year settlement"))
    figs.append(_figure("convergence", plots.convergence(ds), "Running TVaR 99% with ±1.96 s.e."))
    parts.append("<h2>Figures</h2><div class='figs'>" + "".join(figs) + "</div>")

    assumptions = str(ds.attrs.get("assumptions", "")).strip() or "(none recorded)"
    parts.append("<h2>Assumptions in force</h2><p>Parameters tagged [ASSUMED] (no public figure) in this run:</p>"
                 f"<pre data-section='assumptions'>{html.escape(assumptions)}</pre>")
    parts.append("<h2>Provenance</h2>")
    parts.append(_table("provenance", ["Attribute", "Value"], _provenance_rows(ds), left=2, cls="wrap"))
    parts.append("<details open><summary>Resolved configuration (TOML)</summary>"
                 f"<pre data-section='config'>{html.escape(str(ds.attrs.get('config_toml', '(not recorded)')))}"
                 "</pre></details>")
    return _page(f"leadsim report: {title}", "".join(parts))


def _labels(runs: Mapping[str, xr.Dataset]) -> list[tuple[str, str, xr.Dataset]]:
    return [(f"{name}: {t}", str(t), ds) for name, ds in runs.items() for t in ds["track"].values]


def _compare_summaries(runs: Mapping[str, xr.Dataset], p: float) -> list[tuple[str, xr.Dataset, xr.Dataset]]:
    out = []
    for name, ds in runs.items():
        s = summarize(ds, levels=sorted({*LEVELS, p})).sel(period=HORIZON)
        out += [(f"{name}: {t}", s.sel(track=t), s) for t in s["track"].values]
    return out


def check_same_horizon(runs: Mapping[str, xr.Dataset]) -> None:
    """Refuse to compare runs over different performance years (their horizon metrics are not comparable).

    Raises
    ------
    ResultError
        Two runs have different ``year`` coordinates, naming each run's years.
    """
    from leadsim.errors import ResultError

    spans = {name: [str(y) for y in ds["year"].values] for name, ds in runs.items()}
    if len({tuple(v) for v in spans.values()}) > 1:
        def span(v: list[str]) -> str:
            return f"PY{v[0]}-{v[-1]} ({len(v)} years)" if v else "no years"

        listed = "; ".join(f"{name}: {span(v)}" for name, v in spans.items())
        raise ResultError(f"cannot compare runs over different horizons ({listed}); run them with the same "
                          "simulation.start_year and simulation.years")


def compare_text(runs: Mapping[str, xr.Dataset], p: float = 0.99, same_track: bool = False) -> str:
    """A plain-text side-by-side table of the ten-year metrics of several runs (one row per run and track).

    With ``same_track`` the paired differences are taken against the first run's same track (scenarios vs a
    baseline), else against the first run's first track.
    """
    check_same_horizon(runs)
    rows = _compare_summaries(runs, p)
    width = max(24, *(len(r[0]) + 2 for r in rows))
    head = (f"{'run: track':{width}}{'mean':>14}{'± se':>10}{'VaR ' + _level_name(p):>14}{'± se':>10}"
            f"{'TVaR ' + _level_name(p):>14}{'± se':>10}{'P(loss)':>9}{'P(>FG)':>9}")
    lines = ["Ten-year cumulative settlement (positive = paid to the ACO; VaR/TVaR = loss, $M)", head]
    for label, x, _ in rows:
        lines.append(f"{label:{width}}{_col(float(x['mean']), 14)}{_col(float(x.mean_se), 10)}"
                     f"{_col(float(x.VaR.sel(level=p)), 14)}{_col(float(x.VaR_se.sel(level=p)), 10)}"
                     f"{_col(float(x.TVaR.sel(level=p)), 14)}{_col(float(x.TVaR_se.sel(level=p)), 10)}"
                     f"{float(x.p_loss):>9.1%}{float(x.p_beyond_guarantee):>9.1%}")
    diffs = _paired_rows(runs, p, same_track)
    if diffs:
        lines.append("")
        ref_name = f"{next(iter(runs))}, same track" if same_track else diffs[0][0]
        lines.append(f"Paired differences vs {ref_name} (same draws; $M, ± se)")
        for ref, label, dmean, dmean_se, dtv, dtv_se, crn in diffs:
            del ref
            lines.append(f"{label:{width}}mean {dmean / 1e6:+,.2f}{_pm(dmean_se)}   "
                         f"TVaR {_level_name(p)} {dtv / 1e6:+,.2f}{_pm(dtv_se)}"
                         f"{'' if crn else '   (different seeds or sampling: no common random numbers)'}")
    return "\n".join(lines)


def _paired_rows(runs: Mapping[str, xr.Dataset], p: float,
                 same_track: bool = False) -> list[tuple[str, str, float, float, float, float, bool]]:
    """Every (run, track) minus the first run's first track (or, ``same_track``, the first run's same track),
    when the draw counts match."""
    labels = _labels(runs)
    if len(labels) < 2:
        return []
    ref_label, ref_track, ref_ds = labels[0]
    first = next(iter(runs))
    out = []
    for label, track, ds in labels[1:]:
        if ds.sizes["draw"] != ref_ds.sizes["draw"]:
            continue
        if same_track:
            if label.startswith(f"{first}: ") or track not in ref_ds["track"].values:
                continue
            ref_label, ref = f"{first}: {track}", ref_ds.sel(track=track)
        else:
            ref = ref_ds.sel(track=ref_track)
        d = paired_difference(ds.sel(track=track), ref, levels=[p]).sel(period=HORIZON, level=p)
        out.append((ref_label, label, float(d.mean_diff), float(d.mean_diff_se), float(d.TVaR_diff),
                    float(d.TVaR_diff_se), bool(d.attrs["common_random_numbers"])))
    return out


def compare_html(runs: Mapping[str, xr.Dataset], p: float = 0.99, same_track: bool = False) -> str:
    """The HTML comparison of several runs (profiles or policies): tables, paired differences and figures.

    Parameters
    ----------
    runs : mapping of label to Dataset
        E.g. ``{"lead": ds_lead, "mssp": ds_mssp}``; labels are usually file stems.
    p : float
        VaR/TVaR level in the tables.
    same_track : bool
        Paired differences against the first run's same track (scenarios vs a baseline) instead of the
        first run's first track.

    Returns
    -------
    str
        A complete, self-contained HTML document.
    """
    check_same_horizon(runs)
    parts = ["<h1>leadsim comparison</h1>",
             f"<p class='sub'>{len(runs)} runs · leadsim {__version__}</p>",
             "<p class='note'>Ten-year cumulative settlement, positive = paid to the ACO; VaR/TVaR are loss "
             "amounts (positive = loss). Paired differences use the same draws: runs with the same seed share "
             "their spending (common random numbers), so differences are much more precise than either "
             "estimate. Small grey numbers: Monte Carlo standard errors.</p>"]
    run_rows = [[html.escape(name), html.escape(str(ds.attrs.get("aco_name", ""))),
                 html.escape(str(ds.attrs.get("policy_name", ""))),
                 html.escape(", ".join(map(str, ds["track"].values))),
                 f"{ds.sizes['draw']:,}", html.escape(str(ds.attrs.get("seed", "")))] for name, ds in runs.items()]
    parts.append("<h2>Runs</h2>" + _table("runs", ["Run", "ACO", "Policy", "Tracks", "Draws", "Seed"], run_rows,
                                          left=4))
    rows = []
    for label, x, _ in _compare_summaries(runs, p):
        rows.append([html.escape(label), _mse(float(x["mean"]), float(x.mean_se)), _m(float(x.sd)),
                     _mse(float(x.VaR.sel(level=p)), float(x.VaR_se.sel(level=p))),
                     _mse(float(x.TVaR.sel(level=p)), float(x.TVaR_se.sel(level=p))),
                     _p(float(x.p_loss), float(x.p_loss_se)),
                     _p(float(x.p_beyond_guarantee), float(x.p_beyond_guarantee_se))])
    parts.append("<h2>Ten-year metrics</h2>" + _table(
        "compare_metrics", ["Run: track", "Mean", "SD", f"VaR {_level_name(p)}", f"TVaR {_level_name(p)}",
                            "P(loss)", "P(year loss &gt; FG)"], rows))
    diffs = _paired_rows(runs, p, same_track)
    drows = [[html.escape(label), _mse(dm, dms), _mse(dt, dts), "yes" if crn else "no (independent)"]
             for _, label, dm, dms, dt, dts, crn in diffs]
    ref = html.escape(diffs[0][0]) if diffs else "the first run"
    if same_track and diffs:
        ref = f"{html.escape(next(iter(runs)))} (same track)"
    parts.append(f"<h2>Paired differences vs {ref}</h2>" + _table(
        "paired_differences", ["Run: track", "Δ mean", f"Δ TVaR {_level_name(p)}", "Common random numbers"],
        drows or [["(needs two runs with the same number of draws)", "", "", ""]]))
    figs = [_figure("comparison", plots.comparison(runs, p=p), "Risk and return by run and track"),
            _figure("loss_exceedance", plots.loss_exceedance(runs), "Ten-year loss exceedance, all runs"),
            _figure("settlement_distribution", plots.settlement_distribution(runs),
                    "Ten-year settlement distributions, all runs")]
    parts.append("<h2>Figures</h2><div class='figs'>" + "".join(figs) + "</div>")
    for name, ds in runs.items():
        parts.append(f"<details><summary>Configuration of {html.escape(name)}</summary>"
                     f"<pre data-section='config'>{html.escape(str(ds.attrs.get('config_toml', '')))}</pre>"
                     "</details>")
    return _page("leadsim comparison", "".join(parts))


def attribution_section(attr: xr.Dataset) -> str:
    """The variance-attribution section of a report: the chart and the table of Shapley shares with SEs.

    ``attr`` comes from :func:`leadsim.analysis.attribution.attribute_runs`; the method is in ``docs/model.md``
    (variance attribution).
    """
    from leadsim.analysis.attribution import SOURCE_LABELS

    tracks = [str(t) for t in attr["track"].values]
    lvl = _level_name(float(attr.attrs.get("tvar_level", 0.99)))
    header = ["Source", *(f"{html.escape(t)}: {m}" for t in tracks for m in ("Var share", f"TVaR {lvl} share"))]
    rows = []
    for src in attr["source"].values:
        row = [html.escape(SOURCE_LABELS.get(str(src), str(src)))]
        row += [_p(float(attr.share.sel(measure=m, source=src, track=t)),
                   float(attr.share_se.sel(measure=m, source=src, track=t)))
                for t in tracks for m in ("variance", "tvar")]
        rows.append(row)
    totals = ["All sources on: SD / TVaR"]
    for t in tracks:
        totals += [_m(float(np.sqrt(attr.value_all.sel(measure="variance", track=t)))),
                   _mse(float(attr.value_all.sel(measure="tvar", track=t)),
                        float(attr.value_all_se.sel(measure="tvar", track=t)))]
    rows.append(totals)
    return ("<h2>Variance attribution</h2><p class='note'>How much of the variance and of the TVaR of the ten-year "
            "result each risk source accounts for: Shapley values over the 2<sup>k</sup> runs with subsets of the "
            f"sources switched off on the same draws ({int(attr.attrs.get('draws', 0)):,} draws). Shares sum to "
            "100% per column; the TVaR shares split TVaR minus the loss with every source off. Small grey numbers: "
            "bootstrap standard errors.</p>"
            + _table("attribution", header, rows)
            + "<div class='figs'>" + _figure("attribution", plots.attribution_chart(attr),
                                             "Shapley shares of the variance and TVaR by source") + "</div>")


def attribution_html(attr: xr.Dataset) -> str:
    """A self-contained HTML page of a variance attribution (``leadsim attribute --report``)."""
    sub = (f"{html.escape(str(attr.attrs.get('aco_name', '')))} under "
           f"{html.escape(str(attr.attrs.get('policy_name', '')))}"
           f"{' · scenario ' + html.escape(str(attr.attrs['scenario'])) if attr.attrs.get('scenario') else ''}"
           f" · seed {html.escape(str(attr.attrs.get('seed', '?')))} · leadsim {__version__}")
    body = (f"<h1>leadsim variance attribution</h1><p class='sub'>{sub}</p>" + attribution_section(attr)
            + "<details><summary>Resolved configuration (TOML)</summary><pre data-section='config'>"
            + html.escape(str(attr.attrs.get("config_toml", ""))) + "</pre></details>")
    return _page("leadsim variance attribution", body)


def write_html(text: str, path: str | os.PathLike[str]) -> Path:
    """Write an HTML document atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
