"""The decision table: one screen of text (``leadsim decide``) and the decision section of an HTML report."""

from __future__ import annotations

import html

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from leadsim.analysis.formatting import money, percent
from leadsim.analysis.report import _figure, _mse, _p, _page, _table
from leadsim.analysis.risk import sampling_note

__all__ = ["DECIDE_FIGURES", "DECIDE_TABLES", "decide_html", "decide_text", "decision_figure", "switch_figure"]

DECIDE_FIGURES = ("decision", "switch_rule")
DECIDE_TABLES = ("decision", "paired_vs_baseline", "break_even", "reserves", "switch")


def _m(x: float) -> str:
    return money(x, 1e6, "", 2, minus="-")


def _pe(x: float, se: float) -> str:
    """A spending change in percent with its SE in points, e.g. ``-1.93±0.27``."""
    if not np.isfinite(x):
        return "n/a"
    return f"{x * 100:+.2f}" + (f"±{se * 100:.2f}" if np.isfinite(se) else "")


def _tau(x: float) -> str:
    return "always" if x == -np.inf else "never" if x == np.inf else f"{x:.2%}"


def _criterion_text(ds: xr.Dataset) -> str:
    if ds.attrs["ranking_criterion"] == "mean_tvar":
        return f"mean - {ds.attrs['criterion_lambda']:g} x TVaR 99%"
    return (f"highest mean with P(worst cum. loss > guarantee) <= {ds.attrs['criterion_alpha']:.0%}")


def decide_text(ds: xr.Dataset) -> str:
    """One screen: each option's ten-year figures with standard errors, the paired difference against the
    baseline, the break-even effects, the ranking, and the switch rule."""
    base = ds.attrs["baseline"]
    fg = ds["financial_guarantee"].values
    has_be = "break_even_effect" in ds
    lines = [
        f"leadsim decide | {ds.attrs.get('aco_name', '')}"
        f"{' | scenario ' + ds.attrs['scenario'] if ds.attrs.get('scenario') else ''} | "
        f"{ds.attrs['n_draws']:,} draws, seed {ds.attrs['seed']}, "
        f"{ds.attrs['kernel_passes']} kernel passes | ten-year results in $M (positive = paid to the ACO), "
        f"+- Monte Carlo SE" + (f" | {sampling_note(ds)}" if sampling_note(ds) else ""),
        f"Ranking: {_criterion_text(ds)}; paired differences against {base}; financial guarantee "
        f"{money(float(fg[0]), 1e6, 'M', 2)}",
    ]
    head = (f"{'option':22}{'mean':>16}{'P(loss)':>9}{'VaR99':>9}{'TVaR99':>9}{'TVaR99.5':>9}{'P(>G)':>7}"
            f"{'reserve99.5':>12}{'vs ' + base[:14]:>17}")
    if has_be:
        head += f"{'BE mean=0 %':>13}{'BE P=50% %':>13}"
    head += f"{'rank':>5}"
    lines.append(head)
    for i, o in enumerate(ds["option"].values):
        s = ds.isel(option=i)
        row = (f"{str(o)[:22]:22}{_m(float(s['mean'])) + ' ±' + _m(float(s['mean_se'])).strip('-'):>16}"
               f"{float(s['p_loss']):>9.1%}{_m(float(s['VaR'].sel(level=0.99))):>9}"
               f"{_m(float(s['TVaR'].sel(level=0.99))):>9}{_m(float(s['TVaR'].sel(level=0.995))):>9}"
               f"{float(s['p_beyond_guarantee']):>7.1%}{_m(float(s['reserve'].sel(level=0.995))):>12}")
        diff = "baseline" if str(o) == base else (f"{_m(float(s['diff_mean']))} ±"
                                                  f"{_m(float(s['diff_mean_se'])).strip('-')}")
        row += f"{diff:>17}"
        if has_be:
            be, se = s["break_even_effect"].values, s["break_even_effect_se"].values
            row += f"{_pe(be[0], se[0]):>13}{_pe(be[1], se[1]):>13}"
        row += f"{int(s['rank']):>5}"
        lines.append(row)
    for i in np.flatnonzero(np.isfinite(ds["switch_threshold"].values)):
        s = ds.isel(option=int(i))
        lines.append(
            f"{ds.option.values[i]!s}: move to Global after {ds.attrs['switch_after_years']} years when "
            f"Professional's cumulative savings rate > {_tau(float(s['switch_threshold']))} (cross-fitted "
            f"{_tau(float(s['switch_threshold_a']))} / {_tau(float(s['switch_threshold_b']))}); "
            f"{float(s['switch_share']):.1%} of draws move; worth {_m(float(s['switch_value_mean']))} "
            f"±{_m(float(s['switch_value_mean_se'])).strip('-')} (mean), "
            f"{_m(float(s['switch_value_criterion']))} ±{_m(float(s['switch_value_criterion_se'])).strip('-')} "
            "(criterion) over staying on Professional")
    if has_be:
        lines.append("BE = break-even spending change (-3 = spending 3% below what it would otherwise be) at which "
                     "the mean ten-year result is 0 / P(ten-year loss) = 50%; reserve = capital covering the worst "
                     "cumulative cash position at 99.5%")
    best = str(ds["option"].values[int(np.argmin(ds["rank"].values))])
    lines.append(f"Best under the criterion: {best} ({ds['option_label'].sel(option=best).item()})")
    return "\n".join(lines)


