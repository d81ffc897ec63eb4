"""The LEAD benchmark of each draw, year, population and track (``docs/methodology.md`` §2).

Plain numpy, vectorised over draws. Amounts are per beneficiary-month (PBPM); growth factors are
cumulative from the base year (2026) to the performance year. Each rule is its own function, named as in
``docs/methodology.md``, so a reader finds it in one place; :func:`benchmark_pbpm` applies them in the order of
``docs/methodology.md`` §3: trend -> rate-book blend and adjustments -> risk adjustment -> discount -> withhold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leadsim.config import TRACKS, Config, TrackPolicy, per_year
from leadsim.schedules import marginal_bands

__all__ = [
    "BenchmarkParts",
    "benchmark_pbpm",
    "blended_update",
    "convergence_weights",
    "discount_path",
    "guardrailed_prospective",
    "historical_adjustment",
    "historical_baseline",
    "is_higher_spending",
    "reach_rta_update",
    "risk_adjustment",
    "rule_change_years",
    "track_policy",
    "two_way_trend",
    "withhold_factor",
]


def track_policy(cfg: Config, track_name: str) -> TrackPolicy:
    """The policy of one track, or a ``ValueError`` naming the tracks the policy settles."""
    track = cfg.policy.track(track_name) if track_name in TRACKS else None
    if track is None:
        raise ValueError(f"track {track_name!r} is not defined by policy {cfg.policy.name!r} "
                         f"(policy.tracks = {list(cfg.policy.tracks)})")
    return track


def is_higher_spending(cfg: Config) -> bool:
    """Whether the ACO is *higher-spending*: historical baseline above the regional rate (``H > R``).

    Notes
    -----
    ``H > R`` [LEAD-2] is ``historical_to_regional > 1``. An ACO exactly at its regional rate is treated
    as *lower-spending* (docs/methodology.md §2.1 says "``H > R`` ... else lower-spending"), so it gets the flat
    3% discount and no administrative add-on.
    """
    return cfg.aco.historical_to_regional > 1.0


def historical_baseline(cfg: Config, base_truncation: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Historical baseline ``H`` and regional rate ``R``, PBPM per population, before REA/PSA.

    Parameters
    ----------
    cfg : Config
    base_truncation : ndarray (3,), optional
        Expected base-year spending removed by truncation, PBPM per population
        (:func:`leadsim.model.outliers.expected_truncation`); zeros when omitted or when no truncation cap
        is set.

    Notes
    -----
    ``H = mean_annual_cost / 12`` (``docs/design.md``) and ``R = H / historical_to_regional``
    (``docs/methodology.md`` §2.1, inputs). When per-beneficiary truncation is the outlier rule (MSSP
    [MSSP]), ``H`` is put on the truncated basis by subtracting ``base_truncation``, and ``R`` follows from
    it [ASSUMED]:
    otherwise a benchmark from untruncated history against truncated performance-year spending hands the
    ACO a systematic saving (about 1% of benchmark at the default calibration). Stop-loss is different:
    the ACO buys it with a charge, so the benchmark stays untruncated.
    """
    h = np.array([p.mean_annual_cost for p in cfg.population.ordered()]) / 12.0
    if base_truncation is not None and cfg.policy.stop_loss.truncates:
        h = h - np.asarray(base_truncation, dtype=float)
    return h, h / cfg.aco.historical_to_regional


def historical_adjustment(cfg: Config, track: TrackPolicy, base_truncation: np.ndarray | None = None) -> np.ndarray:
    """REA or PSA added to the historical baseline, PBPM per population.

    Notes
    -----
    ``REA = rea_share (R - H)`` when ``R >= H`` and ``rea_share_negative (R - H)`` when ``R < H``, capped
    at ``rea_cap`` (``rea_cap_renewing`` for ACOs renewing from MSSP) of the national per-capita cost
    above and at ``-rea_negative_cap`` of it below. LEAD: negative values floored at 0 [LEAD]
    (``rea_share_negative = 0``), cap 5% [LEAD-2]; positive REA for Global only [LEAD-2].
    MSSP's regional adjustment is the same formula with weights by direction and both caps
    [MSSP, 42 CFR 425.656: first agreement period 35% when the ACO spends less than its region, 15% when
    more; positive adjustments capped at 5% of national per-capita FFS expenditure; negative adjustments
    limited to -1.5% of it from the CY2024 PFS final rule] (``configs/policy/mssp_enhanced.toml``).
    ``PSA = psa_share x prior savings PBPM`` capped at ``psa_cap`` of national [LEAD-2]. The
    ACO gets ``max(REA, PSA)`` when REA-eligible (Global), else PSA. The methodology's "PSA capped at 5%"
    (``docs/methodology.md`` §2.2) does not name the base; the REA's base (national per-capita cost,
    ``national_annual_cost``, default ``mean_annual_cost``) is used for both. Adjustments are per
    population; the max is taken per population.
    """
    b = cfg.policy.benchmark
    h, r = historical_baseline(cfg, base_truncation)
    nat = np.array([p.national_annual_cost or p.mean_annual_cost for p in cfg.population.ordered()]) / 12.0
    cap = (b.rea_cap_renewing if cfg.aco.renewing_from_mssp else b.rea_cap) * nat
    gap = r - h
    rea = np.where(gap >= 0.0, np.minimum(b.rea_share * gap, cap),
                   np.maximum(b.rea_share_negative * gap, -b.rea_negative_cap * nat))
    psa = np.minimum(b.psa_share * cfg.aco.prior_savings_pbpm, b.psa_cap * nat)
    # a negative regional adjustment (MSSP) is not lifted to 0 by an absent PSA
    return np.where(psa > 0.0, np.maximum(rea, psa), rea) if track.rea_eligible else psa


