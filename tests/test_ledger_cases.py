"""Hand-worked deterministic ledger cases (``docs/methodology.md`` §2-§4), each matched to the cent.

Every expected value is written as the arithmetic an actuary would do on paper, with the rule it
exercises named in the test. Unit cases drive the public ledger functions with constructed arrays;
the end-to-end cases run :func:`leadsim.simulate` on fully degenerate configs (no randomness, no
deaths, exits or transitions), where spending is exactly ``mean_annual_cost x growth``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import leadsim
from leadsim import engine
from leadsim.config import LeadsimWarning
from leadsim.ledger.benchmark import (
    benchmark_pbpm,
    historical_adjustment,
    reach_rta_update,
    risk_adjustment,
)
from leadsim.ledger.settlement import corridor_share, financial_guarantee, settle
from leadsim.model.outliers import price_stop_loss
from leadsim.schedules import marginal_bands, stop_loss_payout

CENT = 0.005
H_AD, H_ESRD, H_HN = 14_400.0 / 12, 110_000.0 / 12, 55_000.0 / 12  # base-year PBPM = mean_annual_cost / 12
POPS = ("aged_disabled", "esrd", "high_needs")


def config(**overrides):
    """A config from the built-in defaults (lead_py2027 unless another preset is named) with dotted-key overrides."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LeadsimWarning)
        return leadsim.load_config(overrides={"simulation.draws": 1, "policy.preset": "lead_py2027", **overrides})


def degenerate(**overrides):
    """Every random driver switched off: spending is mean_annual_cost x (1 + mu)^t x (1 + care management)."""
    ov = {"simulation.draws": 2, "simulation.chunk_draws": 2, "aco.beneficiaries": 100,
          "trend.national_sd": 0.0, "trend.regional_sd": 0.0, "trend.aco_level_sd": 0.0, "quality.sd": 0.0,
          "population.aged_disabled.high_needs_rate": 0.0, "population.aged_disabled.esrd_rate": 0.0}
    for p in POPS:
        ov.update({f"population.{p}.sigma": 0.0, f"population.{p}.tail_start": 1.0,
                   f"population.{p}.zero_share": 0.0, f"population.{p}.mortality": 0.0,
                   f"population.{p}.exit_rate": 0.0})
    ov.update(overrides)
    return config(**ov)


def bench(cfg, track, *, nat=0.0, reg=0.0, pros=0.0, risk=1.0, q=1.0):
    """benchmark_pbpm on one draw with constant annual growth rates (scalars or per-population triples)."""
    y = cfg.simulation.years
    shape = (1, y, 3)
    return benchmark_pbpm(cfg, track, np.broadcast_to(np.asarray(nat, float), shape).copy(),
                          np.broadcast_to(np.asarray(reg, float), shape).copy(),
                          np.broadcast_to(np.asarray(pros, float), (y, 3)).copy(),
                          np.broadcast_to(np.asarray(risk, float), shape).copy(), np.full((1, y), float(q)))


def settle_one(cfg, track, benchmark, spending, *, payout=0.0, charge_pbpm=0.0, q=1.0, months=1000.0):
    """Settle one draw and one year on an A&D-only block: ``months`` at PBPM ``benchmark / months``."""
    y = cfg.simulation.years
    bpbpm = np.zeros((1, y, 3))
    bpbpm[:, :, 0] = benchmark / months
    mm = np.zeros((1, y, 3))
    mm[:, :, 0] = months
    e = np.zeros((1, y, 3))
    e[:, :, 0] = spending
    pay = np.zeros((1, y, 3))
    pay[:, :, 0] = payout
    ch = np.zeros((y, 3))
    ch[:, 0] = charge_pbpm
    return settle(cfg, track, bpbpm, mm, e, pay, ch, np.full((1, y), float(q)))


B = 1_000_000.0  # benchmark dollars of the settlement cases (1,000 member-months at $1,000 PBPM)


# --------------------------------------------------------------------------------------------------------
# 1-2. Risk corridors: every band of both LEAD tracks, savings and losses (``docs/methodology.md`` §3.4)
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("rate", "share_of_benchmark"), [
    (0.10, 1.0 * 0.10),                                                    # band 0-15%: 100%
    (0.25, 1.0 * 0.15 + 0.5 * 0.10),                                       # band 15-35%: 50%
    (0.40, 1.0 * 0.15 + 0.5 * 0.20 + 0.25 * 0.05),                         # band 35-50%: 25%
    (0.60, 1.0 * 0.15 + 0.5 * 0.20 + 0.25 * 0.15 + 0.10 * 0.10),           # band > 50%: 10%
])
def test_global_corridor_every_band(rate, share_of_benchmark):
    cfg = config()
    sav = settle_one(cfg, "global", B, B * (1 - rate))
    expected_savings = (1 - 0.02) * share_of_benchmark * B     # 2% sequestration on savings paid
    assert abs(sav.gross_savings[0, 0] - rate * B) < CENT
    assert abs(sav.shared_savings[0, 0] - expected_savings) < CENT
    assert abs(sav.net_settlement[0, 0] - expected_savings) < CENT  # lower-spending: no admin add-on
    loss = settle_one(cfg, "global", B, B * (1 + rate))
    expected_loss = -share_of_benchmark * B                     # losses not sequestered by default
    assert abs(loss.shared_savings[0, 0] - expected_loss) < CENT


