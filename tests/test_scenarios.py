"""Stress scenarios (``configs/scenarios/``): hand-worked ledger rules, and each scenario changes what it should
and nothing else on common random numbers (same seed, same draws)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import leadsim
from leadsim.cli import main
from leadsim.config import ConfigError, LeadsimWarning, shock_path
from leadsim.config.presets import available_scenarios
from leadsim.ledger.settlement import corridor_share, narrowed
from tests.test_ledger_cases import B, bench, config, settle_one

SCENARIOS = ("early_termination", "forecast_miss", "pandemic", "rule_change")
KERNEL_VARS = ("member_months", "risk_score", "deaths", "entrants", "quality_score")
SETTLEMENT_VARS = ("shared_savings", "sequestration", "add_on_payments", "operating_cost", "net_settlement",
                   "pcc_advance", "cash_settlement")


# ---------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------
def test_the_four_scenarios_ship_and_load():
    assert set(SCENARIOS) <= set(available_scenarios())
    for name in SCENARIOS:
        cfg = leadsim.load_config(scenario=name)
        assert cfg.scenario == name
    both = leadsim.load_config(scenario=["pandemic", "early_termination"])
    assert both.scenario == "pandemic+early_termination"
    assert both.trend.national_shock == [0.0, 0.0, 0.0, -0.09, 0.08]
    assert both.policy.settlement.terminated_after == 2031
    assert leadsim.load_config().scenario is None   # no scenario: the config is unchanged (nothing dumped)
    assert "scenario" not in leadsim.load_config().to_dict()


def test_unknown_scenario_lists_the_names():
    with pytest.raises(ConfigError) as err:
        leadsim.load_config(scenario="meteor")
    msg = str(err.value)
    assert "meteor" in msg and all(n in msg for n in SCENARIOS)


def test_event_year_outside_the_horizon_names_the_key():
    with pytest.raises(ConfigError, match=r"policy.settlement.terminated_after = 2031.*2027 <= value <= 2029"):
        leadsim.load_config(overrides={"simulation.years": 3}, scenario="early_termination")
    with pytest.raises(ConfigError, match=r"policy.rule_change.year = 2040"):
        leadsim.load_config(overrides={"policy.rule_change.year": 2040})


def test_shock_path_pads_with_zeros_not_the_last_value():
    assert shock_path([0.0, -0.09, 0.08], 5) == [0.0, -0.09, 0.08, 0.0, 0.0]
    assert shock_path(None, 3) == [0.0, 0.0, 0.0]


# ---------------------------------------------------------------------------------------------------------
# Hand-worked ledger rules
# ---------------------------------------------------------------------------------------------------------
def test_narrowed_corridor_hand_worked():
    # LEAD Global bands 0/15/35/50% x 2/3 -> 0/10/23.3/33.3%; a 20% loss: 10% at 100% + 10% at 50% = 15%
    g = narrowed(config().policy.global_, 2.0 / 3.0)
    assert g.loss_breakpoints == pytest.approx([0.0, 0.10, 0.35 * 2 / 3, 0.50 * 2 / 3])
    assert corridor_share(np.array([-0.20]), g)[0] == pytest.approx(-0.15, abs=1e-15)
    assert corridor_share(np.array([-0.20]), config().policy.global_)[0] == pytest.approx(-(0.15 + 0.05 * 0.5))


def test_rule_change_in_settlement_only_from_its_year():
    cfg = config(**{"policy.rule_change.year": 2030, "policy.rule_change.corridor_scale": 2.0 / 3.0})
    s = settle_one(cfg, "global", B, 1.2 * B)      # a 20% loss every year
    # before PY2030: LEAD bands, 15% x 1 + 5% x 0.5 = 17.5% of B; from PY2030: 15% (no sequestration on losses)
    np.testing.assert_allclose(s.shared_savings[0, :3], -0.175 * B, rtol=1e-14)
    np.testing.assert_allclose(s.shared_savings[0, 3:], -0.15 * B, rtol=1e-14)


def test_rule_change_in_benchmark_discount_and_withhold():
    q = 0.6
    base, rc = config(), config(**{"policy.rule_change.year": 2030, "policy.rule_change.global_discount_add": 0.01,
                                  "policy.rule_change.withhold_add": 0.02})
    for track in ("global", "professional"):
        b0, b1 = bench(base, track, q=q), bench(rc, track, q=q)
        np.testing.assert_array_equal(b1.before_discount, b0.before_discount)
        np.testing.assert_array_equal(b1.final[:, :3], b0.final[:, :3])       # PY2027-29 untouched
        add = 0.01 if track == "global" else 0.0
        d0 = 1.0 - b0.after_discount / b0.before_discount
        d1 = 1.0 - b1.after_discount / b1.before_discount
        np.testing.assert_allclose(d1[:, 3:], d0[:, 3:] + add, atol=1e-14)
        # withhold 3% -> 5%, earned back at q: factor 1 - 0.05 (1 - 0.6) = 0.98 (was 0.988)
        np.testing.assert_allclose(b1.final[:, 3:] / b1.after_discount[:, 3:], 1.0 - 0.05 * (1 - q), rtol=1e-14)
        np.testing.assert_allclose(b0.final[:, 3:] / b0.after_discount[:, 3:], 1.0 - 0.03 * (1 - q), rtol=1e-14)


def test_euc_relief_forgives_losses_not_savings():
    cfg = config(**{"policy.settlement.euc_loss_relief": [0.0, 1.0, 0.5]})
    loss = settle_one(cfg, "global", B, 1.1 * B)     # 10% loss: shared -10% of B at 100%
    np.testing.assert_allclose(loss.shared_savings[0, :4], [-0.1 * B, 0.0, -0.05 * B, -0.1 * B], rtol=1e-14)
    gain = settle_one(cfg, "global", B, 0.9 * B)     # 10% saving: 10% of B less 2% sequestration, every year
    np.testing.assert_allclose(gain.shared_savings[0, :4], 0.1 * B * 0.98, rtol=1e-14)


def test_early_termination_settles_nothing_after_its_year():
    cfg = config(**{"policy.settlement.terminated_after": 2031, "aco.operating_cost_pbpm": 10.0})
    s = settle_one(cfg, "global", B, 0.9 * B)
    full = settle_one(config(**{"aco.operating_cost_pbpm": 10.0}), "global", B, 0.9 * B)
    np.testing.assert_array_equal(s.net_settlement[0, :5], full.net_settlement[0, :5])
    for name in ("shared_savings", "add_on_payments", "operating_cost", "net_settlement", "pcc_advance",
                 "cash_settlement"):
        assert (getattr(s, name)[0, 5:] == 0.0).all(), name
    np.testing.assert_array_equal(s.benchmark, full.benchmark)      # the counterfactual is still reported
    assert s.cumulative_settlement[0] == pytest.approx(full.net_settlement[0, :5].sum(), rel=1e-14)


# ---------------------------------------------------------------------------------------------------------
# Each scenario changes what it should and nothing else (common random numbers)
# ---------------------------------------------------------------------------------------------------------
def _run(scenario=None, **over):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LeadsimWarning)
        cfg = leadsim.load_config(overrides={"simulation.draws": 24, "aco.beneficiaries": 400,
                                             "simulation.chunk_draws": 12, **over}, scenario=scenario)
        return leadsim.simulate(cfg, progress=False)


@pytest.fixture(scope="module")
def runs():
    return {name: _run(name) for name in (None, *SCENARIOS)}


def _same(a, b, var, years=slice(None)):
    np.testing.assert_array_equal(a[var].isel(year=years).values, b[var].isel(year=years).values, err_msg=var)


def test_pandemic_changes_spending_from_its_year_only(runs):
    base, pan = runs[None], runs["pandemic"]
    for var in base.data_vars:   # PY2027-29: every variable bit-identical
        if "year" in base[var].dims:
            _same(base, pan, var, slice(0, 3))
    for var in KERNEL_VARS:      # beneficiaries and quality: every year (the shock scales spending only)
        _same(base, pan, var)
    shock = np.array(shock_path([0.0, 0.0, 0.0, -0.09, 0.08], 10))
    np.testing.assert_allclose(pan.national_growth - base.national_growth,
                               np.broadcast_to(shock[None, :, None], base.national_growth.shape), atol=1e-15)
    np.testing.assert_allclose(pan.regional_growth - pan.national_growth, base.regional_growth - base.national_growth,
                               atol=1e-15)
    # spending moves with the regional level (national + regional deviation): the ratio in PY2030 is
    # (1 + g - 0.09) / (1 + g) per draw and population, g the baseline regional growth
    g = base.regional_growth.isel(year=3)
    ratio = (pan.expenditure.isel(year=3) / base.expenditure.isel(year=3))
    np.testing.assert_allclose(ratio.values, ((1 + g - 0.09) / (1 + g)).values, rtol=1e-12)
    # loss relief: no draw owes a shared loss in PY2030-31, though some would without the relief
    no_relief = _run("pandemic", **{"policy.settlement.euc_loss_relief": [0.0]})
    assert (no_relief.shared_savings.isel(year=[3, 4]) < 0).any()
    np.testing.assert_array_equal(pan.shared_savings.isel(year=[3, 4]),
                                  np.maximum(no_relief.shared_savings.isel(year=[3, 4]), 0.0))


def test_forecast_miss_leaves_spending_alone(runs):
    base, fm = runs[None], runs["forecast_miss"]
    for var in (*KERNEL_VARS, "expenditure", "national_growth", "regional_growth", "aco_growth"):
        _same(base, fm, var)
    for var in ("benchmark", "net_settlement"):
        _same(base, fm, var, slice(0, 2))
    assert (fm.benchmark.isel(year=2) < base.benchmark.isel(year=2)).any()   # the miss lowers benchmarks
    assert (fm.benchmark.isel(year=2) <= base.benchmark.isel(year=2)).all()


def test_forecast_miss_under_reach_moves_through_the_rta():
    # REACH measures the RTA on national trend: a -4.5% forecast miss is corrected 100% to 4% and 50% beyond, so
    # with no trend noise the benchmark ends about 0.23% lower (the uncorrected half of the last 0.48%)
    kw = {"policy.preset": "reach_py2026", "trend.national_sd": 0.0, "trend.regional_sd": 0.0,
          "trend.aco_level_sd": 0.0, "quality.sd": 0.0}
    base, fm = _run(**kw), _run("forecast_miss", **kw)
    b0 = base.benchmark_pbpm.isel(year=2)
    b1 = fm.benchmark_pbpm.isel(year=2)
    # prospective P = mu-path x (1 - 0.045 / (1 + mu)); delta = A/P - 1; applied = 4% + 0.5 (delta - 4%)
    mu = np.array([0.05, 0.04, 0.05])
    p_ratio = (1 + mu - 0.045) / (1 + mu)
    delta = 1 / p_ratio - 1
    applied = 0.04 + 0.5 * (delta - 0.04)
    got = (b1 / b0).transpose("draw", "track", "population").values
    np.testing.assert_allclose(got, np.broadcast_to(p_ratio * (1 + applied), got.shape), rtol=1e-12)


def test_rule_change_leaves_spending_alone(runs):
    base, rc = runs[None], runs["rule_change"]
    for var in (*KERNEL_VARS, "expenditure", "national_growth"):
        _same(base, rc, var)
    for var in ("benchmark", "net_settlement"):
        _same(base, rc, var, slice(0, 3))
    assert (rc.benchmark.sel(track="global").isel(year=3) < base.benchmark.sel(track="global").isel(year=3)).all()


def test_early_termination_only_zeroes_later_settlements(runs):
    base, et = runs[None], runs["early_termination"]
    for var in base.data_vars:
        if "year" in base[var].dims and var not in SETTLEMENT_VARS:
            _same(base, et, var)
    for var in SETTLEMENT_VARS:
        _same(base, et, var, slice(0, 5))
        assert (et[var].isel(year=slice(5, None)) == 0).all(), var
    np.testing.assert_allclose(et.cumulative_settlement, base.net_settlement.isel(year=slice(0, 5)).sum("year"),
                               rtol=1e-12)


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------
def test_cli_compare_scenarios_side_by_side(tmp_path, capsys):
    html = tmp_path / "s.html"
    rc = main(["compare", "configs/default.toml", "--scenario", "pandemic", "--scenario", "early_termination",
               "--draws", "20", "--set", "aco.beneficiaries=300", "-o", str(html)])
    assert rc == 0
    out = capsys.readouterr().out
    for label in ("baseline: global", "pandemic: professional", "early_termination: global"):
        assert label in out
    assert "Paired differences vs baseline, same track" in out
    assert "pandemic" in html.read_text()


def test_cli_unknown_scenario_exits_2(tmp_path, capsys):
    rc = main(["run", "configs/default.toml", "--scenario", "meteor", "-o", str(tmp_path / "r.nc")])
    assert rc == 2
    assert "unknown stress scenario" in capsys.readouterr().err
    assert not (tmp_path / "r.nc").exists()


def test_cli_run_with_scenario_records_it(tmp_path, capsys):
    out = tmp_path / "p.nc"
    rc = main(["run", "configs/default.toml", "--scenario", "pandemic", "--draws", "8", "--set",
               "aco.beneficiaries=200", "-o", str(out)])
    assert rc == 0
    assert "| scenario pandemic |" in capsys.readouterr().out
    ds = leadsim.open(out)
    cfg = leadsim.config_of(ds)
    assert cfg.scenario == "pandemic" and cfg.trend.national_shock == [0.0, 0.0, 0.0, -0.09, 0.08]
    assert "scenario = pandemic" in ds.attrs["assumptions"]
    assert "trend.national_shock = [0.0, 0.0, 0.0, -0.09, 0.08]" in ds.attrs["assumptions"]


def test_cli_decide_with_scenario_names_it(capsys):
    """A decision under a stress scenario says so in its header (and its dataset's attrs)."""
    rc = main(["decide", "configs/default.toml", "--scenario", "forecast_miss", "--draws", "8", "--set",
               "aco.beneficiaries=200", "--no-break-even", "--comparators", ""])
    assert rc == 0
    assert "| scenario forecast_miss |" in capsys.readouterr().out.splitlines()[0]
