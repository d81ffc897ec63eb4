"""Variance attribution: Shapley values (hand-worked and their axioms), the switch-offs on common random numbers,
known splits, and the command."""

from __future__ import annotations

import dataclasses
import warnings
from math import comb

import numpy as np
import pytest
import xarray as xr

import leadsim
from leadsim.analysis.attribution import attribute_runs, shapley
from leadsim.attribution import SOURCES, _unit_kernel, flat_tail_table, source_runs
from leadsim.cli import main
from leadsim.config import ConfigError, LeadsimWarning
from leadsim.model.cohort import cohort_model
from leadsim.model.drivers import macro_paths
from leadsim.model.marginals import latent_grid
from tests.test_ledger_cases import degenerate
from tests.test_plots_report import CHROMIUM, chromium_dump


def _cfg(**over):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LeadsimWarning)
        return leadsim.load_config(overrides={"simulation.draws": 40, "aco.beneficiaries": 400,
                                              "simulation.chunk_draws": 16, **over})


def _bit(name: str) -> int:
    return 1 << SOURCES.index(name)


# ---------------------------------------------------------------------------------------------------------
# Shapley values
# ---------------------------------------------------------------------------------------------------------
def test_shapley_two_player_game_by_hand():
    # v(0) = 0, v(A) = 1, v(B) = 2, v(AB) = 4: phi_A = (1 - 0)/2 + (4 - 2)/2 = 1.5, phi_B = (2 + 3)/2 = 2.5
    np.testing.assert_allclose(shapley(np.array([0.0, 1.0, 2.0, 4.0]), 2), [1.5, 2.5], rtol=1e-15)


def test_shapley_axioms_on_a_random_seven_player_game():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(128, 3))
    v[:, 2] = v[:, 2][np.arange(128) & ~(1 << 4)]      # player 4 never changes column 2 (a null player)
    phi = shapley(v, 7)
    np.testing.assert_allclose(phi.sum(axis=0), v[-1] - v[0], rtol=1e-12, atol=1e-12)   # efficiency
    assert abs(phi[4, 2]) < 1e-12
    # additive game v(S) = sum_{i in S} a_i: phi_i = a_i exactly
    a = np.arange(1.0, 8.0)
    add = np.array([sum(a[i] for i in range(7) if s >> i & 1) for s in range(128)])
    np.testing.assert_allclose(shapley(add, 7), a, rtol=1e-13)
    # the weights of one player's marginal contributions sum to one
    assert sum(comb(6, s) * (1 / (7 * comb(6, s))) for s in range(7)) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------------------
# The switch-offs
# ---------------------------------------------------------------------------------------------------------
def test_flat_tail_keeps_the_body_and_the_mean():
    cfg = _cfg(**{"simulation.draws": 200, "aco.beneficiaries": 2000})
    model = cohort_model(cfg)
    q = model.kernel.qtab
    flat = flat_tail_table(cfg, model)
    z = latent_grid()
    for j in range(3):
        changed = flat[j] != q[j]
        assert changed.any() and np.ptp(flat[j][changed]) == 0.0      # one constant above the splice
        assert z[changed].min() > 2.0                                  # only the top 1% of positives
    # the kernel's expected spending is unchanged: tail on minus tail off, on the same beneficiaries, is zero
    # within 4 Monte Carlo standard errors (before the fine-grid quadrature it was -0.13% of A&D, 12 se)
    idx = np.arange(200)
    macro = macro_paths(cfg, idx)
    flat_model = dataclasses.replace(model, kernel=model.kernel._replace(qtab=flat))
    a = _unit_kernel(cfg, model, idx, macro)[..., 1].sum(axis=1)       # (draws, population) ten-year spending
    b = _unit_kernel(cfg, flat_model, idx, macro)[..., 1].sum(axis=1)
    d = a - b
    assert (np.abs(d.mean(axis=0)) < 4 * d.std(axis=0, ddof=1) / np.sqrt(200) + 1e-12).all()
    assert (d.std(axis=0) > 0).all()                                   # the tail does move single draws


@pytest.fixture(scope="module")
def runs():
    return source_runs(_cfg())


