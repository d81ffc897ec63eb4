"""Properties of the ledger (hypothesis): continuity, monotonicity, track ordering, corridor identities."""

from __future__ import annotations

import warnings

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import leadsim
from leadsim.config import LeadsimWarning, TrackPolicy
from leadsim.ledger.settlement import corridor_share, settle
from leadsim.schedules import stop_loss_payout

FAST = settings(max_examples=60, deadline=None)


def _cfg(preset, **overrides):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LeadsimWarning)
        return leadsim.load_config(overrides={"simulation.years": 1, "policy.preset": preset, **overrides})


# every settled track of every preset, with sequestration of losses off and on
CONFIGS = {(preset, seq): _cfg(preset, **{"policy.settlement.sequestration_on_losses": seq})
           for preset in ("lead_py2027", "reach_py2026", "mssp_enhanced") for seq in (False, True)}
TRACKS = [(preset, seq, track) for (preset, seq), cfg in CONFIGS.items() for track in cfg.policy.tracks]
LEAD = CONFIGS[("lead_py2027", False)]

pbpm = st.floats(100.0, 20_000.0)
months = st.floats(0.0, 50_000.0)


def _settle_grid(cfg, track, b_pbpm, mm, spending, q, payout=None):
    """Settle one year for a vector of spending levels (one 'draw' per level) on a fixed benchmark."""
    n = spending.shape[0]
    bp = np.broadcast_to(np.asarray(b_pbpm, float), (n, 1, 3)).copy()
    mmm = np.broadcast_to(np.asarray(mm, float), (n, 1, 3)).copy()
    e = np.zeros((n, 1, 3))
    e[:, 0, 0] = spending                                     # the change in spending lands on A&D
    pay = np.zeros((n, 1, 3)) if payout is None else payout.reshape(n, 1, 1) * np.array([1.0, 0.0, 0.0])
    return settle(cfg, track, bp, mmm, e, pay, np.zeros((1, 3)), np.full((n, 1), q))


@FAST
@given(case=st.sampled_from(TRACKS), b=st.tuples(pbpm, pbpm, pbpm),
       mm=st.tuples(st.floats(100.0, 50_000.0), months, months), q=st.floats(0.0, 1.0),
       lo=st.floats(-1.5, 1.0), width=st.floats(1e-6, 1.0))
def test_settlement_continuous_and_non_increasing_in_spending(case, b, mm, q, lo, width):
    preset, seq, track = case
    cfg = CONFIGS[(preset, seq)]
    bench = float(np.dot(b, mm))
    # spending from (1 - rate) x benchmark over a rate window, on a fine grid that straddles band edges
    rates = np.linspace(lo + width, lo, 2001)
    spend = np.maximum(bench * (1.0 - rates), 0.0)
    net = _settle_grid(cfg, track, b, mm, spend, q).net_settlement[:, 0]
    d_spend = np.diff(spend)
    d_net = np.diff(net)
    tol = 1e-9 * bench
    assert np.all(d_net <= tol)                               # non-increasing
    assert np.all(-d_net <= d_spend + tol)                    # 1-Lipschitz: continuous, no jump anywhere


@FAST
@given(x=st.lists(st.floats(0.0, 2e6), min_size=2, max_size=50), shares=st.lists(st.floats(0.0, 1.0), min_size=3,
                                                                                max_size=3))
def test_stop_loss_net_spending_is_continuous_and_non_decreasing(x, shares):
    a = np.array([125_000.0, 250_000.0, 500_000.0])
    xs = np.sort(np.asarray(x))
    pay = stop_loss_payout(xs, a, np.asarray(shares))
    net = xs - pay
    assert np.all(pay >= 0) and np.all(pay <= xs * max(shares) + 1e-6)
    assert np.all(np.diff(net) >= -1e-6)                      # shares <= 1: the ACO keeps part of each dollar
    assert np.all(np.diff(pay) <= np.diff(xs) * max(shares) + 1e-6)


@FAST
@given(gross_rate=st.floats(-2.0, 1.0), b=st.tuples(pbpm, pbpm, pbpm), mm=st.tuples(months, months, months),
       sixty=st.booleans(), seq=st.booleans(), q=st.floats(0.0, 1.0))
