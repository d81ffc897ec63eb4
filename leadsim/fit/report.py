"""The fit report: one self-contained HTML page (``leadsim fit ... --report fit.html``).

Per fitted population: the estimates with their SEs and the goodness of fit; the PP plot of the probability
integral transforms (the statistic's own picture); the QQ plot and the tail (log-log survival) of entrants'
spending against the fitted marginal; persistence by lag (slopes of the latent score on its lagged value against ``rho``
and ``rho^2``); mortality by decile of last year's latent against the fitted death model; and the concentration
of spending (share of the top 1/5/10/20% of entrants' spending, fitted against empirical).
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np

from leadsim.fit.estimate import FitResult, PopulationFit
from leadsim.model.marginals import SplicedMarginal

__all__ = ["fit_report_html"]

_TOPS = (0.01, 0.05, 0.10, 0.20)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _fitted_quantile(pr: dict, u: np.ndarray) -> np.ndarray:
    """Quantiles of the fitted positive part (dollars per exposure): ``exp(mu) q(v)``."""
    m = SplicedMarginal(0.0, pr["sigma"], pr["tau"], pr["alpha"])
    return np.exp(pr["mu"]) / m.scale * m.ppf(u)


def _top_shares(x: np.ndarray) -> list[float]:
    xs = np.sort(x)[::-1]
    tot = xs.sum()
    return [float(xs[: max(1, round(q * xs.size))].sum() / tot) for q in _TOPS]


def _population_section(pf: PopulationFit) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dg = pf.diagnostics
    pr = dg["params"]
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{e.value:.5g}</td><td>{e.se:.3g}</td></tr>"
                   for k, e in pf.estimates.items())
    flag = "<b style='color:#b00'>POOR FIT</b>" if pf.flagged else "ok"
    parts = [f"<h2>{html.escape(pf.name)}</h2>",
             f"<p>{pf.n_bene:,} beneficiaries, {pf.n_rows:,} beneficiary-years. Goodness of fit: KS D = "
             f"{pf.gof_statistic:.4f}, p = {pf.gof_pvalue:.3g} [{flag}].</p>",
             f"<table><tr><th>parameter</th><th>estimate</th><th>SE</th></tr>{rows}</table>"]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.8))
    u = dg["pits"]
    ax[0].plot(np.linspace(0, 1, u.size), u, lw=1)
    ax[0].plot([0, 1], [0, 1], "k--", lw=0.7)
    ax[0].set(title="PP: probability integral transforms", xlabel="uniform", ylabel="PIT")
    lx = dg["entrant_logx"]
    if lx.size >= 20:
        pp = (np.arange(lx.size) + 0.5) / lx.size
        ax[1].plot(np.log10(_fitted_quantile(pr, pp)), lx / np.log(10), ".", ms=2)
        lo, hi = lx.min() / np.log(10), lx.max() / np.log(10)
        ax[1].plot([lo, hi], [lo, hi], "k--", lw=0.7)
        ax[1].set(title="QQ: entrants' positive spending (log10 $)", xlabel="fitted", ylabel="empirical")
        surv = 1.0 - pp
        ax[2].loglog(np.exp(lx), surv, ".", ms=2, label="empirical")
        grid = np.linspace(0.5, 1 - 0.5 / lx.size, 400)
        ax[2].loglog(_fitted_quantile(pr, grid), 1 - grid, "-", lw=1, label="fitted")
        ax[2].axvline(_fitted_quantile(pr, np.array([pr["tau"]]))[0], color="grey", lw=0.7, ls=":")
        ax[2].set(title="Tail: survival of entrants' spending", xlabel="$ per exposure", ylabel="P(X > x)")
        ax[2].legend(fontsize=8)
    parts.append(_png(fig))
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    lag2 = pf.lag2[0]
    ax[0].plot([1, 2], [dg["lag1"], lag2], "o-", label="slope of z_t on z_(t-lag) (empirical)")
    ax[0].plot([1, 2], [pr["rho"], pr["rho"] ** 2], "s--", label="fitted rho^lag")
    ax[0].set(title="Persistence by lag", xlabel="lag (years)", ylabel="slope", xticks=[1, 2])
    ax[0].legend(fontsize=8)
    mort = dg["mortality_by_decile"]
    if mort:
        k = np.arange(1, len(mort) + 1)
        ax[1].plot(k, [m[0] for m in mort], "o", label="empirical")
        ax[1].plot(k, [m[1] for m in mort], "-", label="fitted")
        ax[1].set(title="Mortality by decile of last year's latent risk", xlabel="decile", ylabel="deaths")
        ax[1].legend(fontsize=8)
    parts.append(_png(fig))
    if lx.size >= 20:
        emp = _top_shares(np.exp(lx))
        grid = (np.arange(200_000) + 0.5) / 200_000
        fit = _top_shares(_fitted_quantile(pr, grid))
        cells = "".join(f"<tr><td>top {q:.0%}</td><td>{e:.1%}</td><td>{f:.1%}</td></tr>"
                        for q, e, f in zip(_TOPS, emp, fit, strict=True))
        parts.append("<p>Concentration of entrants' positive spending (share of the total):</p><table><tr>"
                     f"<th></th><th>empirical</th><th>fitted</th></tr>{cells}</table>")
    return "\n".join(parts)


def fit_report_html(result: FitResult) -> str:
    """The fit report of :func:`leadsim.fit.estimate.fit_panel`'s result, as one HTML string."""
    y0, y1 = result.years
    body = [f"<h1>leadsim fit: {html.escape(result.source)}, {y0}-{y1}</h1>",
            f"<pre>{html.escape(result.summary())}</pre>",
            "<p>Entrants' latent risk is N(0, 1), so their spending (per exposure) follows the fitted marginal "
            "itself: the QQ, tail and concentration panels use them. The PP plot uses every observation of the "
            "likelihood (docs/fit.md §2.4).</p>"]
    body += [_population_section(pf) for pf in result.populations.values() if pf.fitted and pf.diagnostics]
    css = ("body{font-family:sans-serif;max-width:1400px;margin:1em auto}table{border-collapse:collapse}"
           "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>leadsim fit</title><style>{css}</style>"
            f"</head><body>{''.join(body)}</body></html>\n")
