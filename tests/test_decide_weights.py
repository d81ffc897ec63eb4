"""leadsim.decide under tilted and QMC sampling: weighted metrics, design-based standard errors, one tilt for every
option (common random numbers), break-even roots, the run summary's break-even, and plain results unchanged."""

from __future__ import annotations

import numpy as np
import pytest

import leadsim
from leadsim.analysis import risk
from leadsim.decide import build_options, decide, run_break_even
from leadsim.decide import metrics as M
from leadsim.decide.breakeven import solve
from leadsim.decide.evaluate import Evaluator, kernel_pass
from leadsim.engine import prepare
from tests.test_decide import sim
from tests.test_decide import small as _small


def small(**extra):
    """test_decide's small config with a shorter pilot (tilted sampling)."""
    return _small(**{"simulation.pilot_draws": 128, **extra})


@pytest.fixture(scope="module")
def tilted():
    return decide(small(**{"simulation.sampling": "tilted"}), comparators=["mssp_enhanced"], progress=False)


# ---- the metrics: integer weights are repeated draws ---------------------------------------------------------------
X = np.array([-10.0, -4.0, -1.0, 0.0, 2.0, 3.0, 5.0, 6.0, 8.0, 9.0])
W = np.array([1, 2, 3, 4, 1, 2, 3, 4, 1, 2], dtype=float)


def test_integer_weights_give_the_metrics_of_the_repeated_draws():
    """A draw of weight k counts as k copies: every decide metric of the weighted draws is the plain metric of the
    repeated sample (order statistics exactly, sums to rounding); hand-worked: mean 52/23, P(loss) 6/23."""
    x = np.column_stack([X, X[::-1] * 2.0])
    rep = np.repeat(x, W.astype(int), axis=0)
    d = risk.Design(W, None)
    for metric, p in (("mean", None), ("p_loss", None), ("prob", None), ("VaR", 0.9), ("VaR", 0.75),
                      ("TVaR", 0.9), ("TVaR", 0.8), ("VaR", 0.5)):
        v = (x < 0).astype(float) if metric == "prob" else x
        vr = (rep < 0).astype(float) if metric == "prob" else rep
        a, b = M.estimate(v, metric, p, design=d), M.estimate(vr, metric, p)
        if metric == "VaR":
            np.testing.assert_array_equal(a.value, b.value)
        else:
            np.testing.assert_allclose(a.value, b.value, rtol=1e-13, atol=1e-13)
    assert M.estimate(X, "mean", design=d).value == pytest.approx(52 / 23, rel=1e-14)
    assert M.estimate(X, "p_loss", design=d).value == pytest.approx(6 / 23, rel=1e-14)
    crit = M.criterion(M.estimate(x, "mean", design=d), M.estimate(x, "TVaR", 0.9, design=d), 0.25)
    crit_rep = M.criterion(M.estimate(rep, "mean"), M.estimate(rep, "TVaR", 0.9), 0.25)
    np.testing.assert_allclose(crit.value, crit_rep.value, rtol=1e-13)
    diff, _ = M.paired(M.estimate(x, "mean", design=d), M.estimate(x, "mean", design=d).column(0))
    np.testing.assert_allclose(diff, [0.0, rep[:, 1].mean() - rep[:, 0].mean()], atol=1e-13)


def test_weighted_standard_errors_by_hand():
    """The SE of a weighted mean is sqrt(n/(n-1) sum_i t_i^2), t_i = w_i (x_i - mean_w) / sum w (independent
    draws, weights as given); a paired difference takes the same formula of the influence differences, and
    QMC-style batches sum the t_i per batch first."""
    d = risk.Design(W, None)
    m = 52 / 23
    t = W * (X - m) / 23
    se = np.sqrt(10 / 9 * np.sum((t - t.mean()) ** 2))
    assert float(M.estimate(X, "mean", design=d).se) == pytest.approx(se, rel=1e-12)
    y = 3.0 * X + np.arange(10.0)
    a, b = M.estimate(y, "mean", design=d), M.estimate(X, "mean", design=d)
    my = float(np.sum(W * y) / 23)
    td = W * ((y - my) - (X - m)) / 23
    assert float(M.paired(a, b)[1]) == pytest.approx(np.sqrt(10 / 9 * np.sum((td - td.mean()) ** 2)), rel=1e-12)
    batch = np.arange(10) % 2
    sb = np.array([t[batch == 0].sum(), t[batch == 1].sum()])
    assert float(M.estimate(X, "mean", design=risk.Design(W, batch)).se) == pytest.approx(
        np.sqrt(2 * np.sum((sb - sb.mean()) ** 2)), rel=1e-12)
    with pytest.raises(ValueError, match="same draws"):
        M.paired(a, M.estimate(X, "mean", design=risk.Design(W[::-1], None)))