@pytest.mark.parametrize(("rate", "share_of_benchmark"), [
    (0.05, 0.50 * 0.05),                                                   # band 0-10%: 50%
    (0.12, 0.50 * 0.10 + 0.35 * 0.02),                                     # band 10-15%: 35%
    (0.18, 0.50 * 0.10 + 0.35 * 0.05 + 0.15 * 0.03),                       # band 15-20%: 15%
    (0.30, 0.50 * 0.10 + 0.35 * 0.05 + 0.15 * 0.05 + 0.05 * 0.10),         # band > 20%: 5%
])
def test_professional_corridor_every_band(rate, share_of_benchmark):
    cfg = config()
    sav = settle_one(cfg, "professional", B, B * (1 - rate))
    assert abs(sav.shared_savings[0, 0] - (1 - 0.02) * share_of_benchmark * B) < CENT
    loss = settle_one(cfg, "professional", B, B * (1 + rate))
    assert abs(loss.shared_savings[0, 0] - (-share_of_benchmark * B)) < CENT


def test_professional_sixty_percent_savings_option():
    # PY2027 paper's 60% first-band savings share [LEAD-2]; losses stay at 50%
    cfg = config(**{"policy.professional.savings_shares": [0.6, 0.35, 0.15, 0.05]})
    sav = settle_one(cfg, "professional", B, B * (1 - 0.12))
    assert abs(sav.shared_savings[0, 0] - 0.98 * (0.60 * 0.10 + 0.35 * 0.02) * B) < CENT
    loss = settle_one(cfg, "professional", B, B * (1 + 0.12))
    assert abs(loss.shared_savings[0, 0] - (-(0.50 * 0.10 + 0.35 * 0.02) * B)) < CENT


# --------------------------------------------------------------------------------------------------------
# 3. Sequestration of losses on and off (``docs/methodology.md`` §3.5)
# --------------------------------------------------------------------------------------------------------
def test_sequestration_of_losses_switch():
    off = settle_one(config(), "global", B, 1.05 * B)
    on = settle_one(config(**{"policy.settlement.sequestration_on_losses": True}), "global", B, 1.05 * B)
    assert abs(off.shared_savings[0, 0] - (-0.05 * B)) < CENT
    assert abs(off.sequestration[0, 0] - 0.0) < CENT
    assert abs(on.shared_savings[0, 0] - (-0.05 * B * (1 - 0.02))) < CENT   # owes 2% less
    assert abs(on.sequestration[0, 0] - (-0.05 * B * 0.02)) < CENT
    # savings are sequestered either way
    on_sav = settle_one(config(**{"policy.settlement.sequestration_on_losses": True}), "global", B, 0.95 * B)
    assert abs(on_sav.shared_savings[0, 0] - 0.05 * B * 0.98) < CENT


# --------------------------------------------------------------------------------------------------------
# 4. Discount path of a higher-spending ACO, REA floor, admin add-on (``docs/methodology.md`` §2.2, §2.6, §3.6)
# --------------------------------------------------------------------------------------------------------
def test_discount_path_higher_spending_and_rea_floor():
    cfg = config(**{"aco.historical_to_regional": 1.05})    # H > R: higher-spending
    g = bench(cfg, "global").final[0, :, 0]                  # zero growth, neutral risk, q = 1
    p = bench(cfg, "professional").final[0, :, 0]
    # negative REA floored at 0, so H' = H; discount 1.75% in PY2027 rising 0.25pp a year to 3% in PY2032
    assert abs(g[0] - 1200 * (1 - 0.0175)) < CENT            # PY2027
    assert abs(g[2] - 1200 * (1 - 0.0225)) < CENT            # PY2029
    assert abs(g[4] - 1200 * (1 - 0.0275)) < CENT            # PY2031
    assert abs(g[5] - (0.8 * 1200 + 0.2 * 1200 / 1.05) * (1 - 0.03)) < CENT  # PY2032: 3%, convergence 0.2
    assert abs(g[9] - (1200 / 1.05) * (1 - 0.03)) < CENT     # PY2036: full rate book, 3% held
    assert abs(p[2] - 1200.0) < CENT                         # Professional: no discount
    assert np.all(historical_adjustment(cfg, cfg.policy.global_) == 0.0)
    # the 1.5% administrative add-on of a higher-spending ACO is paid on top of the corridor share
    s = settle_one(cfg, "global", B, 0.9 * B)
    assert abs(s.add_on_payments[0, 0] - 0.015 * B) < CENT
    assert abs(s.net_settlement[0, 0] - (0.98 * 0.10 * B + 0.015 * B)) < CENT


def test_rea_floor_negative_regional_gap():
    cfg = config(**{"aco.historical_to_regional": 1.25, "aco.prior_savings_pbpm": 0.0})
    # REA = 0.5 (R - H) = 0.5 (1200 / 1.25 - 1200) = -120 < 0, floored at 0 (not a deduction)
    assert 0.5 * (1200 / 1.25 - 1200) < 0
    assert np.array_equal(historical_adjustment(cfg, cfg.policy.global_), np.zeros(3))
    g = bench(cfg, "global").final[0, 0]
    assert abs(g[0] - 1200 * (1 - 0.0175)) < CENT
    assert abs(g[2] - H_HN * (1 - 0.0175)) < CENT


