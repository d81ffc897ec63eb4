"""One-year aggregate spending net of stop-loss for a fixed cohort, against an exact FFT convolution.

The cohort (default mix, 1,000 beneficiaries: 950 A&D, 10 ESRD, 40 High Needs) has no deaths, exits,
transitions, growth or macro noise and one performance year, so each beneficiary's spending is an
independent draw from its population's exact spliced marginal (scaled to ``mean_annual_cost``), and the
draw's net spending ``S = sum_i g(x_i)`` with the stop-loss retention ``g(x) = x - sum_k s_k clip(x - a_k,
0, a_{k+1} - a_k)`` (LEAD bands, enabled). The exact law of ``S`` is computed independently of leadsim:

1. each population's net-of-stop-loss cdf ``F_x(g^{-1}(y))`` from :mod:`tests.spliced_exact` (scipy), on a
   grid of step ``H`` by rounding (mass of ``(y - H/2, y + H/2]`` at ``y``);
2. the n-fold convolution by FFT (``pmf_hat ** n_p``, product over populations, inverse FFT);
3. its mean is first checked against the analytic net mean ``E[x] - sum_k s_k (E[min(x, a_{k+1})] -
   E[min(x, a_k)])`` by quadrature (a discretisation check: the lattice must not bias the mean).

Tolerance rule: the Monte Carlo mean, VaR 99% (``inverted_cdf``) and TVaR 99% (mean of the worst 1% of
draws) must lie within ``K_SE = 3`` standard errors of the exact values, with
SE(mean) = sd / sqrt(N); SE(VaR_p) = sqrt(p (1 - p) / N) / f(VaR_p);
SE(TVaR_p) = sqrt((Var(S | S > VaR_p) + p (TVaR_p - VaR_p)^2) / (N (1 - p))) (asymptotic variance of the
tail-mean estimator); all moments, densities and tail variances from the exact FFT distribution.
"""

from __future__ import annotations

import numpy as np
import pytest

import leadsim
from leadsim.config import POPULATIONS
from tests.spliced_exact import exact_for

K_SE = 3.0
N_DRAWS = 20_000
N_BENEFICIARIES = 1_000
P = 0.99
H = 250.0            # grid step, USD
M = 2**18            # grid points: support [0, 65.5M), aggregate mean ~17M


def _config() -> leadsim.Config:
    o = {
        "simulation.years": 1, "simulation.draws": N_DRAWS, "simulation.chunk_draws": 4096,
        "aco.beneficiaries": N_BENEFICIARIES,
        "policy.preset": "lead_py2027", "policy.stop_loss.enabled": True,
        "trend.national_sd": 0.0, "trend.regional_sd": 0.0, "trend.aco_level_sd": 0.0,
        "population.aged_disabled.high_needs_rate": 0.0, "population.aged_disabled.esrd_rate": 0.0,
    }
    for q in POPULATIONS:
        o[f"trend.national_mean.{q}"] = 0.0
        o[f"population.{q}.mortality"] = 0.0
        o[f"population.{q}.exit_rate"] = 0.0
    return leadsim.load_config(overrides=o)