def test_equal_weights_keep_the_plain_numbers_bit_for_bit():
    x = np.random.default_rng(3).standard_normal((500, 3))
    for design in (None, risk.Design()):
        for metric, p in (("mean", None), ("p_loss", None), ("TVaR", 0.99), ("VaR", 0.995)):
            a, b = M.estimate(x, metric, p, design=design), M.estimate(x, metric, p)
            np.testing.assert_array_equal(a.value, b.value)
            np.testing.assert_array_equal(a.se, b.se)
    # explicit unit weights take the weighted path: the same figures to rounding
    ones = risk.Design(np.ones(500), None)
    for metric, p in (("mean", None), ("TVaR", 0.99)):
        a, b = M.estimate(x, metric, p, design=ones), M.estimate(x, metric, p)
        np.testing.assert_allclose(a.value, b.value, rtol=1e-12)
        np.testing.assert_allclose(a.se, b.se, rtol=1e-9)


def test_break_even_roots_of_weighted_draws_are_those_of_the_repeated_draws():
    """cum_i(delta) = a_i - b_i delta: the mean root is sum w a / sum w b, the P(loss) = 50% root the weighted
    median of a_i / b_i; both equal the plain roots of the repeated draws."""
    a = X + 1.0
    b = np.linspace(20.0, 60.0, 10)
    rep_a, rep_b = np.repeat(a, W.astype(int)), np.repeat(b, W.astype(int))
    weighted = solve(lambda d: a - b * d, 10, design=risk.Design(W, None))
    plain = solve(lambda d: rep_a - rep_b * d, 23)
    assert weighted.value[0] == pytest.approx(np.sum(W * a) / np.sum(W * b), abs=1e-8)
    np.testing.assert_allclose(weighted.value, plain.value, atol=2e-9)
    roots = np.sort(a / b)
    w_sorted = W[np.argsort(a / b)]
    assert weighted.value[1] == pytest.approx(roots[np.searchsorted(np.cumsum(w_sorted) / 23, 0.5)], abs=2e-9)
    assert np.all(np.isfinite(weighted.se)) and np.all(weighted.se > 0)


# ---- a tilted decision -----------------------------------------------------------------------------------------------
def test_every_pass_of_a_tilted_decision_sees_the_same_macro_draws():
    """One tilt (the config's pilot) for every variant: the kernel passes of LEAD, LEAD with stop-loss and MSSP,
    and an extra pass at another spending level, draw the same macro paths and weights; each variant's own pilot
    would not (so the shared tilt is what keeps common random numbers)."""
    cfg = small(**{"simulation.sampling": "tilted"})
    variants, options = build_options(cfg, comparators=["mssp_enhanced"])
    own = prepare(cfg).tilt
    assert not np.allclose(prepare(variants["mssp"].cfg).tilt, own)  # its own pilot aims at its own tail
    ev = Evaluator(variants, options, tilt=own)
    pools = list(ev.pools.values())
    assert len(pools) == 3
    first = pools[0].base
    assert first.weight is not None and np.ptp(first.weight) > 0
    np.testing.assert_array_equal(ev.design.weight, first.weight)
    for pool in pools:
        np.testing.assert_array_equal(pool.inputs.tilt, own)
        np.testing.assert_array_equal(pool.base.weight, first.weight)
        for f in ("national_growth", "regional_growth", "aco_growth", "quality"):
            np.testing.assert_array_equal(getattr(pool.base.macro, f), getattr(first.macro, f))
    extra = kernel_pass(pools[1].cfg, pools[1].inputs, 1.03)
    np.testing.assert_array_equal(extra.macro.national_growth, first.macro.national_growth)
    np.testing.assert_array_equal(extra.weight, first.weight)


def test_tilted_decision_stores_its_design_and_uses_it_everywhere(tilted):
    d = tilted
    assert d.attrs["sampling"] == "tilted" and "replicate" not in d
    design = risk.sample_design(d)
    assert design.weight is not None
    cfg = small(**{"simulation.sampling": "tilted"})
    run = sim(cfg)  # a run of the same config draws the same tilted draws with the same weights
    np.testing.assert_array_equal(d.weight.values, run.weight.values)
    np.testing.assert_array_equal(d.cumulative_settlement.sel(option="lead_global").values,
                                  run.cumulative_settlement.sel(track="global").values)
    # the MSSP comparator equals a run of MSSP pinned to the decision's tilt, bit for bit
    mssp = leadsim.load_config(cfg, overrides={"policy.preset": "mssp_enhanced",
                                               "simulation.tilt_shift": [float(v) for v in prepare(cfg).tilt]})
    np.testing.assert_array_equal(d.cumulative_settlement.sel(option="mssp_enhanced").values,
                                  sim(mssp).cumulative_settlement.sel(track="enhanced").values)
    cum = d.cumulative_settlement.transpose("draw", "option").values
    w = d.weight.values / d.weight.values.sum()
    np.testing.assert_allclose(d["mean"].values, w @ cum, rtol=1e-12)
    np.testing.assert_allclose(d.p_loss.values, w @ (cum < 0), rtol=1e-12)
    tm = risk.tail_metrics(cum, [0.99, 0.995], design)
    np.testing.assert_allclose(d.TVaR.transpose("level", "option").values, tm.tvar, rtol=1e-12)
    np.testing.assert_allclose(d.TVaR_se.transpose("level", "option").values, tm.tvar_se, rtol=1e-12)
    need = d.reserve_need.transpose("draw", "option").values
    np.testing.assert_array_equal(d.reserve.transpose("level", "option").values,
                                  risk.tail_metrics(-need, [0.99, 0.995], design).var)
    # the paired difference's SE is design_se of the influence differences
    i_g = risk.influence(cum, "mean", design=design)
    base = list(d.option.values).index(d.attrs["baseline"])
    np.testing.assert_allclose(d.diff_mean_se.values, risk.design_se(i_g - i_g[:, [base]], design), rtol=1e-12)
    # and the run summary's break-even is decide's on the same (weighted) draws
    effects, exact, used = run_break_even(run)
    assert exact and used == 60
    np.testing.assert_allclose(effects["global"][0], d.break_even_effect.sel(option="lead_global").values,
                               rtol=0, atol=2e-6)
    np.testing.assert_allclose(effects["global"][1], d.break_even_effect_se.sel(option="lead_global").values,
                               rtol=1e-3)
    plain_roots = run_break_even(run.drop_vars("weight"))[0]["global"][0]
    assert not np.allclose(plain_roots, effects["global"][0], atol=1e-4)  # the weights change the answer


