"""``simulation.parameter_draws``: each draw simulated with one keyed ``[[parameter_sets]]`` entry (issue 12), and
the parameter-risk share of the variance (law of total variance between/within sets)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import leadsim
from leadsim.analysis.parameter_risk import parameter_risk, variance_split
from leadsim.cli import main, summary_text
from leadsim.config import ConfigError
from leadsim.model.parameter_sets import parameter_set_configs, parameter_set_index
from tests.helpers import small_config

SETS = [{"aged_disabled": {"sigma": 1.2, "mean_annual_cost": 13000.0, "rho": 0.6}},
        {"aged_disabled": {"sigma": 1.8, "tail_alpha": 3.0}},
        {"esrd": {"rho": 0.6, "mortality": 0.2}, "high_needs": {"death_multiplier": 2.0}}]


def _draws_cfg(**overrides):
    return small_config(**{"simulation.draws": 24, "simulation.chunk_draws": 16, "simulation.parameter_draws": True,
                           "parameter_sets": SETS, **overrides})


def test_parameter_draws_without_sets_is_a_config_error(tmp_path, capsys):
    """Parameter draws need fitted sets: a one-line error naming the key, exit code 2 in the CLI, no file."""
    with pytest.raises(ConfigError, match=r"^simulation\.parameter_draws = true needs fitted parameter sets"):
        leadsim.load_config(overrides={"simulation.parameter_draws": True})
    out = tmp_path / "r.nc"
    assert main(["run", "configs/default.toml", "-o", str(out), "--set", "simulation.parameter_draws=true"]) == 2
    err = capsys.readouterr().err
    assert "simulation.parameter_draws = true needs fitted parameter sets" in err and not out.exists()
    with pytest.raises(ConfigError, match=r"parameter_sets\.0\.aged_disabled\.tail_alpha = 1\.5"):
        leadsim.load_config(overrides={"parameter_sets": [{"aged_disabled": {"tail_alpha": 1.5}}]})


def test_default_config_records_no_parameter_keys():
    """Off by default, and then absent from the recorded config (the output digest is unchanged:
    tests/test_output_digest.py)."""
    cfg = leadsim.load_config()
    assert not cfg.simulation.parameter_draws and cfg.parameter_sets == []
    assert "parameter" not in cfg.to_toml()
    on = _draws_cfg()
    again = leadsim.load_config(on.to_dict())
    assert again == on and len(again.parameter_sets) == 3


def test_index_is_keyed_by_seed_and_draw_and_uniform():
    """The set of a draw depends on (seed, draw) only, not on which other draws are asked for; the sets are
    equally likely (chi-square over 60,000 draws) and another seed gives another assignment."""
    cfg = _draws_cfg()
    draws = np.arange(60_000)
    idx = parameter_set_index(cfg, draws)
    assert idx.min() == 0 and idx.max() == 2
    assert np.array_equal(idx[[7, 3, 59_999]], parameter_set_index(cfg, np.array([7, 3, 59_999])))
    counts = np.bincount(idx, minlength=3)
    assert stats.chisquare(counts).pvalue > 1e-3
    other = parameter_set_index(_draws_cfg(**{"simulation.seed": 99}), draws)
    assert 0.25 < (other == idx).mean() < 0.42  # independent assignments agree a third of the time


def test_parameter_draws_bit_identical_across_chunks_and_equal_to_runs_of_each_set():
    """Chunk size never changes a result with parameter draws on, and draw d is exactly draw d of a run of its
    set's config alone (same keyed shocks: common random numbers with the fitted values)."""
    cfg = _draws_cfg()
    ds = leadsim.simulate(cfg, progress=False)
    other = leadsim.simulate(_draws_cfg(**{"simulation.chunk_draws": 5}), progress=False)
    for name in ds.variables:
        assert np.array_equal(ds[name].values, other[name].values), name
    sets = ds["parameter_set"].values
    assert ds["parameter_set"].dims == ("draw",) and ds["parameter_set"].attrs["units"] == "1"
    assert set(sets) == {0, 1, 2}
    assert np.array_equal(sets, parameter_set_index(cfg, np.arange(24)))
    for k, set_cfg in enumerate(parameter_set_configs(cfg)):
        alone = leadsim.simulate(set_cfg, progress=False)
        sel = sets == k
        for name in alone.data_vars:
            if "draw" in alone[name].dims:
                assert np.array_equal(ds[name].values[sel], alone[name].values[sel], equal_nan=True), (k, name)
    # the sets matter: no set's draws are those of the config's own population values
    plain = leadsim.simulate(leadsim.load_config(cfg, overrides={"simulation.parameter_draws": False}), progress=False)
    for k in range(3):
        sel = sets == k
        assert not np.array_equal(ds["expenditure"].values[sel], plain["expenditure"].values[sel])
    assert np.array_equal(ds["national_growth"].values, plain["national_growth"].values)  # same macro shocks