def decision_figure(ds: xr.Dataset) -> Figure:
    """Mean against TVaR 99% of the ten-year result per option, with 95% error bars (USD millions)."""
    fig = Figure(figsize=(7.5, 4.6), layout="constrained")
    ax = fig.add_subplot()
    x, xe = ds["TVaR"].sel(level=0.99).values / 1e6, ds["TVaR_se"].sel(level=0.99).values / 1e6
    y, ye = ds["mean"].values / 1e6, ds["mean_se"].values / 1e6
    ax.errorbar(x, y, xerr=1.96 * xe, yerr=1.96 * ye, fmt="o", capsize=3)
    for i, (xi, yi, name) in enumerate(zip(x, y, ds["option"].values, strict=True)):
        # staggered labels: options on one kernel pass often sit on top of each other (switch vs staying)
        ax.annotate(str(name), (xi, yi), textcoords="offset points", xytext=(5, 6 - 10 * (i % 3)), fontsize=8)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("TVaR 99% of the ten-year result ($M, loss)")
    ax.set_ylabel("mean ten-year result ($M)")
    ax.set_title("Options on the same draws (95% intervals)")
    return fig


def switch_figure(ds: xr.Dataset) -> Figure:
    """The switch rule's criterion by threshold (all draws, in-sample), per switch option."""
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    thr = ds["threshold"].values
    finite = np.isfinite(thr)
    for i in np.flatnonzero(np.isfinite(ds["switch_threshold"].values)):
        c = ds["switch_criterion"].isel(option=int(i)).values
        line = ax.plot(thr[finite] * 100, c[finite] / 1e6, label=str(ds["option"].values[i]))[0]
        for tau, ls in ((-np.inf, ":"), (np.inf, "--")):
            j = int(np.flatnonzero(thr == tau)[0])
            if np.isfinite(c[j]):
                ax.axhline(c[j] / 1e6, color=line.get_color(), ls=ls, lw=0.8)
    ax.set_xlabel(f"threshold: Professional's cumulative savings rate, years 1-{ds.attrs['switch_after_years']} (%)")
    ax.set_ylabel("criterion ($M)")
    ax.set_title("Switch rule by threshold (dotted: always move; dashed: never)")
    if ax.lines:
        ax.legend(fontsize=8)
    return fig