def test_professional_never_shares_more_than_global(gross_rate, b, mm, sixty, seq, q):
    assume(np.dot(b, mm) > 0)
    over = {"policy.settlement.sequestration_on_losses": seq}
    if sixty:
        over["policy.professional.savings_shares"] = [0.6, 0.35, 0.15, 0.05]
    cfg = _cfg("lead_py2027", **over)
    bench = float(np.dot(b, mm))
    spend = np.array([bench * (1.0 - gross_rate)])
    # same benchmark (no discount) and same gross savings for both tracks
    g = _settle_grid(cfg, "global", b, mm, spend, q)
    p = _settle_grid(cfg, "professional", b, mm, spend, q)
    assert abs(g.gross_savings[0, 0] - p.gross_savings[0, 0]) < 1e-6
    assert abs(p.shared_savings[0, 0]) <= abs(g.shared_savings[0, 0]) + 1e-9 * bench
    assert np.sign(p.shared_savings[0, 0]) * np.sign(g.shared_savings[0, 0]) >= 0


@FAST
@given(case=st.sampled_from(TRACKS), b=st.tuples(pbpm, pbpm, pbpm), mm=st.tuples(st.floats(1.0, 50_000.0), months,
                                                                                 months), q=st.floats(0.0, 1.0))
def test_zero_gross_savings_shares_nothing(case, b, mm, q):
    preset, seq, track = case
    cfg = CONFIGS[(preset, seq)]
    tp = cfg.policy.track(track)
    assert corridor_share(np.array([0.0]), tp, np.array([q]))[0] == 0.0
    # spending equal to the benchmark, population by population
    n = 1
    bp = np.asarray(b, float).reshape(1, 1, 3)
    mmm = np.asarray(mm, float).reshape(1, 1, 3)
    s = settle(cfg, track, bp, mmm, bp * mmm, np.zeros((n, 1, 3)), np.zeros((1, 3)), np.full((n, 1), q))
    assert abs(s.gross_savings[0, 0]) < 1e-6
    assert abs(s.shared_savings[0, 0]) < 1e-6


band_table = st.lists(st.tuples(st.floats(0.001, 0.99), st.floats(0.0, 1.0)), min_size=0, max_size=6,
                      unique_by=lambda t: round(t[0], 6))


@FAST
@given(sav=band_table, loss=band_table, first=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)))
def test_corridor_share_of_full_loss_is_sum_of_band_width_times_share(sav, loss, first):
    def table(rows, s0):
        rows = sorted(rows)
        return [0.0] + [round(r[0], 6) for r in rows], [s0] + [r[1] for r in rows]

    sb, ss = table(sav, first[0])
    lb, ls = table(loss, first[1])
    track = TrackPolicy(savings_breakpoints=sb, savings_shares=ss, loss_breakpoints=lb, loss_shares=ls)
    widths = np.diff([*lb, 1.0])                              # the last band runs to 100% of benchmark
    expected = -sum(w * s for w, s in zip(widths, ls, strict=True))
    assert abs(corridor_share(np.array([-1.0]), track)[0] - expected) < 1e-12
    # and through settle: spending of twice the benchmark, losses not sequestered
    bench = 1_000_000.0
    cfg = LEAD.model_copy(update={"policy": LEAD.policy.model_copy(update={"global_": track})})
    s = _settle_grid(cfg, "global", [1000.0, 0.0, 0.0], [1000.0, 0.0, 0.0], np.array([2 * bench]), 1.0)
    assert abs(s.shared_savings[0, 0] - expected * bench) < 1e-6


def test_full_loss_of_preset_tables():
    # the LEAD presets on paper: Global 0.15 x 1 + 0.20 x 0.5 + 0.15 x 0.25 + 0.50 x 0.10 = 0.3375;
    # Professional 0.10 x 0.5 + 0.05 x 0.35 + 0.05 x 0.15 + 0.80 x 0.05 = 0.115
    r = np.array([-1.0])
    assert abs(corridor_share(r, LEAD.policy.global_)[0] - -(0.15 * 1 + 0.20 * 0.5 + 0.15 * 0.25 + 0.50 * 0.10)) < 1e-12
    assert abs(corridor_share(r, LEAD.policy.professional)[0]
               - -(0.10 * 0.5 + 0.05 * 0.35 + 0.05 * 0.15 + 0.80 * 0.05)) < 1e-12