def two_way_trend(national: np.ndarray, regional: np.ndarray, national_weight: float) -> np.ndarray:
    """``TW_t = w N_t + (1 - w) G_t`` on cumulative national/regional growth factors.

    Notes
    -----
    ``docs/methodology.md`` §2.3; ``w = 0.25`` [ASSUMED; MSSP weights national by the ACO's share of its region].
    """
    return national_weight * national + (1.0 - national_weight) * regional


def guardrailed_prospective(prospective: np.ndarray, tw: np.ndarray, hi: np.ndarray,
                            lo: np.ndarray) -> np.ndarray:
    """``P*_t = clamp(P_t, TW_t (1 - g_lo,t), TW_t (1 + g_hi,t))`` on cumulative factors.

    Notes
    -----
    ``docs/methodology.md`` §2.3: 0.3% / 0.2% in PY2027 [LEAD-2], widening by that much each later year
    [ASSUMED]. ``hi`` and ``lo`` are indexed by performance year from ``simulation.start_year`` (for the
    PY2027 entrant this is the calendar path of ``docs/methodology.md`` §2.3).
    """
    return np.clip(prospective, tw * (1.0 - lo[:, None]), tw * (1.0 + hi[:, None]))


def blended_update(tw: np.ndarray, p_star: np.ndarray, acpt_weight: float) -> np.ndarray:
    """``U_t = (1 - w_p) TW_t + w_p P*_t``.

    Notes
    -----
    ``docs/methodology.md`` §2.3, ``w_p = 1/3`` [LEAD-2; MSSP ACPT weight].
    """
    return (1.0 - acpt_weight) * tw + acpt_weight * p_star


def reach_rta_update(prospective: np.ndarray, reference: np.ndarray, deadband: float, breakpoints: list[float],
                     shares: list[float]) -> np.ndarray:
    """REACH-style trend: prospective x retrospective trend adjustment (RTA) [REACH].

    Parameters
    ----------
    prospective : ndarray
        Cumulative prospective factor ``P_t``.
    reference : ndarray
        Cumulative actual factor the RTA is measured on: REACH measures it on a national reference
        population [REACH], so :func:`benchmark_pbpm` passes the national factor ``N_t``
        (``rta_reference = "national"``, default); ``"two_way"`` passes the blended ``TW_t`` instead.

    Notes
    -----
    ``delta = A_t / P_t - 1`` with ``A_t`` the reference factor.
    No adjustment while ``|delta| <= deadband`` (1%); beyond it the
    adjustment applied is ``sign(delta) sum_k s_k clip(|delta| - b_k, ...)``: the ACO bears 100% of
    the RTA up to 4%, 50% between 4% and 8%, none beyond (``docs/methodology.md`` §4). The 1% is a threshold, not a
    deductible: once exceeded, the adjustment counts from the first percent (as CMS applies the RTA),
    so the update jumps at ``|delta| = 1%`` by design.
    """
    delta = reference / prospective - 1.0
    applied = np.sign(delta) * marginal_bands(np.abs(delta), breakpoints, shares)
    applied = np.where(np.abs(delta) <= deadband, 0.0, applied)
    return prospective * (1.0 + applied)


def convergence_weights(cfg: Config) -> np.ndarray:
    """Rate-book weight ``c_t`` per performance year.

    Notes
    -----
    ``docs/methodology.md`` §2.4: 0 through PY2031, then toward the full regional rate book in the last five years
    [LEAD]; default linear 0.2 ... 1.0 for PY2032-2036 [ASSUMED]. Indexed from ``simulation.start_year``.
    """
    return np.asarray(per_year(cfg.policy.benchmark.convergence, cfg.simulation.years))


