"""simulation.sampling: plain, randomized QMC and tilted macro draws; weights, bit-identity, common random numbers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as st

import leadsim
from leadsim.engine import run_chunk, tilt_vector
from leadsim.model.drivers import keyed_shocks
from leadsim.model.sampling import (
    DEFENSIVE_SHARE,
    from_normals,
    qmc_shocks,
    shock_dim,
    tilt_from_pilot,
    tilted_shocks,
    to_normals,
)
from tests.helpers import assert_same_run, small_config

MODES = ("qmc", "tilted")


def _run(mode: str, **overrides) -> object:
    return leadsim.simulate(small_config(**{"simulation.sampling": mode, "simulation.draws": 48, **overrides}),
                            progress=False)


def test_plain_stores_unit_weights_and_no_sampling_keys():
    cfg = small_config()
    ds = leadsim.simulate(cfg, progress=False)
    assert ds["weight"].dims == ("draw",) and np.all(ds["weight"].values == 1.0)
    assert "replicate" not in ds and "sampling" not in ds.attrs
    assert "sampling" not in cfg.to_toml() and "tilt" not in cfg.to_toml()  # plain config_toml reads as before


@pytest.mark.parametrize("mode", MODES)
def test_bit_identical_across_chunks_and_threads(mode):
    a = _run(mode, **{"simulation.chunk_draws": 8, "simulation.threads": 1})
    b = _run(mode, **{"simulation.chunk_draws": 48, "simulation.threads": 2})
    c = _run(mode, **{"simulation.chunk_draws": 5})
    b.attrs["config_toml"] = c.attrs["config_toml"] = a.attrs["config_toml"]
    assert_same_run(a, b)
    assert_same_run(a, c)


@pytest.mark.parametrize("mode", MODES)
def test_chunk_is_a_pure_function_of_its_draws(mode):
    """A chunk computed alone equals the same draws inside a whole run (what dask workers rely on)."""
    cfg = small_config(**{"simulation.sampling": mode, "simulation.draws": 40})
    ds = leadsim.simulate(cfg, progress=False)
    res = run_chunk(cfg, leadsim.engine.prepare(cfg), np.arange(17, 29))
    for name in ("expenditure", "cumulative_settlement", "weight", "national_growth"):
        np.testing.assert_array_equal(res.arrays[name], ds[name].values[17:29])


def test_beneficiary_streams_untouched_in_every_mode():
    """With every systematic driver switched off the macro paths are the same whatever their variates, so
    spending must be identical in every mode: the beneficiary-level streams are the keyed ones of plain."""
    off = {"trend.national_sd": 0.0, "trend.regional_sd": 0.0, "trend.aco_level_sd": 0.0, "quality.sd": 0.0,
           "simulation.draws": 24}
    runs = {m: leadsim.simulate(small_config(**off, **{"simulation.sampling": m}), progress=False)
            for m in ("plain", *MODES)}
    for m in MODES:
        np.testing.assert_array_equal(runs[m]["expenditure"].values, runs["plain"]["expenditure"].values)
        np.testing.assert_array_equal(runs[m]["deaths"].values, runs["plain"]["deaths"].values)


def test_common_random_numbers_across_policies():
    """QMC draws do not depend on the policy; tilted ones do not either once the tilt is pinned."""
    base = {"simulation.draws": 24}
    qa = leadsim.simulate(small_config(**base, **{"simulation.sampling": "qmc"}), progress=False)
    qb = leadsim.simulate(small_config(**base, **{"simulation.sampling": "qmc", "policy.preset": "mssp_enhanced"}),
                          progress=False)
    np.testing.assert_array_equal(qa["expenditure"].values, qb["expenditure"].values)
    cfg = small_config(**base, **{"simulation.sampling": "tilted"})
    pinned = {**base, "simulation.sampling": "tilted", "simulation.tilt_shift": tilt_vector(cfg).tolist()}
    ta = leadsim.simulate(small_config(**pinned), progress=False)
    tb = leadsim.simulate(small_config(**pinned, **{"policy.preset": "mssp_enhanced"}), progress=False)
    np.testing.assert_array_equal(ta["expenditure"].values, tb["expenditure"].values)
    np.testing.assert_array_equal(ta["weight"].values, tb["weight"].values)
    # the pinned tilt is the one the pilot chose, so the pinned run is the unpinned run
    np.testing.assert_array_equal(ta["weight"].values,
                                  leadsim.simulate(cfg, progress=False)["weight"].values)


def test_qmc_layout_and_marginals():
    cfg = small_config(**{"simulation.sampling": "qmc", "simulation.qmc_replicates": 8})
    n = 8 * 256
    whole = qmc_shocks(cfg, np.arange(n))
    np.testing.assert_array_equal(whole.replicate, np.arange(n) % 8)
    part = qmc_shocks(cfg, np.arange(1000, 1013))  # any subset of draws gives the same variates
    np.testing.assert_array_equal(to_normals(part.shocks), to_normals(whole.shocks)[1000:1013])
    z = to_normals(whole.shocks)
    assert z.shape == (n, shock_dim(cfg.simulation.years))
    # 256 Sobol points per replicate: each coordinate's mean is far closer to 0 than i.i.d. sampling's 1/sqrt(n)
    rep_means = np.stack([z[whole.replicate == r].mean(axis=0) for r in range(8)])
    assert np.abs(rep_means).max() < 0.25 / np.sqrt(256)
    # and the marginals are standard normal (quality: uniform)
    assert st.kstest(z[:, 0], "norm").pvalue > 0.01
    assert st.kstest(whole.shocks.quality[:, 3], "uniform").pvalue > 0.01


def test_qmc_replicates_are_independent_randomizations():
    cfg = small_config(**{"simulation.sampling": "qmc", "simulation.qmc_replicates": 8})
    z = to_normals(qmc_shocks(cfg, np.arange(8 * 64)).shocks)
    means = np.stack([z[r::8].mean(axis=0) for r in range(8)])           # (replicates, D)
    corr = np.corrcoef(means[:, :20].T)
    assert np.abs(corr[np.triu_indices(20, 1)]).mean() < 0.45  # independent scramblings, not one point set
    other = small_config(**{"simulation.sampling": "qmc", "simulation.qmc_replicates": 8, "simulation.seed": 7})
    assert not np.array_equal(to_normals(qmc_shocks(other, np.arange(8)).shocks), z[:8])


def test_tilted_weights_are_likelihood_ratios():
    cfg = small_config()
    d = shock_dim(cfg.simulation.years)
    mu = np.zeros(d)
    mu[0], mu[25] = 1.5, -1.0
    n = 40_000
    s = tilted_shocks(cfg, np.arange(n), mu)
    e = to_normals(keyed_shocks(cfg, np.arange(n)))
    z = to_normals(s.shocks)
    shifted = np.abs(z[:, 0] - e[:, 0]) > 1e-9
    np.testing.assert_allclose(z[shifted] - e[shifted], np.broadcast_to(mu, (shifted.sum(), d)), atol=1e-9)
    assert abs(1 - shifted.mean() - DEFENSIVE_SHARE) < 4 * np.sqrt(0.16 / n)
    # the weight is phi(z) / (lambda phi(z) + (1 - lambda) phi(z - mu)), at most 1 / lambda, mean 1
    dens = np.exp(-0.5 * (z**2).sum(1))
    mix = DEFENSIVE_SHARE * dens + (1 - DEFENSIVE_SHARE) * np.exp(-0.5 * ((z - mu) ** 2).sum(1))
    np.testing.assert_allclose(s.weight, dens / mix, rtol=1e-9)
    assert s.weight.max() <= 1 / DEFENSIVE_SHARE
    assert abs(s.weight.mean() - 1.0) < 4 * s.weight.std() / np.sqrt(n)
    # weighted moments of the shifted coordinate are those of N(0, 1)
    m = np.average(z[:, 0], weights=s.weight)
    assert abs(m) < 0.03 and abs(np.average(z[:, 0] ** 2, weights=s.weight) - 1) < 0.05


def test_normals_round_trip_quality_through_ndtr():
    cfg = small_config()
    sh = keyed_shocks(cfg, np.arange(50))
    back = from_normals(to_normals(sh), cfg.simulation.years)
    np.testing.assert_allclose(back.quality, sh.quality, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(back.national, sh.national)


def test_pilot_aims_at_the_named_track():
    """The professional track's loss depends on the same drivers with other weights: its pilot picks another tilt,
    of the same length Phi^-1(tilt_level)."""
    base = {"simulation.sampling": "tilted", "simulation.pilot_draws": 128}
    g = tilt_vector(small_config(**base))
    p = tilt_vector(small_config(**base, **{"simulation.tilt_track": "professional", "simulation.tilt_level": 0.99}))
    np.testing.assert_allclose(np.linalg.norm(g), st.norm.ppf(0.995), rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(p), st.norm.ppf(0.99), rtol=1e-5)
    assert not np.allclose(g / np.linalg.norm(g), p / np.linalg.norm(p), atol=1e-3)


def test_tilt_from_pilot_recovers_the_loss_direction():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((400, 9))
    beta = np.array([3.0, 0, 0, -4.0, 0, 0, 0, 0, 0])
    loss = 10 + z @ beta + rng.standard_normal(400)
    mu = tilt_from_pilot(z, loss, 0.995)
    np.testing.assert_allclose(np.linalg.norm(mu), st.norm.ppf(0.995), rtol=1e-5)
    np.testing.assert_allclose(mu / np.linalg.norm(mu), beta / 5.0, atol=0.03)
    assert not tilt_from_pilot(z, np.full(400, 2.0), 0.99).any()   # no signal: no tilt


def test_tilted_and_qmc_run_attrs():
    ds = _run("tilted")
    assert ds.attrs["sampling"] == "tilted" and len(ds.attrs["tilt_shift"]) == shock_dim(10)
    assert ds["weight"].values.min() > 0 and ds["weight"].values.max() <= 1 / DEFENSIVE_SHARE
    q = _run("qmc")
    assert q.attrs["sampling"] == "qmc"
    np.testing.assert_array_equal(q["replicate"].values, q["draw"].values % 32)


def test_tilt_shift_length_is_checked():
    with pytest.raises(leadsim.ConfigError, match=r"tilt_shift needs 4 \* years \+ 1 = 41"):
        small_config(**{"simulation.tilt_shift": [0.1, 0.2]})
    with pytest.raises(leadsim.ConfigError, match="tilt_track = 'enhanced' is not a track of this policy"):
        small_config(**{"simulation.tilt_track": "enhanced"})
    with pytest.raises(leadsim.ConfigError, match=r"simulation\.sampling"):
        small_config(**{"simulation.sampling": "importance"})


@pytest.mark.slow
def test_weighted_engine_estimates_agree_with_plain_within_their_errors():
    """The same tail metrics from plain (4,000 draws), QMC (1,024) and tilted (1,024) runs of one ACO agree within
    3 combined standard errors; tilted tail errors beat plain's at equal draws, and at VaR 99.5% (the tilt's
    target) even plain's with four times the draws."""
    base = {"aco.beneficiaries": 2000, "simulation.chunk_draws": 128}
    runs = {m: leadsim.simulate(small_config(**base, **{"simulation.sampling": m, "simulation.draws": n}),
                                progress=False)
            for m, n in (("plain", 4000), ("qmc", 1024), ("tilted", 1024))}
    sums = {m: leadsim.summarize(ds, levels=[0.99, 0.995]).sel(track="global", period="horizon")
            for m, ds in runs.items()}
    p = sums["plain"]
    for m in ("qmc", "tilted"):
        s = sums[m]
        for name in ("VaR", "TVaR", "mean", "p_loss"):
            gap = np.abs(s[name] - p[name]).values
            tol = 3 * np.sqrt(s[f"{name}_se"] ** 2 + p[f"{name}_se"] ** 2).values
            assert np.all(gap <= tol), (m, name, gap, tol)
    same_n = np.sqrt(4000 / 1024)  # plain's errors at 1,024 draws
    assert np.all(sums["tilted"]["VaR_se"].values < p["VaR_se"].values * same_n)
    assert np.all(sums["tilted"]["TVaR_se"].values < p["TVaR_se"].values * same_n)
    assert float(sums["tilted"]["VaR_se"].sel(level=0.995)) < float(p["VaR_se"].sel(level=0.995))  # at 1/4 the draws