def _retention(attach: np.ndarray, shares: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Knots (x, y = g(x)) of the piecewise-linear retained amount and its slope above the last knot."""
    xs = np.concatenate([[0.0], attach])
    slopes = np.concatenate([[1.0], 1.0 - shares])
    ys = np.concatenate([[0.0], np.cumsum(slopes[:-1] * np.diff(xs))])
    return xs, ys, float(slopes[-1])


def _net_pmf(ex, attach: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Rounded pmf of the retained amount ``g(x)`` of one beneficiary on the grid ``H * k``."""
    xs, ys, top = _retention(attach, shares)
    edges = H * (np.arange(M) + 0.5)
    x_of_y = np.where(edges <= ys[-1], np.interp(edges, ys, xs), xs[-1] + (edges - ys[-1]) / top)
    cdf = ex.cdf(x_of_y)
    return np.diff(np.concatenate([[0.0], cdf]))


def _net_mean(ex, attach: np.ndarray, shares: np.ndarray) -> float:
    layers = [ex.limited_expectation(a) for a in [*attach, np.inf]]
    return ex.moment(1) - sum(s * (hi - lo) for s, lo, hi in zip(shares, layers[:-1], layers[1:], strict=True))


@pytest.mark.slow
def test_aggregate_net_of_stop_loss_matches_fft():
    cfg = _config()
    sl = cfg.policy.stop_loss
    attach, shares = np.asarray(sl.attachments), np.asarray(sl.shares)
    counts = {"aged_disabled": 950, "esrd": 10, "high_needs": 40}

    # --- exact law by FFT ------------------------------------------------------------------------------
    spec = np.ones(M // 2 + 1, dtype=complex)
    mean_exact = 0.0
    for pop, n_p in counts.items():
        ex = exact_for(cfg.population[pop])
        pmf = _net_pmf(ex, attach, shares)
        assert 1.0 - pmf.sum() < 1e-12  # the grid holds the individual law
        net_mean = _net_mean(ex, attach, shares)
        assert pmf @ (H * np.arange(M)) == pytest.approx(net_mean, rel=2e-5), pop  # means first
        mean_exact += n_p * net_mean
        spec *= np.fft.rfft(pmf) ** n_p
    agg = np.clip(np.fft.irfft(spec, n=M), 0.0, None)
    agg /= agg.sum()
    s = H * np.arange(M)
    assert agg[-M // 8:].sum() < 1e-12  # no wrap-around: the top eighth of the grid is empty
    mean_fft = agg @ s
    assert mean_fft == pytest.approx(mean_exact, rel=1e-5)
    sd = np.sqrt(agg @ (s - mean_fft) ** 2)
    cdf = np.cumsum(agg)
    k = int(np.searchsorted(cdf, P))
    var_exact = s[k]
    tail = agg[k + 1:]
    tvar_exact = (tail @ s[k + 1:] + var_exact * (cdf[k] - P)) / (1 - P)
    tail_var = (tail @ s[k + 1:] ** 2 + var_exact**2 * (cdf[k] - P)) / (1 - P) - tvar_exact**2
    dens = agg[k - 40:k + 41].mean() / H  # density at VaR, averaged over +-10,000 USD

    # --- Monte Carlo --------------------------------------------------------------------------------
    ds = leadsim.simulate(cfg, progress=False)
    assert (ds.member_months.values[:, 0, :].sum(axis=1) == 12 * N_BENEFICIARIES).all()
    np.testing.assert_array_equal(ds.member_months.values[0, 0] / 12, [counts[p] for p in POPULATIONS])
    net = (ds.expenditure - ds.stop_loss_payout).values[:, 0, :].sum(axis=1)
    n = net.size
    assert n == N_DRAWS

    se_mean = sd / np.sqrt(n)
    assert abs(net.mean() - mean_exact) <= K_SE * se_mean, (net.mean(), mean_exact, se_mean)

    var_mc = float(np.quantile(net, P, method="inverted_cdf"))
    se_var = np.sqrt(P * (1 - P) / n) / dens
    assert abs(var_mc - var_exact) <= K_SE * se_var, (var_mc, var_exact, se_var)

    worst = np.sort(net)[-round(n * (1 - P)):]
    tvar_mc = worst.mean()
    se_tvar = np.sqrt((tail_var + P * (tvar_exact - var_exact) ** 2) / (n * (1 - P)))
    assert abs(tvar_mc - tvar_exact) <= K_SE * se_tvar, (tvar_mc, tvar_exact, se_tvar)

    # the stop-loss matters here: the net mean is visibly below the gross mean
    gross_mean = sum(n_p * cfg.population[p].mean_annual_cost for p, n_p in counts.items())
    gross_mc = ds.expenditure.values[:, 0, :].sum(axis=1)
    assert abs(gross_mc.mean() - gross_mean) <= K_SE * gross_mc.std() / np.sqrt(n)
    assert mean_exact < 0.98 * gross_mean