def test_lower_spending_discount_is_flat_three_percent():
    cfg = config(**{"aco.historical_to_regional": 0.97})
    g = bench(cfg, "global").final[0, :, 0]
    rea = 0.5 * (1200 / 0.97 - 1200)
    assert abs(g[0] - (1200 + rea) * (1 - 0.03)) < CENT
    assert abs(g[3] - (1200 + rea) * (1 - 0.03)) < CENT
    s = settle_one(cfg, "global", B, 0.9 * B)
    assert abs(s.add_on_payments[0, 0] - 0.0) < CENT         # no admin add-on when lower-spending


# --------------------------------------------------------------------------------------------------------
# 5. REA cap, PSA beating REA (``docs/methodology.md`` §2.2)
# --------------------------------------------------------------------------------------------------------
def test_rea_cap_new_and_renewing():
    cfg = config(**{"aco.historical_to_regional": 0.8})
    # uncapped REA would be 0.5 (1200 / 0.8 - 1200) = 150 PBPM; the cap is 5% of national 1200 = 60
    rea = historical_adjustment(cfg, cfg.policy.global_)
    assert abs(rea[0] - min(0.5 * (1200 / 0.8 - 1200), 0.05 * 1200)) < CENT
    assert abs(rea[0] - 60.0) < CENT
    assert abs(rea[1] - 0.05 * H_ESRD) < CENT
    g = bench(cfg, "global").final[0, 0, 0]
    assert abs(g - (1200 + 0.05 * 1200) * (1 - 0.03)) < CENT
    renew = config(**{"aco.historical_to_regional": 0.8, "aco.renewing_from_mssp": True})
    assert abs(historical_adjustment(renew, renew.policy.global_)[0] - 0.03 * 1200) < CENT
    # national per-capita cost, when given, is the cap base
    nat = config(**{"aco.historical_to_regional": 0.8, "population.aged_disabled.national_annual_cost": 12_000.0})
    assert abs(historical_adjustment(nat, nat.policy.global_)[0] - 0.05 * 12_000 / 12) < CENT
    # Professional gets no REA
    assert abs(historical_adjustment(cfg, cfg.policy.professional)[0] - 0.0) < CENT


def test_psa_beats_rea():
    cfg = config(**{"aco.historical_to_regional": 0.97, "aco.prior_savings_pbpm": 100.0})
    adj = historical_adjustment(cfg, cfg.policy.global_)
    rea_ad = 0.5 * (1200 / 0.97 - 1200)                       # 18.56
    psa = min(0.5 * 100.0, 0.05 * 1200)                       # 50
    assert psa > rea_ad
    assert abs(adj[0] - max(rea_ad, psa)) < CENT
    assert abs(adj[0] - 50.0) < CENT
    rea_esrd = 0.5 * (H_ESRD / 0.97 - H_ESRD)                 # 141.75 > 50: REA wins for ESRD
    assert abs(adj[1] - rea_esrd) < CENT
    prof = historical_adjustment(cfg, cfg.policy.professional)
    assert np.allclose(prof, 50.0, atol=CENT)                # Professional: PSA only, every population
    g = bench(cfg, "global").final[0, 0, 0]
    p = bench(cfg, "professional").final[0, 0, 0]
    assert abs(g - (1200 + 50) * (1 - 0.03)) < CENT
    assert abs(p - (1200 + 50)) < CENT
    # PSA capped at 5% of national
    big = config(**{"aco.prior_savings_pbpm": 400.0})
    assert abs(historical_adjustment(big, big.policy.professional)[0] - 0.05 * 1200) < CENT


# --------------------------------------------------------------------------------------------------------
# 6. Trend guardrails binding upward and downward (``docs/methodology.md`` §2.3)
# --------------------------------------------------------------------------------------------------------
def test_guardrails_bind_upward_and_downward():
    cfg = config()
    tw1 = 0.25 * 1.04 + 0.75 * 1.06                           # two-way trend, PY2027: 1.055
    tw3 = 0.25 * 1.04**3 + 0.75 * 1.06**3                     # cumulative to PY2029
    # forecast 8%/yr above the upper guardrail: P* = TW (1 + 0.3%) in PY2027, TW (1 + 0.9%) in PY2029
    up = bench(cfg, "professional", nat=0.04, reg=0.06, pros=0.08)
    assert abs(up.blended_update[0, 0, 0] - (2 / 3 * tw1 + 1 / 3 * tw1 * 1.003)) < 1e-12
    assert abs(up.final[0, 0, 0] - 1200 * (2 / 3 * tw1 + 1 / 3 * tw1 * 1.003)) < CENT
    assert abs(up.final[0, 2, 0] - 1200 * (2 / 3 * tw3 + 1 / 3 * tw3 * (1 + 0.009))) < CENT
    # forecast 3%/yr below the lower guardrail: P* = TW (1 - 0.2%) in PY2027, TW (1 - 0.6%) in PY2029
    down = bench(cfg, "professional", nat=0.04, reg=0.06, pros=0.03)
    assert abs(down.final[0, 0, 0] - 1200 * (2 / 3 * tw1 + 1 / 3 * tw1 * (1 - 0.002))) < CENT
    assert abs(down.final[0, 2, 0] - 1200 * (2 / 3 * tw3 + 1 / 3 * tw3 * (1 - 0.006))) < CENT
    # inside the guardrails the forecast is used as is: P = 1.056 in [1.055 x 0.998, 1.055 x 1.003]
    inside = bench(cfg, "professional", nat=0.04, reg=0.06, pros=0.056)
    assert abs(inside.final[0, 0, 0] - 1200 * (2 / 3 * tw1 + 1 / 3 * 1.056)) < CENT