def discount_path(cfg: Config, track: TrackPolicy) -> np.ndarray:
    """Benchmark discount ``d_t`` per performance year.

    Notes
    -----
    ``docs/methodology.md`` §2.6 (Global only): higher-spending ACOs 1.75% in PY2027 rising 0.25 pp a year to 3% in
    PY2032 and after, lower-spending 3% flat [LEAD-2; RFA range 1.75-3% LEAD]. Indexed from
    ``simulation.start_year``; the last value is held.
    """
    path = track.discount_higher if is_higher_spending(cfg) else track.discount_lower
    return np.asarray(per_year(path, cfg.simulation.years))


def risk_adjustment(risk_score: np.ndarray, coding_drift: np.ndarray, caps: np.ndarray,
                    reference: np.ndarray | float = 1.0) -> np.ndarray:
    """``clamp((RS_t + c (t - 2026)) / RS_0, 1 - k, 1 + k)``.

    Notes
    -----
    ``docs/methodology.md`` §2.5: ``k`` = 3% (A&D, ESRD), 4% (High Needs) [LEAD-2]; ``RS_0 = 1``; High Needs scores
    are concurrent [LEAD] (computed by the cohort kernel). Coding drift ``c`` [ASSUMED 0] is added before
    the cap.
    """
    ratio = (risk_score + coding_drift[:, None]) / reference
    return np.clip(ratio, 1.0 - caps, 1.0 + caps)


def rule_change_years(cfg: Config) -> np.ndarray:
    """Boolean per performance year: whether ``policy.rule_change`` is in force (all False without one).

    Notes
    -----
    The mid-model rule change (the ``rule_change`` stress scenario) applies from performance year
    ``policy.rule_change.year`` to the end; earlier years keep the preset's rules (``docs/model.md``).
    """
    rc = cfg.policy.rule_change
    years = np.asarray(cfg.years)
    return np.zeros(years.shape, bool) if rc is None else years >= rc.year


def withhold_factor(quality: np.ndarray, withhold: float | np.ndarray) -> np.ndarray:
    """``1 - w (1 - q_t)``: the quality withhold, earned back in proportion to the quality score.

    Notes
    -----
    ``docs/methodology.md`` §2.7: 3% of the discounted benchmark [LEAD], earned back linearly in ``q_t in [0, 1]``
    (``q = 0.6`` keeps 1.2% of the benchmark) [ASSUMED linear earn-back; Beta quality ASSUMED].
    ``withhold`` may be a per-year array (years,), broadcast against ``quality`` (draws, years).
    """
    return 1.0 - withhold * (1.0 - quality)


@dataclass(frozen=True)
class BenchmarkParts:
    """A track's benchmark PBPM, shape (draws, years, 3), and its steps (for waterfalls).

    ``before_discount`` is after trend, convergence and risk adjustment; ``after_discount`` before the
    withhold; ``final`` after the withhold and earn-back.
    """

    before_discount: np.ndarray
    after_discount: np.ndarray
    final: np.ndarray
    blended_update: np.ndarray


def _cum(growth: np.ndarray) -> np.ndarray:
    return np.cumprod(1.0 + growth, axis=1)


