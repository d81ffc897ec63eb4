"""Risk metrics: exact values of known distributions, honest standard errors, the summary and the accessor."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as st
import xarray as xr

import leadsim
from leadsim.analysis import risk
from tests.helpers import small_config

NORMAL = st.norm(loc=1.0, scale=2.0)          # settlement X ~ N(1, 4): loss L = -X ~ N(-1, 4)
LOGNORMAL = st.lognorm(s=0.8, scale=np.exp(0.5))  # loss L ~ lognormal: settlement X = -L (heavy loss tail)


def exact_loss_metrics(loss_dist, p: float) -> tuple[float, float]:
    """Exact VaR and TVaR of a loss distribution by scipy: ppf, and the tail expectation / (1 - p)."""
    v = float(loss_dist.ppf(p))
    return v, float(loss_dist.expect(lambda t: t, lb=v)) / (1.0 - p)


def settlement_samples(case: str, n: int, seeds: int, seed: int = 2027) -> tuple[np.ndarray, object]:
    rng = np.random.default_rng(seed)
    if case == "normal":
        return NORMAL.rvs(size=(n, seeds), random_state=rng), st.norm(loc=-1.0, scale=2.0)
    return -LOGNORMAL.rvs(size=(n, seeds), random_state=rng), LOGNORMAL


@pytest.mark.parametrize("n", [7, 100, 1000, 1005, 4096])
@pytest.mark.parametrize("p", [0.9, 0.95, 0.99, 0.995])
def test_var_is_inverted_cdf_lower_quantile(n, p):
    x = np.random.default_rng(n).standard_normal(n)
    tm = risk.tail_metrics(x, p)
    alpha = round(1 - p, 12)
    assert tm.var[0] == -np.quantile(x, alpha, method="inverted_cdf")
    # TVaR = the Acerbi-Tasche integral of the empirical quantile function over the worst alpha
    xs = np.sort(x)
    j = int(np.floor(n * alpha + 1e-9))
    integral = xs[:j].sum() + (n * alpha - j) * xs[min(j, n - 1)]
    assert tm.tvar[0] == pytest.approx(-integral / (n * alpha), rel=1e-12)


def test_tvar_hand_example():
    x = np.array([-10.0, -4.0, -1.0, 0.0, 2.0, 3.0, 5.0, 6.0, 8.0, 9.0])  # n = 10
    tm = risk.tail_metrics(x, [0.9, 0.8, 0.75])
    np.testing.assert_allclose(tm.var, [10.0, 4.0, 1.0])  # 25%: F(-4) = 0.2 < 0.25 <= F(-1)
    # worst 10%: {10}; worst 20%: {10, 4}; worst 25%: 10, 4 and half of the 1
    np.testing.assert_allclose(tm.tvar, [10.0, 7.0, (10 + 4 + 0.5 * 1) / 2.5])


@pytest.mark.parametrize("case", ["normal", "lognormal"])
@pytest.mark.parametrize("p", [0.9, 0.95, 0.99, 0.995])
def test_metrics_match_scipy_within_standard_errors(case, p):
    x, loss = settlement_samples(case, 40_000, 1, seed=7)
    tm = risk.tail_metrics(x[:, 0], p)
    v, tv = exact_loss_metrics(loss, p)
    assert abs(tm.var[0] - v) < 3 * tm.var_se[0]
    assert abs(tm.tvar[0] - tv) < 3 * tm.tvar_se[0]
    # and the standard errors are of the right size: sqrt(p(1-p)/n)/f for VaR
    assert tm.var_se[0] == pytest.approx(np.sqrt(p * (1 - p) / 40_000) / loss.pdf(v), rel=0.25)


@pytest.mark.parametrize("case", ["normal", "lognormal"])
def test_standard_errors_are_honest_across_200_seeds(case):
    """95% intervals (estimate ± 1.96 se) cover the exact value 92-98% of the time, for mean, VaR 99%, TVaR 99%."""
    n, seeds = 20_000, 200   # 200 draws beyond VaR 99%
    x, loss = settlement_samples(case, n, seeds)
    v, tv = exact_loss_metrics(loss, 0.99)
    tm = risk.tail_metrics(x, 0.99)
    cover_var = np.mean(np.abs(tm.var[0] - v) <= 1.96 * tm.var_se[0])
    cover_tvar = np.mean(np.abs(tm.tvar[0] - tv) <= 1.96 * tm.tvar_se[0])
    mean_se = x.std(axis=0, ddof=1) / np.sqrt(n)
    cover_mean = np.mean(np.abs(x.mean(axis=0) + loss.mean()) <= 1.96 * mean_se)
    print(f"{case}: coverage VaR99 {cover_var:.3f} TVaR99 {cover_tvar:.3f} mean {cover_mean:.3f}")
    for c in (cover_var, cover_tvar, cover_mean):
        assert 0.92 <= c <= 0.98


def test_paired_difference_standard_error_is_honest():
    """Correlated pairs (rho = 0.9): the paired se covers the exact TVaR and mean differences, and is far smaller
    than the independent-runs se."""
    n, seeds, rho = 10_000, 200, 0.9
    rng = np.random.default_rng(11)
    z = rng.standard_normal((n, seeds))
    w = rho * z + np.sqrt(1 - rho**2) * rng.standard_normal((n, seeds))
    a, b = 1.0 + 2.0 * z, 0.5 + 3.0 * w   # settlements
    tv = exact_loss_metrics(st.norm(-1.0, 2.0), 0.99)[1] - exact_loss_metrics(st.norm(-0.5, 3.0), 0.99)[1]
    da = xr.Dataset({"net_settlement": (("draw", "year", "track"), a[:, None, :]),
                     "cumulative_settlement": (("draw", "track"), a)},
                    coords={"draw": np.arange(n), "year": [2027], "track": [f"s{i}" for i in range(seeds)]})
    db = da.copy(data={"net_settlement": b[:, None, :], "cumulative_settlement": b})
    d = risk.paired_difference(da, db, levels=[0.99]).sel(period="horizon", level=0.99)
    cover_tvar = np.mean(np.abs(d["TVaR_diff"].values - tv) <= 1.96 * d["TVaR_diff_se"].values)
    cover_mean = np.mean(np.abs(d["mean_diff"].values - 0.5) <= 1.96 * d["mean_diff_se"].values)
    print(f"paired: coverage TVaR99 diff {cover_tvar:.3f}, mean diff {cover_mean:.3f}")
    assert 0.92 <= cover_tvar <= 0.98
    assert 0.92 <= cover_mean <= 0.98
    ta, tb = risk.tail_metrics(a, 0.99), risk.tail_metrics(b, 0.99)
    independent = np.sqrt(ta.tvar_se[0] ** 2 + tb.tvar_se[0] ** 2)
    assert np.median(d["TVaR_diff_se"].values / independent) < 0.7  # measured 0.62


def test_drawdown_hand_example():
    net = np.array([[-1.0, -2.0, 4.0, -5.0],   # C = -1, -3, 1, -4: peak 0 then 1 -> drawdown max(3, 5) = 5
                    [1.0, 1.0, 1.0, 1.0],      # never falls
                    [2.0, -1.0, -1.0, 3.0]])   # C = 2, 1, 0, 3 -> 2
    np.testing.assert_allclose(risk.drawdown(net), [5.0, 0.0, 2.0])


@pytest.fixture(scope="module")
def run():
    return leadsim.simulate(small_config(**{"simulation.draws": 200}), progress=False)


def test_summarize_structure_and_consistency(run):
    s = leadsim.summarize(run)
    assert dict(s.sizes) == {"track": 2, "period": 11, "level": 4}
    assert list(s["period"].values[-1:]) == ["horizon"]
    for name in ("mean", "sd", "VaR", "TVaR", "p_loss", "p_beyond_guarantee", "drawdown_mean", "drawdown_VaR",
                 "drawdown_TVaR"):
        assert f"{name}_se" in s and s[name].attrs["units"] in ("USD", "1")
        assert np.isfinite(s[name]).all() and (s[f"{name}_se"] >= 0).all()
    cum = run["cumulative_settlement"].sel(track="global").values
    h = s.sel(period="horizon", track="global")
    assert float(h["VaR"].sel(level=0.99)) == -np.quantile(cum, 0.01, method="inverted_cdf")
    assert float(h["mean"]) == pytest.approx(cum.mean())
    assert float(h["p_loss"]) == np.mean(cum < 0)
    # the guarantee metrics use the cash view against the guarantee in force each year
    fg = run["financial_guarantee_by_year"].values
    assert fg[0] == float(run["financial_guarantee"])
    cash = run["cash_settlement"].sel(track="global").transpose("draw", "year").values
    assert float(h["p_beyond_guarantee"]) == np.mean((cash < -fg[None, :]).any(axis=1))
    y = s.sel(period="2027", track="global")
    net0 = run["net_settlement"].sel(track="global", year=2027).values
    assert float(y["sd"]) == pytest.approx(net0.std(ddof=1))
    assert (s["TVaR"] >= s["VaR"] - 1e-6).all()
    assert (s["drawdown_TVaR"] >= s["drawdown_VaR"] - 1e-6).all()
    dd = risk.drawdown(run["net_settlement"].sel(track="global").values[:, :, None])[:, 0]
    assert float(s["drawdown_mean"].sel(track="global")) == pytest.approx(dd.mean())
    assert (dd >= np.maximum(-cum, 0) - 1e-6).all()


def test_accessor_matches_summary(run):
    s = run.leadsim.summary()
    v = run.leadsim.value_at_risk(0.99, var="cumulative_settlement")
    t = run.leadsim.tvar([0.95, 0.99], var="cumulative_settlement")
    assert isinstance(v, xr.Dataset) and isinstance(t, xr.Dataset)  # one return type, whatever the arguments
    assert v["estimate"].dims == v["se"].dims == ("track",)
    np.testing.assert_array_equal(v["estimate"].values, s["VaR"].sel(period="horizon", level=0.99).values)
    np.testing.assert_array_equal(v["se"].values, s["VaR_se"].sel(period="horizon", level=0.99).values)
    np.testing.assert_array_equal(t["estimate"].sel(level=0.99).values,
                                  s["TVaR"].sel(period="horizon", level=0.99).values)
    np.testing.assert_array_equal(t["se"].sel(level=0.95).values,
                                  s["TVaR_se"].sel(period="horizon", level=0.95).values)
    annual = run.leadsim.value_at_risk(0.99)["estimate"]
    assert set(annual.dims) == {"year", "track"}
    # the accessor does not shadow xarray's own Dataset.var (the variance)
    np.testing.assert_allclose(run.var("draw")["net_settlement"].values,
                               run["net_settlement"].var("draw").values)


def test_paired_difference_of_tracks_and_of_a_run_with_itself(run):
    d = risk.paired_difference(run.sel(track="global"), run.sel(track="professional"))
    cum = run["cumulative_settlement"]
    diff = (cum.sel(track="global") - cum.sel(track="professional")).values
    h = d.sel(period="horizon")
    assert float(h["mean_diff"]) == pytest.approx(diff.mean())
    assert float(h["mean_diff_se"]) == pytest.approx(diff.std(ddof=1) / np.sqrt(diff.size))
    assert d.attrs["common_random_numbers"] == 1
    same = run.leadsim.difference(run)
    assert float(abs(same["TVaR_diff"]).max()) == 0.0 and float(same["TVaR_diff_se"].max()) == 0.0
    with pytest.raises(ValueError, match="same number of draws"):
        risk.paired_difference(run, run.isel(draw=slice(0, 10)))