# --------------------------------------------------------------------------------------------------------
# 7. Rate-book convergence year, partial earn-back, risk caps (``docs/methodology.md`` §2.4, §2.5, §2.7)
# --------------------------------------------------------------------------------------------------------
def test_convergence_year_py2032_with_partial_earn_back():
    cfg = config(**{"aco.historical_to_regional": 0.97})
    g = bench(cfg, "global", q=0.6).final[0]
    p = bench(cfg, "professional", q=0.6).final[0]
    h, r = 1200.0, 1200.0 / 0.97
    rea = 0.5 * (r - h)
    earn = 1 - 0.03 * (1 - 0.6)                               # withhold 3%, q = 0.6: 1.2% is kept
    assert abs(g[4, 0] - (h + rea) * (1 - 0.03) * earn) < CENT                      # PY2031: c = 0
    assert abs(g[5, 0] - (0.8 * (h + rea) + 0.2 * r) * (1 - 0.03) * earn) < CENT    # PY2032: c = 0.2
    assert abs(g[6, 0] - (0.6 * (h + rea) + 0.4 * r) * (1 - 0.03) * earn) < CENT    # PY2033: c = 0.4
    assert abs(p[5, 0] - (0.8 * h + 0.2 * r) * earn) < CENT
    assert abs(p[5, 0] - 1192.93) < 0.01                      # (960 + 247.42) x 0.988 on paper


def test_convergence_cap_on_yearly_change():
    # optional cap on the year-over-year benchmark change from convergence: 1% a year
    cfg = config(**{"aco.historical_to_regional": 0.8, "policy.benchmark.convergence_cap": 0.01})
    p = bench(cfg, "professional").final[0, :, 0]
    h, r = 1200.0, 1200.0 / 0.8                               # Professional: no REA, H' = H
    assert abs(p[4] - h) < CENT                               # PY2031: c = 0
    assert 0.8 * h + 0.2 * r > h * 1.01                       # uncapped PY2032 would jump 5%
    assert abs(p[5] - h * 1.01) < CENT                        # PY2032 capped at +1%
    assert abs(p[6] - h * 1.01 * 1.01) < CENT                 # PY2033: +1% on the capped level


def test_risk_adjustment_caps_and_high_needs():
    cfg = config()
    out = bench(cfg, "professional", risk=[1.05, 0.99, 1.05])
    # A&D 1.05 capped at +3%, ESRD 0.99 inside, High Needs 1.05 capped at +4%
    assert abs(out.final[0, 0, 0] - 1200 * 1.03) < CENT
    assert abs(out.final[0, 0, 1] - H_ESRD * 0.99) < CENT
    assert abs(out.final[0, 0, 2] - H_HN * 1.04) < CENT
    low = bench(cfg, "professional", risk=[0.90, 0.90, 0.90])
    assert abs(low.final[0, 0, 2] - H_HN * (1 - 0.04)) < CENT
    # coding intensity adds c x (t - 2026) before the cap
    drift = risk_adjustment(np.ones((1, 3, 3)), 0.005 * np.array([1.0, 2.0, 3.0]), np.array([0.03, 0.03, 0.04]))
    assert np.allclose(drift[0, :, 0], [1.005, 1.010, 1.015], atol=1e-12)


# --------------------------------------------------------------------------------------------------------
# 8. Stop-loss spanning two bands, its price and its effect on settlement (``docs/methodology.md`` §3.2)
# --------------------------------------------------------------------------------------------------------
def test_stop_loss_payout_spanning_bands():
    a, s = np.array([125_000.0, 250_000.0, 500_000.0]), np.array([0.5, 0.75, 0.9])
    x = np.array([100_000.0, 200_000.0, 300_000.0, 600_000.0])
    pay = stop_loss_payout(x, a, s)
    assert abs(pay[0] - 0.0) < CENT
    assert abs(pay[1] - 0.5 * (200_000 - 125_000)) < CENT
    assert abs(pay[2] - (0.5 * (250_000 - 125_000) + 0.75 * (300_000 - 250_000))) < CENT   # two bands: 100,000
    assert abs(pay[3] - (0.5 * 125_000 + 0.75 * 250_000 + 0.9 * 100_000)) < CENT
    assert abs(marginal_bands(np.array(0.3), [0.0, 0.1], [0.5, 0.2]) - (0.5 * 0.1 + 0.2 * 0.2)) < 1e-12


def _standard_normal_law():
    """The latent law N(0, 1) of a degenerate cohort (no deaths or exits), on a fine grid."""
    z = np.linspace(-8.5, 8.5, 545)
    w = np.exp(-0.5 * z * z)
    return z, np.tile(w / w.sum(), (3, 1))


