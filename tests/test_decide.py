"""leadsim.decide: options on common draws, break-even effects, the track switch, reserves, ranking, CLI."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import leadsim
from leadsim.cli import main
from leadsim.decide import build_options, decide, run_break_even
from leadsim.decide import metrics as M
from leadsim.decide.evaluate import Evaluator
from leadsim.decide.options import cost_key
from leadsim.errors import ConfigError, LeadsimWarning

SMALL = {"simulation.draws": 60, "aco.beneficiaries": 1500, "simulation.seed": 7, "simulation.chunk_draws": 25}


def small(**extra):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LeadsimWarning)
        return leadsim.load_config("configs/default.toml", overrides={**SMALL, **extra})


def sim(cfg):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LeadsimWarning)
        return leadsim.simulate(cfg, progress=False)


@pytest.fixture(scope="module")
def decided():
    return decide(small(), progress=False)


# ---- the option set and kernel reuse --------------------------------------------------------------------------------
def test_cost_key_separates_only_what_the_kernel_does():
    cfg = small()
    same = leadsim.load_config(cfg, overrides={"policy.stop_loss.loading": 0.5, "policy.global.discount_lower": [0.05],
                                               "policy.settlement.financial_guarantee": 0.02})
    assert cost_key(same) == cost_key(cfg)
    assert cost_key(leadsim.load_config(cfg, overrides={"policy.preset": "reach_py2026"})) == cost_key(cfg)
    elected = leadsim.load_config(cfg, overrides={"policy.stop_loss.enabled": True})
    assert cost_key(elected) != cost_key(cfg)
    mssp = leadsim.load_config(cfg, overrides={"policy.preset": "mssp_enhanced"})
    assert len({cost_key(cfg), cost_key(elected), cost_key(mssp)}) == 3
    assert cost_key(leadsim.load_config(cfg, overrides={"aco.care_management_effect": [-0.01]})) != cost_key(cfg)


def test_option_set_of_the_default_config():
    variants, options = build_options(small())
    assert [o.name for o in options] == [
        "lead_global", "lead_professional", "lead_switch", "lead_sl_global", "lead_sl_professional", "lead_sl_switch",
        "reach_global", "reach_professional", "mssp_enhanced"]
    assert variants["lead_sl"].cfg.policy.stop_loss.enabled and not variants["lead"].cfg.policy.stop_loss.enabled
    assert not variants["reach"].cfg.policy.stop_loss.enabled
    with pytest.raises(ConfigError, match="comparator 'nope': unknown policy preset"):
        build_options(small(), comparators=["nope"])


def test_every_option_equals_its_own_run_bit_for_bit(decided):
    """One kernel pass per cost model (3, not 9) and, on it, exactly the numbers of a separate run (decide ran in
    chunks of 25 draws, the runs here in one chunk: the pooled passes keep the engine's rounding)."""
    assert decided.attrs["kernel_passes"] >= 3
    cfg = small(**{"simulation.chunk_draws": 128})
    runs = {"lead": sim(cfg),
            "lead_sl": sim(leadsim.load_config(cfg, overrides={"policy.stop_loss.enabled": True})),
            "reach": sim(leadsim.load_config(cfg, overrides={"policy.preset": "reach_py2026"})),
            "mssp": sim(leadsim.load_config(cfg, overrides={"policy.preset": "mssp_enhanced"}))}
    for o in decided.option.values:
        variant, track = str(decided.variant.sel(option=o).item()), str(decided.track.sel(option=o).item())
        if track == "switch":
            continue
        run = runs[variant].sel(track=track)
        np.testing.assert_array_equal(decided.cumulative_settlement.sel(option=o).values,
                                      run.cumulative_settlement.values)
        np.testing.assert_array_equal(decided.cash_settlement.sel(option=o).values, run.cash_settlement.values)


def test_kernel_passes_without_break_even_are_one_per_cost_model():
    d = decide(small(), break_even=False, progress=False)
    assert d.attrs["kernel_passes"] == 3 and "break_even_effect" not in d
    d = decide(small(), break_even=False, stop_loss=False, comparators=["reach_py2026"], progress=False)
    assert d.attrs["kernel_passes"] == 1 and list(d.option.values) == [
        "lead_global", "lead_professional", "lead_switch", "reach_global", "reach_professional"]


# ---- the switch ------------------------------------------------------------------------------------------------------
def test_switch_is_professional_for_four_years_then_global_where_the_rule_fires():
    cfg = small()
    variants, options = build_options(cfg, comparators=[], stop_loss=False)
    ev = Evaluator(variants, options)
    sw = next(o for o in options if o.track == "switch")
    run = sim(cfg)
    prof, glob = run.net_settlement.sel(track="professional").values, run.net_settlement.sel(track="global").values
    ev.thresholds[sw.name] = np.full(60, -np.inf)  # always move
    p = ev.paths(sw)
    np.testing.assert_array_equal(p.net[:, :4], prof[:, :4])
    np.testing.assert_array_equal(p.net[:, 4:], glob[:, 4:])
    np.testing.assert_allclose(p.cum, p.net.sum(axis=1), rtol=1e-12)
    # the rule: cumulative savings rate of the stay, from the run's own gross savings and benchmark
    rate4 = (run.gross_savings.sel(track="professional").isel(year=slice(0, 4)).sum("year")
             / run.benchmark.sel(track="professional").isel(year=slice(0, 4)).sum("year")).values
    tau = float(np.median(rate4))
    ev.thresholds[sw.name] = np.full(60, tau)
    p = ev.paths(sw)
    fire = rate4 > tau
    assert 0 < fire.sum() < 60
    np.testing.assert_array_equal(p.net[fire, 4:], glob[fire, 4:])
    np.testing.assert_array_equal(p.net[~fire], prof[~fire])


def test_switch_threshold_is_cross_fitted_and_its_value_has_a_paired_se(decided):
    s = decided.sel(option="lead_switch")
    assert float(s.switch_threshold) in decided.threshold.values
    assert {float(s.switch_threshold_a), float(s.switch_threshold_b)} <= set(decided.threshold.values)
    diff = (decided.cumulative_settlement.sel(option="lead_switch")
            - decided.cumulative_settlement.sel(option="lead_professional")).values
    assert float(s.switch_value_mean) == pytest.approx(diff.mean(), rel=1e-9, abs=1e-6)
    assert float(s.switch_value_mean_se) == pytest.approx(diff.std(ddof=1) / np.sqrt(diff.size), rel=1e-9, abs=1e-6)
    # the in-sample curve is maximal at the reported threshold
    curve = decided.switch_criterion.sel(option="lead_switch")
    assert float(curve.sel(threshold=float(s.switch_threshold))) == pytest.approx(float(curve.max()))


# ---- metrics, reserves, ranking ------------------------------------------------------------------------------------
def test_metrics_are_those_of_the_per_draw_values(decided):
    cum = decided.cumulative_settlement.values
    n = cum.shape[0]
    np.testing.assert_allclose(decided["mean"].values, cum.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(decided["mean_se"].values, cum.std(axis=0, ddof=1) / np.sqrt(n), rtol=1e-9)
    np.testing.assert_array_equal(decided["p_loss"].values, (cum < 0).mean(axis=0))
    q = -np.quantile(cum, 0.01, axis=0, method="inverted_cdf")
    np.testing.assert_array_equal(decided["VaR"].sel(level=0.99).values, q)
    # reserve: the 99.5% quantile of the worst cumulative cash position at a settlement
    cash = decided.cash_settlement.transpose("draw", "year", "option").values
    net = decided.net_settlement.transpose("draw", "year", "option").values
    need = np.zeros(cash.shape[0::2])
    for i in range(cash.shape[0]):
        for k in range(cash.shape[2]):
            done, peak = 0.0, 0.0
            for t in range(cash.shape[1]):
                need[i, k] = max(need[i, k], peak - (done + cash[i, t, k]))
                done += net[i, t, k]
                peak = max(peak, done)
    np.testing.assert_allclose(decided.reserve_need.values, need, rtol=1e-9, atol=1e-3)
    np.testing.assert_array_equal(decided.reserve.sel(level=0.995).values,
                                  np.quantile(need, 0.995, axis=0, method="inverted_cdf"))
    base = decided.attrs["baseline"]
    assert base == "mssp_enhanced"
    d = cum - decided.cumulative_settlement.sel(option=base).values[:, None]
    np.testing.assert_allclose(decided.diff_mean.values, d.mean(axis=0), rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(decided.diff_mean_se.values, d.std(axis=0, ddof=1) / np.sqrt(n), rtol=1e-9, atol=1e-6)
    lam = decided.attrs["criterion_lambda"]
    np.testing.assert_allclose(decided.criterion_value.values,
                               decided["mean"].values - lam * decided.TVaR.sel(level=0.99).values, rtol=1e-12)
    assert sorted(decided["rank"].values) == list(range(1, decided.sizes["option"] + 1))
    assert int(decided["rank"].values[np.argmax(decided.criterion_value.values)]) == 1


def test_worst_cash_position_by_hand():
    """Results +5, -8, +1, -4 with advances 1 a year (cash 4, -9, 0, -5): positions at settlement 4, -4 (= 5 - 9),
    -3 (= -3 + 0), -7 (= -2 - 5); from the peak 5 of the earlier results the worst fall is 5 - (-7) = 12. Without
    advances it is the drawdown: 5 - (-6) = 11."""
    net = np.array([[5.0, -8.0, 1.0, -4.0]])
    assert M.worst_cash_position(net, net - 1.0)[0] == pytest.approx(12.0)
    assert M.worst_cash_position(net, net)[0] == pytest.approx(11.0)
    from leadsim.analysis.risk import drawdown

    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 10, 2))
    np.testing.assert_allclose(M.worst_cash_position(x, x, 1.03 ** -np.arange(10)),
                               drawdown(x, 1.03 ** -np.arange(10)), rtol=1e-12)
    # a steady advance with a break-even result needs the advance once, not once a year
    assert M.worst_cash_position(np.zeros((1, 10)), -np.ones((1, 10)))[0] == pytest.approx(1.0)


def test_paired_se_covers_the_true_difference_of_correlated_samples():
    """The paired standard error of a mean difference and of a TVaR difference: 95% intervals cover the truth."""
    rng = np.random.default_rng(3)
    n, reps, rho = 400, 300, 0.9
    cover_mean = cover_tvar = 0
    # TVaR90 of a N(m, s) result (loss side) is s phi(z) / 0.1 - m with z = Phi^-1(0.9)
    for _ in range(reps):
        e = rng.standard_normal((n, 2))
        a = e[:, 0]
        b = 1.5 * (rho * e[:, 0] + np.sqrt(1 - rho**2) * e[:, 1]) + 0.2
        d, se = M.paired(M.estimate(a, "mean"), M.estimate(b, "mean"))
        cover_mean += abs(d - (-0.2)) < 1.96 * se
        d, se = M.paired(M.estimate(a, "TVaR", 0.9), M.estimate(b, "TVaR", 0.9))
        zt = 1.2815515655446004
        t = np.exp(-0.5 * zt * zt) / np.sqrt(2 * np.pi) / 0.1
        cover_tvar += abs(d - (t - (1.5 * t - 0.2))) < 1.96 * se
    assert 0.91 <= cover_mean / reps <= 0.98
    assert 0.88 <= cover_tvar / reps <= 0.98
    x = rng.standard_normal((50, 3))
    d, se = M.paired(M.estimate(x, "mean"), M.estimate(x[:, 0], "mean"))
    np.testing.assert_allclose(se, (x - x[:, :1]).std(axis=0, ddof=1) / np.sqrt(50), atol=1e-15)
    assert abs(d[0]) < 1e-15 and se[0] < 1e-15


def test_rank_under_each_criterion():
    assert list(M.rank("mean_tvar", np.array([1.0, 3.0, 2.0]), np.zeros(3), np.zeros(3), 0.05)) == [3, 1, 2]
    # constrained: the feasible options by mean, then the others by how often they breach
    mean, p = np.array([5.0, 1.0, 3.0, 9.0]), np.array([0.10, 0.01, 0.05, 0.20])
    assert list(M.rank("constrained", mean, mean, p, 0.05)) == [3, 2, 1, 4]


def test_constructed_case_the_better_track_is_known_by_hand():
    """Almost no noise: with savings rate r before the discount, Global keeps about r - 3% (100% sharing, 3% discount
    for a lower-spending ACO) and Professional about r/2; so Global wins when r > 6%, Professional when r < 6%."""
    quiet = {"trend.national_sd": 0.0, "trend.regional_sd": 0.0, "trend.aco_level_sd": 0.0, "quality.sd": 0.0,
             "population.aged_disabled.sigma": 0.05, "population.esrd.sigma": 0.05,
             "population.high_needs.sigma": 0.05, "simulation.draws": 8, "aco.beneficiaries": 5000}
    picks = {}
    for effect in (-0.15, -0.01):
        cfg = small(**quiet, **{"aco.care_management_effect": [effect]})
        d = decide(cfg, comparators=[], stop_loss=False, lam=0.0, progress=False, break_even=False)
        two = d.sel(option=["lead_global", "lead_professional"])
        picks[effect] = str(two.option.values[int(np.argmax(two["mean"].values))])
        gap = float(two["mean"].sel(option="lead_global") - two["mean"].sel(option="lead_professional"))
        se = float(two["mean_se"].max())
        assert abs(gap) > 10 * se  # the answer is not noise
    assert picks == {-0.15: "lead_global", -0.01: "lead_professional"}


# ---- break-even ------------------------------------------------------------------------------------------------------
def test_break_even_without_relief_is_exact_against_a_run_at_that_effect(decided):
    """Spending scales exactly with the effect, so a run at the found effect breaks even to rounding."""
    for option, track in (("lead_global", "global"), ("lead_professional", "professional")):
        be = decided.break_even_effect.sel(option=option).values
        run = sim(small(**{"aco.care_management_effect": [float(be[0])]}))
        cum = run.cumulative_settlement.sel(track=track).values
        assert abs(cum.mean()) < 1e-6 * cum.std()
        run = sim(small(**{"aco.care_management_effect": [float(be[1])]}))
        cum = run.cumulative_settlement.sel(track=track).values
        assert abs((cum < 0).sum() - 30) <= 1  # P(loss) = 50% of 60 draws, to one draw
    assert float(decided.break_even_pass_gap.sel(option="lead_global")) == 0.0


@pytest.mark.slow
def test_break_even_agrees_with_a_brute_force_grid_of_runs():
    """Root finding on common random numbers vs a grid of full runs (the effect set in the config): within the SE;
    with stop-loss elected (nonlinear relief, interpolated between kernel passes) too."""
    cfg = small(**{"simulation.draws": 120})
    d = decide(cfg, comparators=["mssp_enhanced"], progress=False)
    grid = np.round(np.arange(-0.08, 0.1001, 0.01), 4)
    for option, over, track in (("lead_global", {}, "global"), ("lead_sl_global", {"policy.stop_loss.enabled": True},
                                                                 "global"),
                                ("lead_sl_professional", {"policy.stop_loss.enabled": True}, "professional"),
                                ("mssp_enhanced", {"policy.preset": "mssp_enhanced"}, "enhanced")):
        means = []
        for g in grid:
            run = sim(leadsim.load_config(cfg, overrides={**over, "aco.care_management_effect": [float(g)]}))
            means.append(float(run.cumulative_settlement.sel(track=track).mean()))
        means = np.array(means)
        k = int(np.flatnonzero((means[:-1] > 0) & (means[1:] <= 0))[0])  # the grid brackets every root
        brute = grid[k] + (grid[k + 1] - grid[k]) * means[k] / (means[k] - means[k + 1])
        be = float(d.break_even_effect.sel(option=option, criterion="mean_zero"))
        se = float(d.break_even_effect_se.sel(option=option, criterion="mean_zero"))
        assert abs(be - brute) < se, (option, be, brute, se)
        # and at the root itself a full run breaks even far inside the SE of its mean
        run = sim(leadsim.load_config(cfg, overrides={**over, "aco.care_management_effect": [be]}))
        cum = run.cumulative_settlement.sel(track=track).values
        assert abs(cum.mean()) < 0.05 * cum.std() / np.sqrt(cum.size), option


@pytest.mark.slow
def test_break_even_standard_errors_match_the_spread_across_seeds():
    """Across 24 independent seeds the break-even estimates scatter as their reported standard errors say: the
    ratio of the empirical SD to the mean SE lies in the 99% range of an SD ratio from 24 samples (0.64 to 1.42)."""
    est, ses = [], []
    for seed in range(24):
        d = decide(small(**{"simulation.seed": 1000 + seed, "simulation.draws": 150, "aco.beneficiaries": 800}),
                   comparators=[], stop_loss=False, progress=False)
        est.append(d.break_even_effect.sel(option=["lead_global", "lead_professional"]).values)
        ses.append(d.break_even_effect_se.sel(option=["lead_global", "lead_professional"]).values)
    ratio = np.std(est, axis=0, ddof=1) / np.mean(ses, axis=0)  # (option, criterion)
    assert np.all((ratio > 0.64) & (ratio < 1.42)), ratio


def test_run_summary_break_even_is_decides_on_the_same_draws(decided, tmp_path, capsys):
    run = sim(small())
    effects, exact, used = run_break_even(run)
    assert exact and used == 60
    for track in ("global", "professional"):
        # the summary roots to 1e-6 (RUN_BREAK_EVEN_TOL), decide's to 1e-9
        np.testing.assert_allclose(effects[track][0], decided.break_even_effect.sel(option=f"lead_{track}").values,
                                   rtol=0, atol=2e-6)
        np.testing.assert_allclose(effects[track][1], decided.break_even_effect_se.sel(option=f"lead_{track}").values,
                                   rtol=1e-3)
    sl_run = sim(small(**{"policy.stop_loss.enabled": True}))
    assert run_break_even(sl_run)[1] is False
    out = tmp_path / "r.nc"
    assert main(["run", "configs/default.toml", "-o", str(out), "--draws", "60", "--seed", "7", "--set",
                 "aco.beneficiaries=1500", "-q"]) == 0
    from leadsim.cli import summary_text

    text = summary_text(leadsim.open(out))
    row = next(line for line in text.splitlines() if line.startswith("Break-even effect, mean = 0"))
    g = float(decided.break_even_effect.sel(option="lead_global", criterion="mean_zero"))
    assert f"{g:+.2%}" in row


# ---- CLI -------------------------------------------------------------------------------------------------------------
def test_cli_decide_writes_dataset_table_and_report(tmp_path, capsys):
    out, rep = tmp_path / "d.nc", tmp_path / "d.html"
    rc = main(["decide", "configs/default.toml", "--draws", "40", "--set", "aco.beneficiaries=800", "-o", str(out),
               "--report", str(rep), "--comparators", "mssp_enhanced", "--no-stop-loss", "--baseline",
               "lead_professional", "--criterion", "constrained", "--alpha", "0.5"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "lead_global" in text and "mssp_enhanced" in text and "Best under the criterion" in text
    ds = leadsim.open(out) if False else __import__("xarray").open_dataset(out, engine="h5netcdf")
    assert ds.break_even_effect.dims == ("option", "criterion")
    assert list(ds.criterion.values) == ["mean_zero", "p_loss_half"]
    assert ds.attrs["baseline"] == "lead_professional" and ds.attrs["ranking_criterion"] == "constrained"
    html = rep.read_text()
    for name in ("decision", "paired_vs_baseline", "break_even", "reserves", "switch"):
        assert f'data-table="{name}"' in html
    for name in ("decision", "switch_rule"):
        assert f'data-figure="{name}"' in html


@pytest.mark.parametrize("args, message", [
    (["--baseline", "nope"], "baseline 'nope': not an option of this decision (options: lead_global"),
    (["--alpha", "1.5"], "alpha = 1.5: must be a probability in (0, 1)"),
    (["--lambda", "-1"], "lambda = -1.0: must be a number in [0, 100]"),
    (["--comparators", "reach_py2026,bogus"], "comparator 'bogus': unknown policy preset"),
    (["--set", "simulation.draws=0"], "simulation.draws"),
])
def test_cli_decide_bad_input_exits_2_before_any_work(args, message, tmp_path, capsys):
    out = tmp_path / "d.nc"
    rc = main(["decide", "configs/default.toml", "-o", str(out), *args])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_cli_decide_refuses_an_existing_output(tmp_path, capsys):
    out = tmp_path / "d.nc"
    out.write_text("keep")
    assert main(["decide", "configs/default.toml", "-o", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_text() == "keep"


def test_one_draw_decides_without_nan_or_confident_zero_errors(capsys):
    import re

    assert main(["decide", "configs/default.toml", "--draws", "1", "--set", "aco.beneficiaries=300",
                 "--comparators", "mssp_enhanced"]) == 0
    out = capsys.readouterr().out
    assert not re.search(r"\bnan\b", out, re.IGNORECASE)
    d = decide(small(**{"simulation.draws": 1}), comparators=[], progress=False)
    assert np.isnan(d.break_even_effect_se.values).all() and np.isnan(d.mean_se.values).all()


def test_decision_is_bit_identical_whatever_the_threads_and_chunks():
    cfg = small(**{"simulation.draws": 30, "aco.beneficiaries": 500})
    a = decide(cfg, comparators=["mssp_enhanced"], progress=False)
    b = decide(leadsim.load_config(cfg, overrides={"simulation.threads": 1, "simulation.chunk_draws": 7}),
               comparators=["mssp_enhanced"], progress=False)
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