def test_qmc_decision_batches_its_standard_errors_by_replicate():
    d = decide(small(**{"simulation.sampling": "qmc", "simulation.qmc_replicates": 8, "simulation.draws": 64}),
               comparators=[], stop_loss=False, break_even=False, progress=False)
    assert d.attrs["sampling"] == "qmc"
    np.testing.assert_array_equal(d.replicate.values, np.arange(64) % 8)
    np.testing.assert_array_equal(d.weight.values, 1.0)
    cum = d.cumulative_settlement.transpose("draw", "option").values
    design = risk.Design(None, d.replicate.values)
    np.testing.assert_allclose(d.mean_se.values, risk.design_se(cum - cum.mean(axis=0), design), rtol=1e-12)
    np.testing.assert_array_equal(d["mean"].values, cum.mean(axis=0))


@pytest.mark.slow
def test_tilted_and_plain_decisions_agree_within_their_standard_errors():
    """The same decision sampled plainly and tilted (independent draws: the tilted draws are shifted): mean,
    P(loss), TVaR 99% and both break-even effects of the LEAD tracks agree within 3.5 combined SEs (measured: z
    <= 1.3), and the tilted TVaR 99% error of the track the tilt aims at is well below the plain one (measured 3.4x;
    with 1,000 beneficiaries the beneficiary-level noise, which tilting leaves alone, dominates the tail)."""
    over = {"simulation.draws": 1200, "aco.beneficiaries": 5000, "simulation.chunk_draws": 200,
            "simulation.pilot_draws": 256}
    plain = decide(small(**over), comparators=[], stop_loss=False, progress=False)
    tilt = decide(small(**over, **{"simulation.sampling": "tilted"}), comparators=[], stop_loss=False,
                  progress=False)
    opts = ["lead_global", "lead_professional"]
    for name in ("mean", "p_loss", "TVaR", "break_even_effect"):
        a, b = plain[name].sel(option=opts), tilt[name].sel(option=opts)
        if name == "TVaR":
            a, b = a.sel(level=0.99), b.sel(level=0.99)
        sa = plain[f"{name}_se"].sel(option=opts)
        sb = tilt[f"{name}_se"].sel(option=opts)
        if name == "TVaR":
            sa, sb = sa.sel(level=0.99), sb.sel(level=0.99)
        z = np.abs((a - b).values) / np.sqrt(sa.values**2 + sb.values**2)
        assert np.all(z < 3.5), (name, z)
    g = dict(option="lead_global", level=0.99)
    assert float(tilt.TVaR_se.sel(**g)) < 0.6 * float(plain.TVaR_se.sel(**g))


def test_decision_text_and_page_say_how_the_draws_were_sampled(tilted):
    from leadsim.decide.report import decide_html, decide_text

    eff = risk.effective_draws(risk.sample_design(tilted), 60)
    assert 1 < eff < 60
    head = decide_text(tilted).splitlines()[0]
    assert f"tilted sampling, weighted (effective draws {eff:,.0f})" in head
    assert "tilted sampling" in decide_html(tilted)


def test_a_tilt_aimed_at_professional_still_compares_with_mssp():
    """``simulation.tilt_track = "professional"`` is not a track of MSSP: the comparator drops it (the tilt is the
    config's own for every pass anyway), and the kernel passes are still shared as without a tilt track."""
    cfg = small(**{"simulation.sampling": "tilted", "simulation.tilt_track": "professional"})
    d = decide(cfg, break_even=False, progress=False)
    assert d.attrs["kernel_passes"] == 3 and "mssp_enhanced" in d.option.values
    np.testing.assert_array_equal(d.weight.values, sim(cfg).weight.values)