def test_stop_loss_price_and_settlement():
    cfg = degenerate(**{"population.high_needs.mean_annual_cost": 300_000.0, "policy.stop_loss.enabled": True,
                        "policy.stop_loss.neutrality": 0.9})
    costs = np.array([14_400.0, 110_000.0, 300_000.0])
    charge = price_stop_loss(cfg, costs, *_standard_normal_law())
    # everyone spends exactly the mean: 300,000 x 1.05 = 315,000 in PY2027, attachments not yet trended
    pay27 = 0.5 * (250_000 - 125_000) + 0.75 * (300_000 * 1.05 - 250_000)   # 111,250
    assert abs(charge[0, 2] - 1.1 * pay27 / 12) < CENT
    # PY2028: spending and attachments both trended 5%, so the payout is 5% higher
    pay28 = 0.5 * (250_000 * 1.05 - 125_000 * 1.05) + 0.75 * (300_000 * 1.05**2 - 250_000 * 1.05)
    assert abs(charge[1, 2] - 1.1 * pay28 / 12) < CENT
    assert abs(charge[0, 0] - 0.0) < CENT and abs(charge[0, 1] - 0.0) < CENT   # below the first attachment
    # settlement: net spending = E - 0.9 x payout + charge, on 10 High Needs members (120 months)
    y = cfg.simulation.years
    bp = np.zeros((1, y, 3))
    bp[..., 2] = 29_000.0
    mm = np.zeros((1, y, 3))
    mm[..., 2] = 120.0
    e = np.zeros((1, y, 3))
    e[..., 2] = 10 * 315_000.0
    pay = np.zeros((1, y, 3))
    pay[..., 2] = 10 * pay27
    s = settle(cfg, "professional", bp, mm, e, pay, charge, np.ones((1, y)))
    net_spend = 10 * 315_000.0 - 0.9 * 10 * pay27 + 120 * 1.1 * pay27 / 12
    gross = 29_000.0 * 120 - net_spend
    assert abs(s.stop_loss_charge[0, 0] - 120 * 1.1 * pay27 / 12) < CENT
    assert abs(s.gross_savings[0, 0] - gross) < CENT
    assert 0 < gross / (29_000.0 * 120) < 0.10                 # 107,500 on 3,480,000: first Professional band
    assert abs(s.shared_savings[0, 0] - 0.98 * 0.5 * gross) < CENT
    # disabled: no charge and no relief
    assert not np.any(price_stop_loss(config(), costs, *_standard_normal_law()))


# --------------------------------------------------------------------------------------------------------
# 9. MSSP ENHANCED sharing caps and quality-dependent loss share (``docs/methodology.md`` §4)
# --------------------------------------------------------------------------------------------------------
def test_mssp_enhanced_caps():
    cfg = config(**{"policy.preset": "mssp_enhanced"})
    track = cfg.policy.enhanced
    q = np.array([0.85])
    assert abs(corridor_share(np.array([0.10]), track, q)[0] - 0.75 * 0.10) < 1e-12
    assert abs(corridor_share(np.array([0.30]), track, q)[0] - min(0.75 * 0.30, 0.20)) < 1e-12   # cap 20%
    # loss share 1 - 0.75 q, bounded 40-75%
    assert abs(corridor_share(np.array([-0.10]), track, np.array([0.85]))[0]
               - (-max(1 - 0.75 * 0.85, 0.40) * 0.10)) < 1e-12          # 36.25% -> 40%
    assert abs(corridor_share(np.array([-0.10]), track, np.array([0.50]))[0] - (-(1 - 0.75 * 0.50) * 0.10)) < 1e-12
    assert abs(corridor_share(np.array([-0.10]), track, np.array([0.20]))[0]
               - (-min(1 - 0.75 * 0.20, 0.75) * 0.10)) < 1e-12          # 85% -> 75%
    assert abs(corridor_share(np.array([-0.30]), track, np.array([0.50]))[0]
               - (-min(0.625 * 0.30, 0.15))) < 1e-12                    # 18.75% capped at 15%
    # through settle, with dollars and sequestration on the capped savings
    s = settle_one(cfg, "enhanced", B, 0.70 * B, q=0.85)
    assert abs(s.shared_savings[0, 0] - 0.98 * 0.20 * B) < CENT
    loss = settle_one(cfg, "enhanced", B, 1.10 * B, q=0.5)
    assert abs(loss.shared_savings[0, 0] - (-(1 - 0.75 * 0.5) * 0.10 * B)) < CENT
    # an optional minimum savings rate: nothing inside it, first dollar once exceeded
    msr = config(**{"policy.preset": "mssp_enhanced", "policy.enhanced.minimum_savings_rate": 0.02})
    assert abs(settle_one(msr, "enhanced", B, 0.99 * B).shared_savings[0, 0] - 0.0) < CENT
    assert abs(settle_one(msr, "enhanced", B, 0.97 * B).shared_savings[0, 0] - 0.98 * 0.75 * 0.03 * B) < CENT