def decide_html(ds: xr.Dataset, source: str | None = None) -> str:
    """A self-contained HTML page with the decision section: tables, the mean/TVaR figure, the switch curve."""
    names = [str(o) for o in ds["option"].values]
    base = ds.attrs["baseline"]
    rows = []
    for i, o in enumerate(names):
        s = ds.isel(option=i)
        rows.append([html.escape(o), html.escape(str(s["option_label"].item())),
                     _mse(float(s["mean"]), float(s["mean_se"])), _p(float(s["p_loss"]), float(s["p_loss_se"])),
                     _mse(float(s["VaR"].sel(level=0.99)), float(s["VaR_se"].sel(level=0.99))),
                     _mse(float(s["TVaR"].sel(level=0.99)), float(s["TVaR_se"].sel(level=0.99))),
                     _mse(float(s["TVaR"].sel(level=0.995)), float(s["TVaR_se"].sel(level=0.995))),
                     _p(float(s["p_beyond_guarantee"]), float(s["p_beyond_guarantee_se"])),
                     _mse(float(s["criterion_value"]), float(s["criterion_value_se"])), str(int(s["rank"]))])
    body = [f"<h1>Decision: {html.escape(str(ds.attrs.get('aco_name', '')))}</h1>",
            f"<p class='sub'>{ds.attrs['n_draws']:,} draws, seed {ds.attrs['seed']}, {ds.attrs['kernel_passes']} "
            f"kernel passes{', from ' + html.escape(source) if source else ''}; leadsim "
            f"{html.escape(str(ds.attrs['leadsim_version']))}. Ten-year results, positive = paid to the ACO; "
            "± Monte Carlo standard error. Ranking: " + html.escape(_criterion_text(ds)) + "."
            + (f" Draws: {html.escape(sampling_note(ds))}; every figure is weighted accordingly."
               if sampling_note(ds) else "") + "</p>",
            "<h2>Options</h2>",
            _table("decision", ["option", "description", "mean", "P(loss)", "VaR 99%", "TVaR 99%", "TVaR 99.5%",
                                "P(worst cum. loss > guarantee)", "criterion", "rank"], rows, left=2, cls="wrap"),
            "<div class='figs'>", _figure("decision", decision_figure(ds),
                                          "Mean against TVaR 99% of the ten-year result, 95% intervals"), "</div>"]
    prow = []
    for i, o in enumerate(names):
        if o == base:
            continue
        s = ds.isel(option=i)
        prow.append([html.escape(o), _mse(float(s["diff_mean"]), float(s["diff_mean_se"])),
                     _p(float(s["diff_p_loss"]), float(s["diff_p_loss_se"])),
                     _mse(float(s["diff_TVaR"].sel(level=0.99)), float(s["diff_TVaR_se"].sel(level=0.99))),
                     _p(float(s["diff_p_beyond_guarantee"]), float(s["diff_p_beyond_guarantee_se"])),
                     _mse(float(s["diff_criterion_value"]), float(s["diff_criterion_value_se"]))])
    body += [f"<h2>Against {html.escape(base)} on the same draws</h2>",
             _table("paired_vs_baseline", ["option", "Δ mean", "Δ P(loss)", "Δ TVaR 99%",
                                           "Δ P(> guarantee)", "Δ criterion"], prow)]
    if "break_even_effect" in ds:
        brow = [[html.escape(o), _pe(*ds["break_even_effect"].isel(option=i).values[[0]],
                                     *ds["break_even_effect_se"].isel(option=i).values[[0]]),
                 _pe(*ds["break_even_effect"].isel(option=i).values[[1]],
                     *ds["break_even_effect_se"].isel(option=i).values[[1]]),
                 f"{float(ds['break_even_pass_gap'].isel(option=i)) * 100:.2f}"] for i, o in enumerate(names)]
        body += ["<h2>Break-even care-management effect</h2>",
                 "<p class='note'>The constant change of spending, in percent (−3 = 3% below what it would "
                 "otherwise be, on top of the configured care-management effect), at which the mean ten-year "
                 "result is 0, and at which P(ten-year loss) = 50%; ± standard error in points. Gap: distance in "
                 "points to the nearest kernel pass where outlier relief makes the result nonlinear in spending "
                 "(0 = exact).</p>",
                 _table("break_even", ["option", "mean = 0 (%)", "P(loss) = 50% (%)", "gap (points)"], brow)]
    rrow = [[html.escape(o), money(float(ds["financial_guarantee"].isel(option=i)), 1e6, "M", 2),
             _mse(float(ds["reserve"].isel(option=i).sel(level=0.99)),
                  float(ds["reserve_se"].isel(option=i).sel(level=0.99))),
             _mse(float(ds["reserve"].isel(option=i).sel(level=0.995)),
                  float(ds["reserve_se"].isel(option=i).sel(level=0.995))),
             money(float(ds["reserve"].isel(option=i).sel(level=0.995) - ds["financial_guarantee"].isel(option=i)),
                   1e6, "M", 2)] for i, o in enumerate(names)]
    body += ["<h2>Guarantee and reserves</h2>",
             "<p class='note'>Reserve: the capital that covers the worst cumulative cash position at a "
             "settlement (the fall from the running peak of the cumulative result to the earlier years' result "
             "plus this settlement's cash, enhanced PCC recoupment included) in all but 1% / 0.5% of draws.</p>",
             _table("reserves", ["option", "financial guarantee", "reserve 99%", "reserve 99.5%",
                                 "reserve 99.5% beyond the guarantee"], rrow)]
    srow = []
    for i in np.flatnonzero(np.isfinite(ds["switch_threshold"].values)):
        s = ds.isel(option=int(i))
        srow.append([html.escape(names[i]), _tau(float(s["switch_threshold"])),
                     f"{_tau(float(s['switch_threshold_a']))} / {_tau(float(s['switch_threshold_b']))}",
                     percent(float(s["switch_share"])),
                     _mse(float(s["switch_value_mean"]), float(s["switch_value_mean_se"])),
                     _mse(float(s["switch_value_criterion"]), float(s["switch_value_criterion_se"]))])
    body += ["<h2>Track switch</h2>",
             f"<p class='note'>Professional for the {ds.attrs['switch_after_years']}-year minimum stay, then Global "
             "when Professional's cumulative savings rate of those years exceeds the threshold. The threshold is "
             "chosen for the criterion on one half of the draws and applied to the other (cross-fitting), so the "
             "option's value is not flattered by the choice.</p>",
             _table("switch", ["option", "threshold (all draws)", "cross-fitted", "draws moving",
                               "value over staying (mean)", "value over staying (criterion)"], srow),
             "<div class='figs'>", _figure("switch_rule", switch_figure(ds),
                                           "Criterion of the switch rule by threshold"), "</div>"]
    return _page(f"leadsim decision: {ds.attrs.get('aco_name', '')}", "\n".join(body))
