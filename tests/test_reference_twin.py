"""The numba kernel against its numpy reference twin (:mod:`leadsim.testing.reference`), and the RNG twins.

Both sides draw the same keyed random numbers and apply the same rules, so counts (member-months, deaths,
entrants, outliers) must agree exactly and money fields to rounding: the kernel sums slot by slot, numpy
sums pairwise, and libm may differ in the last bit, so money is compared at ``rtol = 1e-12``.
"""

from __future__ import annotations

import functools

import numba as nb
import numpy as np
import pytest

import leadsim
from leadsim.model import _kernel
from leadsim.model._kernel import key, normals, uniforms, word
from leadsim.model.cohort import CohortModel, cohort_model, realised_means, run_cohort
from leadsim.model.drivers import macro_paths
from leadsim.model.rng import key_np, normals_np, uniforms_np, word_np
from leadsim.testing.reference import cohort_reference, floor_reference, reference_chunk

RTOL = 1e-12
COUNT_FIELDS = ("member_months", "deaths", "entrants", "outliers")
MONEY_FIELDS = ("expenditure", "stop_loss_payout", "risk_weighted_months")
DRAWS = np.array([0, 1, 2, 3, 123_456], dtype=np.int64)

CASES = {
    "default": {},
    "stop_loss": {"policy.preset": "lead_py2027", "policy.stop_loss.enabled": True,
                  "policy.stop_loss.attachments": [40_000.0, 90_000.0, 200_000.0]},
    "truncation": {"policy.preset": "mssp_enhanced"},
    "growth_up": {"aco.growth": 0.05},
    "growth_down": {"aco.growth": -0.05},
    "transitions": {"population.aged_disabled.high_needs_rate": 0.2, "population.aged_disabled.esrd_rate": 0.1,
                    "aco.mix.aged_disabled": 0.5, "aco.mix.esrd": 0.2, "aco.mix.high_needs": 0.3,
                    "aco.care_management_effect": [-0.01, -0.03], "population.high_needs.zero_share": 0.1},
}


@functools.cache
def _setup(case: str) -> tuple[CohortModel, np.ndarray, np.ndarray]:
    cfg = leadsim.load_config(overrides={"aco.beneficiaries": 300, **CASES[case]})
    model = cohort_model(cfg)
    mean, scale = realised_means(model, macro_paths(cfg, DRAWS))
    return model, mean, scale


SLOW_CASES = ("truncation", "growth_down", "transitions")  # each case builds a CohortModel (~2 s)


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW_CASES else c for c in CASES])
def test_kernel_matches_reference(case):
    model, mean, scale = _setup(case)
    kern = run_cohort(model, DRAWS, mean, scale)
    ref = reference_chunk(model.kernel, DRAWS, mean, scale)
    assert kern.shape == ref.shape == (DRAWS.size, 10, 3, len(_kernel.OUT_FIELDS))
    for name in COUNT_FIELDS:
        i = _kernel.OUT_FIELDS.index(name)
        np.testing.assert_array_equal(kern[..., i], ref[..., i], err_msg=name)
    for name in MONEY_FIELDS:
        i = _kernel.OUT_FIELDS.index(name)
        np.testing.assert_allclose(kern[..., i], ref[..., i], rtol=RTOL, atol=0, err_msg=name)
    f = {name: kern[..., _kernel.OUT_FIELDS.index(name)] for name in _kernel.OUT_FIELDS}
    # the case exercises what it is meant to
    assert f["deaths"].sum() > 0 and f["entrants"].sum() > 0 and f["expenditure"].min() >= 0
    if case in ("stop_loss", "truncation"):
        assert f["stop_loss_payout"].sum() > 0
        assert (f["stop_loss_payout"] <= f["expenditure"]).all()
    else:
        assert f["stop_loss_payout"].sum() == 0.0
    # aligned count at the start of each year (12 months for survivors, 6 for decedents and entrants)
    aligned = (f["member_months"] + 6 * f["deaths"] + 6 * f["entrants"]).sum(axis=2) / 12
    np.testing.assert_array_equal(aligned, np.broadcast_to(model.kernel.target, aligned.shape))
    if case == "growth_up":
        assert (np.diff(model.kernel.target) > 0).all()
    if case == "growth_down":
        assert (np.diff(model.kernel.target) < 0).all()
    if case == "transitions":
        assert (f["member_months"][:, :, 1:] > 0).all()


