"""Model-vs-public-facts checks of the default calibration (``docs/calibration.md`` §7).

Each function runs the model at a documented configuration and returns the model's figure with its Monte
Carlo standard error where one applies; the slow tests (``tests/test_calibration_facts.py``) compare them
with the public figures and tolerances derived from the MC error, and ``python -m leadsim.testing.calibration``
prints the table of ``docs/calibration.md`` §7.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from leadsim.config import Config, load_config
from leadsim.model.cohort import cohort_model, realised_means
from leadsim.model.drivers import macro_paths
from leadsim.model.outliers import truncation_caps

__all__ = [
    "aco_dispersion",
    "main",
    "msr_comparison",
    "mssp_truncation",
    "population_facts",
    "professional_noise_off",
    "stop_loss_hedge",
]

NOISE_OFF = {"trend.national_sd": 0.0, "trend.regional_sd": 0.0, "trend.aco_level_sd": 0.0, "quality.sd": 0.0}
"""Overrides that switch every macro noise off (the ACO's beneficiaries stay random)."""


def _run(overrides: Mapping[str, Any], source: str | None = None) -> xr.Dataset:
    import leadsim

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = load_config(source, overrides=dict(overrides))
    return leadsim.simulate(cfg, progress=False)


def _se_corr(r: float, n: int) -> float:
    return (1.0 - r * r) / np.sqrt(max(n - 3, 1))


def aco_dispersion(draws: int = 1000, source: str | None = None) -> dict[str, Any]:
    """Dispersion and persistence of the Global savings rate at the defaults.

    Returns
    -------
    dict
        ``years``; ``sd`` (per year) of the Global savings rate across draws and its MC standard error
        ``sd_se ~ sd / sqrt(2 (n - 1))`` (normal approximation); ``level_sd`` per year, the SD of the ACO's
        log cost level ``l_t``; ``lag_corr`` {1, 2, 3}: the median over start years of the correlation
        across draws of the savings rate in years ``t`` and ``t + k``.

    Notes
    -----
    The MSSP public-use files give a cross-ACO SD of the gross savings rate of 4.2-5.6% every year and
    lag-1/2/3 correlations with medians 0.65/0.49/0.38 (``docs/calibration.md`` §1). The model's savings
    rate includes what the MSSP figures also include: beneficiary-level sampling noise of an ACO of the
    configured size and the benchmark's trend error, on top of the ACO's level ``l_t``.
    """
    ds = _run({"simulation.draws": draws}, source)
    sr = ds["savings_rate"].sel(track="global").transpose("draw", "year").values
    n = sr.shape[0]
    sd = sr.std(axis=0, ddof=1)
    cum_aco = np.cumprod(1.0 + ds["aco_growth"].sel(population="aged_disabled").values, axis=1)
    cum_reg = np.cumprod(1.0 + ds["regional_growth"].sel(population="aged_disabled").values, axis=1)
    level = np.log(cum_aco / cum_reg)
    lag = {}
    for k in (1, 2, 3):
        rs = [np.corrcoef(sr[:, t], sr[:, t + k])[0, 1] for t in range(sr.shape[1] - k)]
        lag[k] = float(np.median(rs))
    return {"years": [int(y) for y in ds["year"].values], "sd": sd, "sd_se": sd / np.sqrt(2.0 * (n - 1)),
            "level_sd": level.std(axis=0, ddof=1), "lag_corr": lag, "lag_corr_se": {
                k: _se_corr(v, n) for k, v in lag.items()}, "n": n}


def stop_loss_hedge(draws: int = 1000, beneficiaries: int = 5000, basis: str = "realised",
                    year: int = -1) -> dict[str, float]:
    """Stop-loss payout / charge in the top and bottom fifths of national-trend draws.

    Returns
    -------
    dict
        ``top``, ``bottom``: ``sum payout / sum charge`` of year ``year`` (default the last) over the draws in
        the top and bottom fifth of the cumulative national A&D growth factor; ``ratio = top / bottom`` and its
        delta-method standard error ``ratio_se`` (payout noise; the charge is a function of the trend).

    Notes
    -----
    With the ex-ante basis the charge is the same in every draw while payouts rise with trend, so
    ``ratio`` is well above 1 (a free hedge against trend). The after-the-fact basis prices each draw's
    charge at its realised national trend, so ``ratio`` is 1 up to the payout noise and to the part of
    trend that is regional or the ACO's own.
    """
    ds = _run({"simulation.draws": draws, "aco.beneficiaries": beneficiaries, "policy.stop_loss.enabled": True,
               "policy.stop_loss.basis": basis})
    pay = ds["stop_loss_payout"].sum("population").isel(year=year).values
    charge = ds["stop_loss_charge"].isel(track=0, year=year).values
    nat = np.cumprod(1.0 + ds["national_growth"].sel(population="aged_disabled").values, axis=1)[:, year]
    lo, hi = np.quantile(nat, [0.2, 0.8])
    out: dict[str, float] = {}
    parts = {}
    for name, sel in (("top", nat >= hi), ("bottom", nat <= lo)):
        p, c = pay[sel], charge[sel]
        r = p.sum() / c.sum()
        # delta method for a ratio of sums: var(r) ~ var(p - r c) n / (sum c)^2
        se = np.sqrt(np.var(p - r * c, ddof=1) * p.size) / c.sum()
        out[name] = float(r)
        parts[name] = (r, se)
    r = parts["top"][0] / parts["bottom"][0]
    out["ratio"] = float(r)
    out["ratio_se"] = float(r * np.hypot(parts["top"][1] / parts["top"][0], parts["bottom"][1] / parts["bottom"][0]))
    return out


def mssp_truncation(draws: int = 200) -> dict[str, Any]:
    """Share of spending and of beneficiary-years truncated by the MSSP comparator's per-population caps.

    Returns
    -------
    dict
        ``spend_share`` (3,): truncated / total spending per population over all draws and years, with
        ``spend_share_se`` (over draws); ``years_share`` (3,): the share of beneficiary-years above the
        cap in the panel of draw 0; ``cap_to_mean`` (3,): the start-year cap over the population's national
        mean cost trended one year.
    """
    cfg = load_config(None, overrides={"policy.preset": "mssp_enhanced", "simulation.draws": draws})
    ds = _run({"policy.preset": "mssp_enhanced", "simulation.draws": draws})
    trunc = ds["stop_loss_payout"].sum("year").values
    spend = ds["expenditure"].sum("year").values
    share = trunc.sum(axis=0) / spend.sum(axis=0)
    per_draw = trunc / spend
    caps = truncation_caps(cfg)
    mu = np.asarray(cfg.trend.national_mean.ordered())
    nat = np.array([p.national_annual_cost or p.mean_annual_cost for p in cfg.population.ordered()])
    years_share = _years_above_cap(cfg, caps)
    return {"spend_share": share, "spend_share_se": per_draw.std(axis=0, ddof=1) / np.sqrt(per_draw.shape[0]),
            "years_share": years_share, "cap_to_mean": caps / (nat * (1.0 + mu)), "caps": caps}


def _years_above_cap(cfg: Config, caps: np.ndarray) -> np.ndarray:
    import leadsim

    panel = leadsim.trajectories(cfg, draw=0)
    model = cohort_model(cfg)
    _, scale = realised_means(model, macro_paths(cfg, np.array([0])))
    out = np.zeros(3)
    pop = panel["population"].values
    x = panel["spending"].values
    for j, name in enumerate(("aged_disabled", "esrd", "high_needs")):
        here = pop == name
        cap_t = caps[j] * scale[0, :, j]
        out[j] = float((x > cap_t[None, :])[here].sum() / max(here.sum(), 1))
    return out


def professional_noise_off(draws: int = 400, first_years: int = 5) -> dict[str, float]:
    """Professional savings rate with every macro noise off, before the rate-book years.

    Returns
    -------
    dict
        ``mean``: the mean over draws of the Professional savings rate averaged over the first
        ``first_years`` performance years (PY2027-2031, before rate-book convergence), ``se`` its MC standard
        error, and ``expected = -withhold x (1 - quality mean)`` (-0.45% under LEAD).

    Notes
    -----
    With no trend noise the benchmark's update equals the ACO's expected growth, risk scores average 1 and
    the Professional track has no discount or regional adjustment, so the expected savings rate is the
    withhold not earned back. A mix or risk-score drift away from the stationary cohort shows up here.
    """
    ds = _run({**NOISE_OFF, "simulation.draws": draws})
    cfg = load_config(None)
    sr = ds["savings_rate"].sel(track="professional").isel(year=slice(0, first_years)).mean("year").values
    b = cfg.policy.benchmark
    return {"mean": float(sr.mean()), "se": float(sr.std(ddof=1) / np.sqrt(sr.size)),
            "expected": -b.withhold * (1.0 - cfg.quality.mean)}


MSSP_MSR = {5_000: 0.039, 10_000: 0.030, 20_000: 0.025, 60_000: 0.020}
"""MSSP minimum savings rates of the one-sided model by assigned beneficiaries [MSSP, 42 CFR 425.604(b)]:
3.9% at 5,000-5,999, 3.0% at 10,000-14,999, 2.5% at 20,000-49,999, 2.0% at 60,000 and over."""


def msr_comparison(sizes: tuple[int, ...] = (5_000, 10_000, 20_000, 60_000), draws: int = 1000) -> dict[int, Any]:
    """The model's 90% half-width of the first-year savings rate from beneficiary-level noise alone, by size.

    Returns
    -------
    dict
        Per size: ``half_width = 1.645 x SD`` of the PY2027 Global savings rate across draws with every macro
        noise off (only the beneficiaries' own randomness), its standard error, and the MSSP minimum savings
        rate ``msr`` for that size.

    Notes
    -----
    MSSP set its minimum savings rate table so that a one-sided ACO's savings beat random variation in its
    beneficiaries' spending at 90% confidence [MSSP]; the rate falls with size roughly as ``1 / sqrt(n)``, and
    is floored at 2%. The model's own sampling noise should be of the same size where the table is not floored.
    """
    out: dict[int, Any] = {}
    for n in sizes:
        ds = _run({**NOISE_OFF, "simulation.draws": draws, "aco.beneficiaries": n, "simulation.years": 1})
        sr = ds["savings_rate"].sel(track="global").isel(year=0).values
        sd = sr.std(ddof=1)
        out[n] = {"half_width": 1.645 * sd, "se": 1.645 * sd / np.sqrt(2.0 * (sr.size - 1)), "msr": MSSP_MSR[n]}
    return out


def population_facts(draws: tuple[int, ...] = (0, 1, 2, 3)) -> dict[str, Any]:
    """Beneficiary-level facts from the panels of a few draws at the defaults (A&D unless stated).

    Returns
    -------
    dict
        ``top1``, ``top5``, ``top10``: share of the year's A&D spending by the top 1/5/10% of beneficiaries
        (annual-rate spending of full-year survivors and decedents); ``decedent_ratio``: decedents'
        mean death-year spending over survivors' mean; ``decedent_share``: decedents' share of spending;
        ``persist``: share of the top decile in a year who are in the top decile the next year (both years
        full-year A&D members); ``p99_to_mean`` (3,): 99th percentile over mean annual spending per population.
    """
    import leadsim

    cfg = load_config(None)
    tops = {1: [], 5: [], 10: []}
    dec_ratio, dec_share, persist = [], [], []
    p99 = {name: [] for name in ("aged_disabled", "esrd", "high_needs")}
    for d in draws:
        panel = leadsim.trajectories(cfg, draw=d)
        pop = panel["population"].values
        x = panel["spending"].values
        mm = panel["member_months"].values
        died = panel["died"].values
        for t in range(x.shape[1]):
            ad = (pop[:, t] == "aged_disabled") & ((mm[:, t] == 12.0) | died[:, t])
            xs = np.sort(x[ad, t])[::-1]
            for k in tops:
                tops[k].append(xs[: max(1, round(xs.size * k / 100))].sum() / xs.sum())
            dd = ad & died[:, t]
            sv = ad & ~died[:, t]
            dec_ratio.append(x[dd, t].mean() / x[sv, t].mean())
            dec_share.append(x[dd, t].sum() / x[ad, t].sum())
            for name in p99:
                sel = (pop[:, t] == name) & (mm[:, t] == 12.0)
                if sel.sum() > 50:
                    p99[name].append(np.quantile(x[sel, t], 0.99) / x[sel, t].mean())
        for t in range(x.shape[1] - 1):
            both = (pop[:, t] == "aged_disabled") & (pop[:, t + 1] == "aged_disabled") & (mm[:, t] == 12.0) & (
                mm[:, t + 1] > 0)
            a, b = x[both, t], x[both, t + 1]
            top_a = a >= np.quantile(a, 0.9)
            top_b = b >= np.quantile(b, 0.9)
            persist.append(float((top_a & top_b).sum() / top_a.sum()))
    return {"top1": float(np.mean(tops[1])), "top5": float(np.mean(tops[5])), "top10": float(np.mean(tops[10])),
            "decedent_ratio": float(np.mean(dec_ratio)), "decedent_share": float(np.mean(dec_share)),
            "persist": float(np.mean(persist)),
            "p99_to_mean": np.array([np.mean(v) if v else np.nan for v in p99.values()])}


def main(argv: list[str] | None = None) -> int:
    """Print the model column of ``docs/calibration.md`` §7 (about two minutes on two cores)."""
    parser = argparse.ArgumentParser(prog="python -m leadsim.testing.calibration", description=main.__doc__)
    parser.add_argument("--draws", type=int, default=1000, help="draws of the dispersion check (default 1000)")
    args = parser.parse_args(argv)
    pct = lambda v: f"{100 * v:.2f}%"  # noqa: E731
    disp = aco_dispersion(args.draws)
    print(f"Global savings rate SD by year (default config, {disp['n']} draws):")
    for y, s, se, lv in zip(disp["years"], disp["sd"], disp["sd_se"], disp["level_sd"], strict=True):
        print(f"  PY{y}: {pct(s)} (se {pct(se)}); ACO log-level SD {pct(lv)}")
    print(f"  PY{disp['years'][-1]} / PY{disp['years'][2]} = {disp['sd'][-1] / disp['sd'][2]:.3f}")
    print("  lag-1/2/3 correlation of the savings rate (median over years): "
          + ", ".join(f"{disp['lag_corr'][k]:.3f} (se {disp['lag_corr_se'][k]:.3f})" for k in (1, 2, 3)))
    for basis in ("realised", "expected"):
        h = stop_loss_hedge(basis=basis)
        print(f"Stop-loss ({basis}) PY2036 payout/charge: top fifth of national trend {h['top']:.3f}, bottom "
              f"{h['bottom']:.3f}, ratio {h['ratio']:.3f} (se {h['ratio_se']:.3f})")
    tr = mssp_truncation()
    print("MSSP truncation (99th percentile per population): spending truncated "
          + ", ".join(f"{pct(s)} (se {pct(e)})" for s, e in zip(tr["spend_share"], tr["spend_share_se"], strict=True))
          + "; beneficiary-years above cap " + ", ".join(pct(s) for s in tr["years_share"])
          + "; cap / mean " + ", ".join(f"{c:.2f}" for c in tr["cap_to_mean"]) + "  (A&D, ESRD, High Needs)")
    pr = professional_noise_off()
    print(f"Professional savings rate, macro noise off, PY2027-31: {pct(pr['mean'])} (se {pct(pr['se'])}); "
          f"withhold alone {pct(pr['expected'])}")
    msr = msr_comparison()
    print("90% half-width of the PY2027 savings rate from beneficiary noise alone vs MSSP MSR: "
          + "; ".join(f"{n:,}: {pct(v['half_width'])} (se {pct(v['se'])}) vs {pct(v['msr'])}" for n, v in msr.items()))
    pf = population_facts()
    print(f"A&D spending share of top 1/5/10%: {pct(pf['top1'])}, {pct(pf['top5'])}, {pct(pf['top10'])}; "
          f"decedents spend {pf['decedent_ratio']:.2f}x survivors, {pct(pf['decedent_share'])} of spending; "
          f"top-decile persistence {pct(pf['persist'])}; p99/mean "
          + ", ".join(f"{v:.2f}" for v in pf["p99_to_mean"]))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