def test_all_on_is_the_full_run_and_all_off_has_no_variance(runs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LeadsimWarning)
        full = leadsim.simulate(_cfg(), progress=False).cumulative_settlement.transpose("draw", "track")
    x = runs.cumulative_settlement
    np.testing.assert_allclose(x.isel(subset=-1).values, full.values, rtol=0, atol=1e-9 * float(abs(full).max()))
    none = x.isel(subset=0).values
    assert (none == none[0]).all()                 # nothing random left: every draw the same result


def test_switching_a_macro_source_off_is_a_run_with_its_sd_zero(runs):
    # the subset "every source but regional" equals a full run with trend.regional_sd = 0 on the same draws
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LeadsimWarning)
        off = leadsim.simulate(_cfg(**{"trend.regional_sd": 0.0}), progress=False)
    got = runs.cumulative_settlement.sel(subset=127 & ~_bit("regional")).values
    want = off.cumulative_settlement.transpose("draw", "track").values
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9 * float(np.abs(want).max()))


def test_shares_sum_to_one_and_values_to_the_total(runs):
    attr = attribute_runs(runs, n_boot=20)
    np.testing.assert_allclose(attr.share.sum("source"), 1.0, rtol=1e-12)
    np.testing.assert_allclose(attr.shapley.sum("source"), attr.value_all - attr.value_none, rtol=1e-10)
    # nothing random with every source off (the variance is 0 up to the rounding of the mean of equal numbers)
    assert (attr.value_none.sel(measure="variance") < 1e-15 * attr.value_all.sel(measure="variance")).all()
    x = runs.cumulative_settlement.isel(subset=-1)
    np.testing.assert_allclose(attr.value_all.sel(measure="variance"), x.var("draw", ddof=1), rtol=1e-12)
    assert float(attr.share.sel(source="care_management").max()) == 0.0    # cv = 0: a null player, exactly
    assert (attr.share_se > 0).sel(source=["beneficiary", "aco_level", "regional"]).all()


def _only(on: str, **over):
    cfg = degenerate(**{"simulation.draws": 60, "simulation.chunk_draws": 60, **over})
    return attribute_runs(source_runs(cfg), n_boot=0)


def test_known_split_only_national_trend():
    attr = _only("national", **{"trend.national_sd": 0.03})
    share = attr.share.sel(measure="variance")
    np.testing.assert_allclose(share.sel(source="national"), 1.0, atol=1e-9)
    assert float(abs(share.drop_sel(source="national")).max()) < 1e-9
    assert float(attr.value_all.sel(measure="variance").min()) > 0


def test_known_split_only_care_management_uncertainty():
    attr = _only("care_management", **{"aco.care_management_effect": [-0.03], "aco.care_management_cv": 0.5})
    np.testing.assert_allclose(attr.share.sel(source="care_management"), 1.0, atol=1e-9)


def test_stop_loss_is_refused_before_any_work():
    with pytest.raises(ConfigError, match=r"policy\.stop_loss"):
        source_runs(_cfg(**{"policy.stop_loss.enabled": True}))
    with pytest.raises(ConfigError, match=r"policy\.stop_loss"):
        source_runs(_cfg(**{"policy.preset": "mssp_enhanced"}))


@pytest.mark.parametrize("mode", ["tilted", "qmc"])
def test_weighted_or_batched_sampling_is_refused_before_any_work(mode, monkeypatch):
    """Shapley values over one set of draws assume plain ones: tilted weights and QMC replicates are refused by
    name before any kernel or pilot run, in the API and with exit code 2 in the CLI."""
    import leadsim.attribution as A

    def no_work(*args, **kwargs):  # pragma: no cover - reached only if the check came too late
        raise AssertionError("work started before the sampling check")

    monkeypatch.setattr(A, "prepare", no_work)
    with pytest.raises(ConfigError, match=r"simulation\.sampling = '" + mode + r"'.*only 'plain'"):
        source_runs(_cfg(**{"simulation.sampling": mode}))
    with pytest.raises(ConfigError, match=r"policy\.stop_loss.*\n.*simulation\.sampling") as err:
        source_runs(_cfg(**{"simulation.sampling": mode, "policy.stop_loss.enabled": True}))
    assert "plain" in str(err.value)
    assert main(["attribute", "configs/default.toml", "--draws", "30", "--set", f"simulation.sampling={mode}"]) == 2