# --------------------------------------------------------------------------------------------------------
# 10. REACH: retrospective trend adjustment, 60/40 blend, 4% discount, 5% withhold (``docs/methodology.md`` §4)
# --------------------------------------------------------------------------------------------------------
def test_reach_rta():
    p = np.array([1.10])
    rta = [0.01, [0.0, 0.04, 0.08], [1.0, 0.5, 0.0]]
    assert abs(reach_rta_update(p, p * 1.005, *rta)[0] - 1.10) < 1e-12                  # within +-1%: none
    assert abs(reach_rta_update(p, p * 1.03, *rta)[0] - 1.10 * (1 + 0.03)) < 1e-12       # 100% up to 4%
    assert abs(reach_rta_update(p, p * 1.06, *rta)[0] - 1.10 * (1 + 0.04 + 0.5 * 0.02)) < 1e-12
    assert abs(reach_rta_update(p, p * 1.12, *rta)[0] - 1.10 * (1 + 0.04 + 0.5 * 0.04)) < 1e-12   # none > 8%
    assert abs(reach_rta_update(p, p * 0.94, *rta)[0] - 1.10 * (1 - 0.04 - 0.5 * 0.02)) < 1e-12
    cfg = config(**{"policy.preset": "reach_py2026", "aco.historical_to_regional": 0.97})
    # forecast 3% a year, actual 5% national and regional: PY2029 actual / forecast = (1.05 / 1.03)^3 = 1.0594
    out = bench(cfg, "global", nat=0.05, reg=0.05, pros=0.03, q=0.8)
    delta = (1.05 / 1.03) ** 3 - 1
    update = 1.03**3 * (1 + 0.04 + 0.5 * (delta - 0.04))
    level = 0.6 * 1200 + 0.4 * 1200 / 0.97                    # 60% historical / 40% regional, no REA
    assert abs(out.final[0, 2, 0] - level * update * (1 - 0.04) * (1 - 0.05 * (1 - 0.8))) < CENT
    # PY2027: 1.05 / 1.03 - 1 = 1.94% > 1%: the full adjustment, i.e. the actual trend
    assert abs(out.final[0, 0, 0] - level * 1.05 * (1 - 0.04) * (1 - 0.05 * 0.2)) < CENT


# --------------------------------------------------------------------------------------------------------
# 11. Add-ons, operating cost, discounted cumulative settlement, financial guarantee (§3.6-3.7)
# --------------------------------------------------------------------------------------------------------
def test_add_ons_operating_cost_and_cumulative():
    cfg = config(**{"aco.historical_to_regional": 1.05, "aco.rural": True, "policy.benchmark.rural_addon": 0.01,
                    "aco.operating_cost_pbpm": 20.0, "policy.settlement.discount_rate": 0.05,
                    "simulation.years": 3})
    s = settle_one(cfg, "global", B, 0.95 * B)                # every year: 5% savings on $1M
    year = 0.98 * 0.05 * B + (0.015 + 0.01) * B - 20.0 * 1000
    assert abs(s.net_settlement[0, 0] - year) < CENT
    assert abs(s.cumulative_settlement[0] - (year + year / 1.05 + year / 1.05**2)) < CENT
    fg = financial_guarantee(config(**{"aco.beneficiaries": 10_000}))
    assert abs(fg - 0.04 * 10_000 * (0.95 * 14_400 + 0.01 * 110_000 + 0.04 * 55_000)) < CENT


# --------------------------------------------------------------------------------------------------------
# 12-14. End to end through leadsim.simulate on degenerate configs
# --------------------------------------------------------------------------------------------------------
def _simulate(cfg, monkeypatch):
    """Run leadsim.simulate and capture the cohort model it builds (to check the stationary calibration)."""
    seen = {}
    real = engine.prepare

    def spy(c):
        inputs = real(c)
        seen["model"] = inputs.model
        return inputs

    monkeypatch.setattr(engine, "prepare", spy)
    ds = leadsim.simulate(cfg, progress=False)
    return ds, seen["model"]


def _check_stationary_identity(model, costs):
    # no deaths, exits or transitions and sigma = 0: kappa = 1, score norm = 1, latent N(0, 1)
    assert np.allclose(model.base_mean, costs, rtol=1e-12)
    assert np.allclose(model.kernel.entrant_score, 1.0, rtol=1e-12)
    assert np.allclose(model.init_mean, 0.0, atol=1e-9)
    assert np.allclose(model.init_sd, 1.0, atol=1e-6)