def benchmark_pbpm(cfg: Config, track_name: str, national_growth: np.ndarray, regional_growth: np.ndarray,
                   prospective_growth: np.ndarray, risk_score: np.ndarray, quality: np.ndarray,
                   spending_pbpm: np.ndarray | None = None, base_truncation: np.ndarray | None = None
                   ) -> BenchmarkParts:
    """Benchmark PBPM of one track for every draw, year and population.

    Parameters
    ----------
    cfg : Config
    track_name : {"global", "professional", "enhanced"}
    national_growth, regional_growth : ndarray (draws, years, 3)
        Annual growth rates realised in each draw.
    prospective_growth : ndarray (years, 3)
        Annual forecast growth fixed at model start.
    risk_score : ndarray (draws, years, 3)
        Member-month-weighted mean risk score from the cohort kernel.
    quality : ndarray (draws, years)
    spending_pbpm : ndarray (draws, years, 3), optional
        Realised spending PBPM (net of outlier relief); needed only for rebasing (MSSP comparator).
    base_truncation : ndarray (3,), optional
        Expected base-year spending removed by truncation, PBPM (see :func:`historical_baseline`).

    Notes
    -----
    ``B = [(1 - c_t) H' + c_t R] x U_t x riskadj x (1 - d_t) x (1 - w (1 - q_t))`` (``docs/methodology.md`` §2).
    With every growth rate zero and neutral risk, the benchmark stays at its base-year level ``H'``.
    ``H`` and ``R`` come from :func:`historical_baseline` (on the truncated basis when truncation is the
    outlier rule). Per-year parameters (guardrails, convergence, discount) are indexed by performance
    year from ``simulation.start_year`` and hold their last value.
    Rebasing (``rebase_years``, MSSP) replaces ``H' U_t`` from the rebase year on by the weighted
    realised spending PBPM of the three prior years, each trended to the last of them by ``TW``, times
    ``U_t / U_{r-1}``, and risk-adjusts against the score of year ``r - 1`` [MSSP]. A base year in which a
    population has no member-months has no spending PBPM: it drops out and the other years' weights are
    renormalised; a population with no experience in any base year keeps its un-rebased benchmark
    [ASSUMED; before this rule an empty population, e.g. an ACO without ESRD members, turned every
    rebased year's benchmark into NaN].
    A ``policy.rule_change`` adds ``global_discount_add`` to the Global track's ``d_t`` and
    ``withhold_add`` to ``w`` from its year on (:func:`rule_change_years`).
    """
    b = cfg.policy.benchmark
    track = track_policy(cfg, track_name)
    n_years = cfg.simulation.years
    years = np.asarray(cfg.years)
    h, r = historical_baseline(cfg, base_truncation)
    h_adj = h + historical_adjustment(cfg, track, base_truncation)

    tw = two_way_trend(_cum(national_growth), _cum(regional_growth), cfg.trend.national_weight)
    p_cum = np.cumprod(1.0 + prospective_growth, axis=0)[None, :, :]
    if b.trend_method == "blend":
        hi = np.asarray(per_year(b.guardrail_hi, n_years))
        lo = np.asarray(per_year(b.guardrail_lo, n_years))
        update = blended_update(tw, guardrailed_prospective(p_cum, tw, hi, lo), b.acpt_weight)
    else:
        ref = _cum(national_growth) if b.rta_reference == "national" else tw
        update = reach_rta_update(p_cum, ref, b.rta_deadband, b.rta_breakpoints, b.rta_shares)

    c = convergence_weights(cfg)
    level = (1.0 - c[:, None]) * h_adj[None, :] + c[:, None] * r[None, :]  # (years, 3)
    if b.convergence_cap is not None:
        capped = np.empty_like(level)
        prev = h_adj
        for t in range(n_years):
            capped[t] = np.clip(level[t], prev * (1.0 - b.convergence_cap), prev * (1.0 + b.convergence_cap))
            prev = capped[t]
        level = capped
    base = level[None, :, :] * update

    caps = np.asarray(b.risk_cap.ordered())
    drift = b.coding_intensity * (years - (cfg.simulation.start_year - 1))
    radj = risk_adjustment(risk_score, drift, caps)

    for ry in b.rebase_years:
        t_r = int(ry - cfg.simulation.start_year)
        if t_r < 1 or t_r >= n_years or spending_pbpm is None:
            continue
        weights = np.asarray(b.rebase_weights, dtype=float)
        idx = np.arange(t_r - len(weights), t_r)
        keep = idx >= 0
        weights, idx = weights[keep], idx[keep]
        last = t_r - 1
        # base years without member-months (spending PBPM undefined) drop out and the weights of the others
        # are renormalised; a population with no experience at all keeps its un-rebased benchmark
        trended = spending_pbpm[:, idx, :] * tw[:, last:last + 1, :] / tw[:, idx, :]   # (draws, k, 3)
        seen = np.isfinite(trended)
        w_seen = np.where(seen, weights[None, :, None], 0.0)
        w_total = w_seen.sum(axis=1)                                                     # (draws, 3)
        has = (w_total > 0.0)[:, None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            h_reb = (w_seen * np.where(seen, trended, 0.0)).sum(axis=1) / w_total
        rebased = h_reb[:, None, :] * update[:, t_r:, :] / update[:, last:last + 1, :]
        base[:, t_r:, :] = np.where(has, rebased, base[:, t_r:, :])
        ref = risk_score[:, last:last + 1, :] + drift[last]
        radj[:, t_r:, :] = np.where(has, risk_adjustment(risk_score[:, t_r:, :], drift[t_r:], caps, ref),
                                    radj[:, t_r:, :])

    before = base * radj
    discount, withhold = discount_path(cfg, track), b.withhold
    rc = cfg.policy.rule_change
    if rc is not None:  # mid-model rule change: from its year, a higher Global discount and withhold
        changed = rule_change_years(cfg)
        discount = discount + (rc.global_discount_add * changed if track_name == "global" else 0.0)
        withhold = b.withhold + rc.withhold_add * changed
    after = before * (1.0 - discount)[None, :, None]
    final = after * withhold_factor(quality, withhold)[:, :, None]
    return BenchmarkParts(before, after, final, update)