@pytest.mark.parametrize("mode", MODES)
def test_zarr_and_netcdf_keep_weights_and_replicates(tmp_path, mode):
    cfg = small_config(**{"simulation.sampling": mode, "simulation.draws": 24})
    mem = leadsim.simulate(cfg, progress=False)
    for name in ("r.zarr", "r.nc"):
        leadsim.run(cfg, tmp_path / name, progress=False)
        back = leadsim.open(tmp_path / name)
        np.testing.assert_array_equal(back["weight"].values, mem["weight"].values)
        assert ("replicate" in back) == (mode == "qmc")
        s, t = leadsim.summarize(back), leadsim.summarize(mem)
        np.testing.assert_array_equal(s["TVaR_se"].values, t["TVaR_se"].values)


def test_rotated_qmc_is_keyed_and_aims_its_first_coordinate():
    """qmc_rotate: bit-identical across chunkings; the first Sobol coordinate becomes the component of the
    normals along the pilot's loss direction (stored as the qmc_direction attr); the rotation keeps norms."""
    over = {"simulation.sampling": "qmc", "simulation.qmc_rotate": True, "simulation.pilot_draws": 128}
    a = _run("qmc", **over, **{"simulation.chunk_draws": 8})
    b = _run("qmc", **over, **{"simulation.chunk_draws": 48})
    b.attrs["config_toml"] = a.attrs["config_toml"]
    assert_same_run(a, b)
    cfg = small_config(**over)
    direction = np.asarray(a.attrs["qmc_direction"])
    plain_qmc = to_normals(qmc_shocks(cfg, np.arange(64)).shocks)
    rotated = to_normals(qmc_shocks(cfg, np.arange(64), direction).shocks)
    np.testing.assert_allclose(rotated @ (direction / np.linalg.norm(direction)), plain_qmc[:, 0], atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(rotated, axis=1), np.linalg.norm(plain_qmc, axis=1), rtol=1e-9)


def test_common_random_numbers_flag_needs_the_same_sampling():
    """Same seed and draws but another sampling mode: the systematic draws differ, so the comparison must not
    claim common random numbers; two QMC runs of different policies do share them."""
    from leadsim.analysis.risk import paired_difference

    plain, q = _run("plain"), _run("qmc")
    q2 = _run("qmc", **{"policy.preset": "mssp_enhanced"})
    assert paired_difference(plain, q).attrs["common_random_numbers"] == 0
    assert paired_difference(q, q2.sel(track="enhanced")).attrs["common_random_numbers"] == 1
    assert paired_difference(plain, plain).attrs["common_random_numbers"] == 1