def test_end_to_end_lead_lower_spending(monkeypatch):
    cfg = degenerate(**{"aco.mix.aged_disabled": 0.90, "aco.mix.esrd": 0.02, "aco.mix.high_needs": 0.08,
                        "aco.historical_to_regional": 0.97, "trend.forecast_bias": 0.01,
                        "aco.care_management_effect": [-0.05, -0.08, -0.10], "quality.mean": 0.6})
    ds, model = _simulate(cfg, monkeypatch)
    _check_stationary_identity(model, [14_400.0, 110_000.0, 55_000.0])
    d0 = ds.isel(draw=0)
    assert np.array_equal(ds.net_settlement.values[0], ds.net_settlement.values[1])   # no randomness at all
    assert np.allclose(d0.risk_score.values[:, [0, 2]], 1.0, rtol=1e-12, atol=0)
    # PY2027 on paper. Spending: 90 x 14,400 x 1.05 x 0.95; members 90 / 2 / 8, 12 months each.
    assert abs(d0.expenditure.values[0, 0] - 90 * 14_400 * 1.05 * 0.95) < CENT
    assert abs(d0.member_months.values[0, 0] - 90 * 12) < 1e-9
    # A&D Global PBPM: H' = 1200 + REA 18.56; forecast 6% is above TW 5% x 1.003, so P* = 1.05315
    b_ad = (1200 + 0.5 * (1200 / 0.97 - 1200)) * (2 / 3 * 1.05 + 1 / 3 * 1.05 * 1.003) * (1 - 0.03) * (
        1 - 0.03 * (1 - 0.6))
    assert abs(d0.benchmark_pbpm.sel(track="global").values[0, 0] - b_ad) < CENT
    # every year and track by the same rules
    mu = np.array([0.05, 0.04, 0.05])
    n = np.array([90, 2, 8])
    costs = np.array([14_400.0, 110_000.0, 55_000.0])
    h, r = costs / 12, costs / 12 / 0.97
    rea = np.minimum(0.5 * (r - h), 0.05 * h)
    conv = [0, 0, 0, 0, 0, 0.2, 0.4, 0.6, 0.8, 1.0]
    cm = [-0.05, -0.08, -0.10, -0.10, -0.10, -0.10, -0.10, -0.10, -0.10, -0.10]
    earn = 1 - 0.03 * (1 - 0.6)
    cum = {"global": 0.0, "professional": 0.0}
    for t in range(10):
        tw = (1 + mu) ** (t + 1)
        p_star = np.minimum((1 + mu + 0.01) ** (t + 1), tw * (1 + 0.003 * (t + 1)))
        u = 2 / 3 * tw + 1 / 3 * p_star
        spend = (n * costs * tw * (1 + cm[t])).sum()
        assert abs(d0.expenditure.values[t].sum() - spend) < CENT
        for track, adj, disc in (("global", rea, 0.03), ("professional", 0.0, 0.0)):
            b_pbpm = ((1 - conv[t]) * (h + adj) + conv[t] * r) * u * (1 - disc) * earn
            bench_usd = (b_pbpm * n * 12).sum()
            gross = bench_usd - spend
            rate = gross / bench_usd
            if track == "global":
                share = 1.0 * rate                            # first Global band, 100%
                assert 0 < rate <= 0.15
            else:
                share = 0.5 * rate if rate <= 0.10 else 0.05 + 0.35 * (min(rate, 0.15) - 0.10)
                assert 0 < rate <= 0.15
            shared = 0.98 * share * bench_usd
            x = d0.sel(track=track)
            assert np.allclose(x.benchmark_pbpm.values[t], b_pbpm, rtol=1e-12), (track, t)
            assert abs(x.benchmark.values[t] - bench_usd) < CENT, (track, t)
            assert abs(x.gross_savings.values[t] - gross) < CENT, (track, t)
            assert abs(x.shared_savings.values[t] - shared) < CENT, (track, t)
            assert abs(x.net_settlement.values[t] - shared) < CENT, (track, t)
            cum[track] += shared
    for track in cum:
        assert abs(float(d0.cumulative_settlement.sel(track=track)) - cum[track]) < CENT


def test_end_to_end_higher_spending_stop_loss(monkeypatch):
    cfg = degenerate(**{"aco.mix.aged_disabled": 0.90, "aco.mix.esrd": 0.0, "aco.mix.high_needs": 0.10,
                        "aco.historical_to_regional": 1.05, "trend.forecast_bias": -0.01,
                        "population.high_needs.mean_annual_cost": 300_000.0, "quality.mean": 0.9,
                        "policy.stop_loss.enabled": True, "policy.stop_loss.neutrality": 0.95,
                        "policy.settlement.sequestration_on_losses": True, "aco.operating_cost_pbpm": 10.0})
    ds, model = _simulate(cfg, monkeypatch)
    _check_stationary_identity(model, [14_400.0, 110_000.0, 300_000.0])
    d0 = ds.isel(draw=0)
    # PY2027 on paper: each High Needs member spends 315,000; stop-loss 0.5 x 125,000 + 0.75 x 65,000 = 111,250
    # the stored payout is what the ACO receives: after the 0.95 budget-neutrality factor
    assert abs(d0.stop_loss_payout.values[0, 2] - 0.95 * 10 * (0.5 * 125_000 + 0.75 * (315_000 - 250_000))) < CENT
    charge = 1.1 * 111_250 / 12                               # PBPM, priced before the year
    spend = 90 * 14_400 * 1.05 + 10 * 315_000
    net_spend = spend - 0.95 * 10 * 111_250 + 120 * charge
    # forecast 4% is below TW 5% x (1 - 0.2%): P* = 1.05 x 0.998; higher-spending: H' = H, 1.75% discount
    u = 2 / 3 * 1.05 + 1 / 3 * 1.05 * 0.998
    earn = 1 - 0.03 * (1 - 0.9)
    bench_g = (1200 * 1080 + 25_000 * 120) * u * (1 - 0.0175) * earn
    gross_g = bench_g - net_spend
    assert gross_g < 0 and gross_g / bench_g > -0.15        # a loss in the first Global band
    g = d0.sel(track="global")
    assert abs(g.stop_loss_charge.values[0] - 120 * charge) < CENT
    assert abs(g.benchmark.values[0] - bench_g) < CENT
    assert abs(g.gross_savings.values[0] - gross_g) < CENT
    assert abs(g.shared_savings.values[0] - 0.98 * gross_g) < CENT              # loss sequestered (switch on)
    assert abs(g.add_on_payments.values[0] - 0.015 * bench_g) < CENT            # admin add-on 1.5%
    assert abs(g.net_settlement.values[0] - (0.98 * gross_g + 0.015 * bench_g - 10.0 * 1200)) < CENT
    # PY2029 (t = 3): discount 2.25%, guardrail 0.6%, attachments trended by 1.05^2
    tw3 = 1.05**3
    pay3 = 0.5 * (250_000 - 125_000) * 1.05**2 + 0.75 * (300_000 * tw3 - 250_000 * 1.05**2)
    charge3 = 1.1 * pay3 / 12
    net3 = (90 * 14_400 + 10 * 300_000) * tw3 - 0.95 * 10 * pay3 + 120 * charge3
    bench3 = (1200 * 1080 + 25_000 * 120) * (2 / 3 * tw3 + 1 / 3 * tw3 * (1 - 0.006)) * (1 - 0.0225) * earn
    gross3 = bench3 - net3
    rate3 = gross3 / bench3
    assert -0.15 < rate3 < 0
    assert abs(g.gross_savings.values[2] - gross3) < CENT
    assert abs(g.net_settlement.values[2] - (0.98 * gross3 + 0.015 * bench3 - 10.0 * 1200)) < CENT
    # Professional, same spending: no discount, 50% of the loss in its first band
    bench3_p = bench3 / (1 - 0.0225)
    gross3_p = bench3_p - net3
    assert -0.10 < gross3_p / bench3_p < 0
    pr = d0.sel(track="professional")
    assert abs(pr.shared_savings.values[2] - 0.98 * 0.5 * gross3_p) < CENT