@pytest.mark.parametrize("case", ["default", pytest.param("transitions", marks=pytest.mark.slow)])
def test_panel_matches_reference(case):
    """The kernel's recorded slot-level panel (what ``trajectories`` shows) equals the twin's."""
    model, mean, scale = _setup(case)
    d = 2
    n_years, n_slots = model.kernel.target.shape[0], model.n_slots
    out = np.zeros((n_years, 3, len(_kernel.OUT_FIELDS)))
    rec_pop = np.full((n_slots, n_years), -1, dtype=np.int8)
    rec_mm = np.zeros((n_slots, n_years))
    rec_spend = np.zeros((n_slots, n_years))
    rec_died = np.zeros((n_slots, n_years), dtype=np.bool_)
    _kernel.simulate_draw(model.kernel, np.int64(DRAWS[d]), mean[d], scale[d], out, True, rec_pop, rec_mm,
                          rec_spend, rec_died)
    ref_out, panel = cohort_reference(model.kernel, int(DRAWS[d]), mean[d], scale[d], return_panel=True)
    np.testing.assert_array_equal(rec_pop, panel.population)
    np.testing.assert_array_equal(rec_mm, panel.member_months)
    np.testing.assert_array_equal(rec_died, panel.died)
    np.testing.assert_allclose(rec_spend, panel.spending, rtol=1e-14, atol=0)
    np.testing.assert_allclose(out, ref_out, rtol=RTOL, atol=0)
    # entrants fill the lowest vacant slots: with a stable or shrinking count no slot beyond target[0] is used
    if case != "growth_up":
        assert (panel.population[model.kernel.target[0]:] == -1).all()


# ---------------------------------------------------------------------------------------------------------
# RNG twins
# ---------------------------------------------------------------------------------------------------------
@nb.njit
def _numba_streams(seed, draws, slots, counters):
    n = draws.shape[0]
    w = np.empty(n, dtype=np.uint64)
    k = np.empty(n, dtype=np.uint64)
    u = np.empty((n, 2))
    z = np.empty((n, 2))
    for i in range(n):
        k[i] = key(seed, np.uint64(draws[i]), np.uint64(slots[i]))
        w[i] = word(k[i], np.uint64(counters[i]))
        u[i, 0], u[i, 1] = uniforms(w[i])
        z[i, 0], z[i, 1] = normals(w[i])
    return k, w, u, z


def test_rng_numba_equals_numpy_twins():
    """Keys, words and uniforms are bit-identical; Box-Muller normals agree to libm rounding (1e-14)."""
    rs = np.random.default_rng(7)
    n = 20_000
    draws = rs.integers(0, 2**40, n, dtype=np.uint64)
    slots = rs.integers(0, 2**63, n, dtype=np.uint64)
    slots[:3] = [0, 1, 0xFFFFFFFFFFFFFFFF]  # first slots and the macro slot
    counters = rs.integers(0, 16 * 31, n, dtype=np.uint64)
    seed = np.uint64(20270101)
    k, w, u, z = _numba_streams(seed, draws, slots, counters)
    k_np = key_np(int(seed), draws, slots)
    w_np = word_np(k_np, counters)
    np.testing.assert_array_equal(k, k_np)
    np.testing.assert_array_equal(w, w_np)
    u1, u2 = uniforms_np(w_np)
    np.testing.assert_array_equal(u[:, 0], u1)
    np.testing.assert_array_equal(u[:, 1], u2)
    assert (u1 > 0).all() and (u1 <= 1).all() and (u2 >= 0).all() and (u2 < 1).all()
    z1, z2 = normals_np(w_np)
    np.testing.assert_allclose(z[:, 0], z1, rtol=0, atol=1e-14)
    np.testing.assert_allclose(z[:, 1], z2, rtol=0, atol=1e-14)
    # and the normals are standard normal: mean and sd within 4 standard errors
    zz = np.concatenate([z1, z2])
    assert abs(zz.mean()) < 4 / np.sqrt(zz.size)
    assert abs(zz.std() - 1.0) < 4 * np.sqrt(0.5 / zz.size)


def test_floor_kernel_matches_reference():
    draws = np.array([0, 5, 77], dtype=np.int64)
    out = np.zeros(draws.size)
    _kernel.floor_chunk(np.uint64(11), draws, 200, 10, 1.2, out)
    ref = floor_reference(11, draws, 200, 10, 1.2)
    np.testing.assert_allclose(out, ref, rtol=RTOL)
    # E[exp(1.2 eps)] = exp(0.72) per slot-year: a loose sanity check (2,000 terms, CV ~ 0.02 each draw)
    np.testing.assert_allclose(out / 2000, np.exp(0.72), rtol=0.15)