def test_parameter_draws_are_refused_before_any_work(monkeypatch):
    """The attribution simulates the base parameters only: a config whose draws use fitted parameter sets would
    otherwise be attributed as if it had none (a number for another model), so it is refused by name."""
    import leadsim.attribution as A

    def no_work(*args, **kwargs):  # pragma: no cover - reached only if the check came too late
        raise AssertionError("work started before the parameter-draws check")

    monkeypatch.setattr(A, "prepare", no_work)
    cfg = _cfg(**{"simulation.parameter_draws": True, "parameter_sets": [{"aged_disabled": {"sigma": 1.4}}]})
    with pytest.raises(ConfigError, match=r"simulation\.parameter_draws = true: variance attribution"):
        source_runs(cfg)


# ---------------------------------------------------------------------------------------------------------
# Command line and report
# ---------------------------------------------------------------------------------------------------------
def test_cli_attribute_writes_dataset_and_report(tmp_path, capsys):
    out, html = tmp_path / "a.nc", tmp_path / "a.html"
    rc = main(["attribute", "configs/default.toml", "--draws", "30", "--set", "aco.beneficiaries=300",
               "--boot", "10", "-o", str(out), "--report", str(html)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "the ACO's own cost level" in text and "global Var" in text
    ds = xr.open_dataset(out).load()
    np.testing.assert_allclose(ds.share.sum("source"), 1.0, rtol=1e-12)
    page = html.read_text()
    assert 'data-figure="attribution"' in page and 'data-table="attribution"' in page
    assert main(["attribute", "configs/default.toml", "--draws", "30", "-o", str(out)]) == 2   # no --overwrite


@pytest.mark.slow
def test_bootstrap_se_matches_the_spread_across_seeds():
    # 12 independent seeds: the SD of the estimated shares (of the variance and of TVaR 99%) across seeds vs the
    # mean bootstrap se. The ratio should be near 1; an SD from 12 values is uncertain by about 21%, so
    # 0.45-1.7 is a band of about 2.5 of those on each side (seen: 0.62-1.19 at commit time, ~50 s)
    shares, ses = [], []
    for seed in range(12):
        attr = attribute_runs(source_runs(_cfg(**{"simulation.draws": 1000, "aco.beneficiaries": 1000,
                                                  "simulation.chunk_draws": 128, "simulation.seed": 1000 + seed})),
                              n_boot=200, seed=seed)
        sel = {"track": "global", "source": ["beneficiary", "national", "regional", "aco_level"]}
        shares.append(attr.share.sel(sel).values)
        ses.append(attr.share_se.sel(sel).values)
    ratio = np.std(shares, axis=0, ddof=1) / np.mean(ses, axis=0)
    assert ((ratio > 0.45) & (ratio < 1.7)).all(), ratio


def test_chart_and_report_section(runs):
    from matplotlib.figure import Figure

    from leadsim.analysis import plots, report
    from tests.test_plots_report import parse

    attr = attribute_runs(runs, n_boot=10)
    fig = plots.attribution_chart(attr)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    bars = [p.get_width() for p in fig.axes[0].patches]     # variance panel: one bar per source and track
    assert len(bars) == 7 * 2
    np.testing.assert_allclose(sorted(bars), sorted(100 * attr.share.sel(measure="variance").values.ravel()))
    host = Figure()
    assert plots.attribution_chart(attr, fig=host) is host
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LeadsimWarning)
        run = leadsim.simulate(_cfg(), progress=False)
    c = parse(report.report_html(run, attribution=attr))
    assert "attribution" in c.figures and "attribution" in c.tables and c.png_ok
    page = parse(report.attribution_html(attr))
    assert page.figures == ["attribution"] and page.tables == ["attribution"] and page.sections == ["config"]


@pytest.mark.ci_required  # .ci/run installs Debian's chromium
@pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium (/usr/bin/chromium)")
def test_attribution_page_renders_in_headless_chromium(runs, tmp_path):
    from leadsim.analysis import report

    path = tmp_path / "attr.html"
    report.write_html(report.attribution_html(attribute_runs(runs, n_boot=10)), path)
    dom = chromium_dump(path)
    assert 'data-loaded="1"' in dom and 'data-tables="1"' in dom