def test_end_to_end_mssp_truncation_and_rebasing(monkeypatch):
    cm = [-0.5, -0.4, -0.3, -0.2, -0.1, -0.1, -0.1, -0.1, -0.1, -0.1]
    # one $430,000 cap for every population and no regional adjustment, so the figures can be worked by hand
    # (the preset's per-population percentile caps and regional adjustment have their own tests)
    cfg = degenerate(**{"policy.preset": "mssp_enhanced", "aco.mix.aged_disabled": 0.98, "aco.mix.esrd": 0.0,
                        "aco.mix.high_needs": 0.02, "population.high_needs.mean_annual_cost": 900_000.0,
                        "aco.care_management_effect": cm, "quality.mean": 0.85,
                        "policy.stop_loss.truncation_percentile": None, "policy.stop_loss.truncation_cap": 430_000.0,
                        "policy.benchmark.rea_share": 0.0, "policy.benchmark.rea_share_negative": 0.0})
    ds, _ = _simulate(cfg, monkeypatch)
    d0 = ds.isel(draw=0, track=0)
    assert np.all(np.isfinite(d0.benchmark.values)), "an empty population (no ESRD) must not poison the benchmark"
    tw = 1.05 ** np.arange(1, 11)
    cmv = np.array(cm)
    # 98 A&D members at 14,400; 2 High Needs at 900,000 x growth x (1 + cm), always above the $430,000 cap
    # (start-year dollars, trended by national growth): each is truncated to 430,000 x 1.05^t
    hn_x = 900_000 * tw * (1 + cmv)
    assert np.all(hn_x > 430_000 * tw / 1.05)
    assert np.allclose(d0.stop_loss_payout.values[:, 2], 2 * (hn_x - 430_000 * tw / 1.05), atol=CENT)
    net_spend = 98 * 14_400 * tw * (1 + cmv) + 2 * 430_000 * tw / 1.05
    # MSSP truncates the benchmark years too: the High Needs base PBPM is the cap in 2026 dollars
    h_hn = 430_000 / 1.05 / 12                                 # 34,126.98
    assert abs(d0.benchmark_pbpm.values[0, 2] - h_hn * 1.05) < CENT
    assert abs(d0.benchmark_pbpm.values[0, 0] - 1200 * 1.05) < CENT       # A&D below the cap: untouched
    for t in range(5):                                         # PY2027-2031: historical benchmark x TW
        bench_usd = (1200 * 98 * 12 + h_hn * 2 * 12) * tw[t]
        gross = bench_usd - net_spend[t]
        assert abs(gross - 98 * 14_400 * tw[t] * -cmv[t]) < CENT       # only care management saves
        share = min(0.75 * gross / bench_usd, 0.20)
        assert abs(d0.benchmark.values[t] - bench_usd) < CENT, t
        assert abs(d0.shared_savings.values[t] - 0.98 * share * bench_usd) < CENT, t
    assert 0.75 * (0.5 * 98 * 14_400 * 1.05) / d0.benchmark.values[0] > 0.20
    assert abs(d0.shared_savings.values[0] - 0.98 * 0.20 * d0.benchmark.values[0]) < CENT   # capped at 20%
    # PY2032 rebasing: realised PBPM (net of truncation) of PY2029-31 weighted 10/30/60, each trended to
    # PY2031 by TW, then x U_t / U_2031. A&D: 1200 x TW_2031 x (0.1 x 0.7 + 0.3 x 0.8 + 0.6 x 0.9) = x 0.85;
    # High Needs: the trended cap again. Spending at 0.9 against a benchmark at 0.85: a loss.
    for t in range(5, 10):
        bench_usd = 1200 * tw[t] * (0.1 * 0.7 + 0.3 * 0.8 + 0.6 * 0.9) * 98 * 12 + h_hn * tw[t] * 2 * 12
        gross = bench_usd - net_spend[t]
        rate = gross / bench_usd
        loss_share = min(max(1 - 0.75 * 0.85, 0.40), 0.75)     # 36.25% floored at 40%
        assert -0.15 / loss_share < rate < 0
        assert abs(d0.benchmark.values[t] - bench_usd) < CENT, t
        assert abs(d0.shared_savings.values[t] - loss_share * rate * bench_usd) < CENT, t   # not sequestered