def test_variance_split_closed_form():
    """Synthetic mixture with known parts: set means a_k, within-set sd 1, sets equally likely. The estimated
    share is within 4 jackknife SEs of ``Var(a) / (Var(a) + 1)`` (population variance of the a_k), the SE is
    near the spread over replications, and with equal means the share is 0 within its SE."""
    rng = np.random.default_rng(5)
    a = np.array([0.0, 0.5, 1.0, 2.0])
    truth = a.var() / (a.var() + 1.0)
    shares, ses = [], []
    for _ in range(40):
        g = rng.integers(0, 4, 4000)
        y = a[g] + rng.normal(size=g.size)
        split = variance_split(y, g)
        shares.append(split.share[0])
        ses.append(split.share_se[0])
    shares, ses = np.array(shares), np.array(ses)
    assert abs(shares.mean() - truth) < 4 * shares.std(ddof=1) / np.sqrt(shares.size)
    assert all(abs(s - truth) < 4 * se for s, se in zip(shares, ses, strict=True))
    assert 0.7 < ses.mean() / shares.std(ddof=1) < 1.4
    g = rng.integers(0, 4, 4000)
    flat = variance_split(rng.normal(size=g.size), g)
    assert flat.share[0] < 3 * flat.share_se[0] and flat.n_sets == 4


@pytest.mark.slow
def test_between_set_share_of_a_run_near_its_closed_form():
    """Two sets far apart (Aged & Disabled mortality 4% and 4.8%): the share of the ten-year deaths' variance that
    the run attributes to the sets is near the law-of-total-variance value built from separate runs of each set
    with another seed, ``(m1 - m2)^2 / 4 / ((m1 - m2)^2 / 4 + (v1 + v2) / 2)`` (sets equally likely), within 4
    combined SEs (jackknife for the run; delta method for the closed form)."""
    sets = [{"aged_disabled": {"mortality": 0.04}}, {"aged_disabled": {"mortality": 0.048}}]
    cfg = small_config(**{"simulation.draws": 300, "simulation.chunk_draws": 100, "aco.beneficiaries": 1000,
                          "simulation.parameter_draws": True, "parameter_sets": sets})
    ds = leadsim.simulate(cfg, progress=False)
    split = variance_split(ds["deaths"].sum(("year", "population")).values, ds["parameter_set"].values)
    moments = []
    for set_cfg in parameter_set_configs(cfg):
        alone = leadsim.simulate(leadsim.load_config(set_cfg, overrides={"simulation.seed": 4242}), progress=False)
        y = alone["deaths"].sum(("year", "population")).values
        moments.append((y.mean(), y.var(ddof=1), y.size))
    (m1, v1, n1), (m2, v2, n2) = moments
    b, w = (m1 - m2) ** 2 / 4, (v1 + v2) / 2
    truth = b / (b + w)
    # delta method: d truth / d b = w / (b + w)^2, d truth / d w = -b / (b + w)^2
    var_b = (m1 - m2) ** 2 / 4 * (v1 / n1 + v2 / n2)
    var_w = (v1**2 / (n1 - 1) + v2**2 / (n2 - 1)) / 2
    se_truth = np.sqrt(w**2 * var_b + b**2 * var_w) / (b + w) ** 2
    assert 0.5 < truth < 0.95  # the sets differ a lot, and process risk is still there
    print(f"share {split.share[0]:.3f} +- {split.share_se[0]:.3f}, closed form {truth:.3f} +- {se_truth:.3f}")
    assert abs(split.share[0] - truth) < 4 * np.hypot(split.share_se[0], se_truth), (split.share, truth)


def test_summary_states_the_parameter_risk_share():
    """The run summary gives the parameter-risk share of the ten-year variance per track, with its SE; the
    function behind it reads the dataset."""
    ds = leadsim.simulate(_draws_cfg(), progress=False)
    split = parameter_risk(ds)
    assert split is not None and split.share.shape == (ds.sizes["track"],) and split.n_sets == 3
    assert ((split.share >= 0) & (split.share <= 1)).all() and (split.share_se > 0).all()
    text = summary_text(ds)
    assert "Parameter risk, % of 10-yr var." in text and "3 parameter sets" in text
    assert f"{split.share[0]:.1%} ± {split.share_se[0]:.1%}" in text
    assert parameter_risk(leadsim.simulate(small_config(), progress=False)) is None
    assert "Parameter risk" not in summary_text(leadsim.simulate(small_config(), progress=False))


def test_trajectories_use_the_draws_parameter_set():
    """With parameter draws, one draw's beneficiary panel (``leadsim.trajectories``, behind ``synth-panel``) is
    simulated with that draw's set: it sums to the run's expenditure of the draw, for draws of different sets."""
    cfg = _draws_cfg(**{"simulation.draws": 6})
    ds = leadsim.simulate(cfg, progress=False)
    sets = ds["parameter_set"].values
    for d in (int(np.flatnonzero(sets == sets[0])[0]), int(np.flatnonzero(sets != sets[0])[0])):
        panel = leadsim.trajectories(cfg, draw=d)
        pop = panel.population.values
        for name in ("aged_disabled", "high_needs"):
            spent = np.where(pop == name, panel.spending.values, 0.0).sum(axis=0)
            np.testing.assert_allclose(spent, ds["expenditure"].sel(population=name).values[d], rtol=1e-12)


def test_weighted_draws_get_no_share():
    """A run whose draws carry unequal weights (importance sampling) gets no parameter-risk share: the split
    assumes equally weighted draws; the summary says so instead of printing a wrong number."""
    ds = leadsim.simulate(_draws_cfg(), progress=False)
    assert "weight" not in ds or np.all(ds["weight"].values == 1.0)
    weighted = ds.assign(weight=("draw", np.linspace(0.5, 1.5, ds.sizes["draw"])))
    with pytest.raises(ValueError, match="weighted"):
        parameter_risk(weighted)
    text = summary_text(weighted)
    assert "Parameter risk, %" not in text and "not given for weighted draws" in text

