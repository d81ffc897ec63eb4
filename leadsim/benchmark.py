"""The LEAD benchmark of each draw, year, population and track (methodology §2).

Plain numpy, vectorised over draws. Amounts are per beneficiary-month (PBPM); growth factors are
cumulative from the base year (2026) to the performance year. Each rule is its own function, named as in
the methodology, so a reader finds it in one place; :func:`benchmark_pbpm` applies them in the order of
methodology §3: trend -> rate-book blend and adjustments -> risk adjustment -> discount -> withhold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leadsim.config import Config, TrackPolicy, per_year

__all__ = [
    "BenchmarkParts",
    "benchmark_pbpm",
    "blended_update",
    "convergence_weights",
    "discount_path",
    "guardrailed_prospective",
    "historical_adjustment",
    "is_higher_spending",
    "marginal_bands",
    "reach_rta_update",
    "risk_adjustment",
    "two_way_trend",
    "withhold_factor",
]


def marginal_bands(x: np.ndarray, breakpoints: list[float] | np.ndarray,
                   shares: list[float] | np.ndarray) -> np.ndarray:
    """``sum_k s_k clip(x - b_k, 0, b_{k+1} - b_k)`` with ``b_K = inf``: a marginal band schedule.

    Used for risk corridors (on ``|savings rate|``), stop-loss bands (on dollars) and the REACH RTA
    pass-through. ``x >= 0``.
    """
    x = np.asarray(x, dtype=float)
    b = np.asarray(breakpoints, dtype=float)
    s = np.asarray(shares, dtype=float)
    upper = np.append(b[1:], np.inf)
    out = np.zeros_like(x)
    for lo, hi, share in zip(b, upper, s, strict=True):
        out = out + share * np.clip(x - lo, 0.0, hi - lo)
    return out


def is_higher_spending(cfg: Config) -> bool:
    """Whether the ACO is *higher-spending*: historical baseline above the regional rate (``H > R``)."""
    return cfg.aco.historical_to_regional > 1.0


def historical_adjustment(cfg: Config, track: TrackPolicy) -> np.ndarray:
    """REA or PSA added to the historical baseline, PBPM per population.

    Notes
    -----
    ``REA = rea_share (R - H)`` floored at 0 [LEAD] and capped at ``rea_cap`` (``rea_cap_renewing`` for
    ACOs renewing from MSSP) of the national per-capita cost [LEAD-2]; positive REA for Global only
    [LEAD-2]. ``PSA = psa_share x prior savings PBPM`` capped at ``psa_cap`` of national [LEAD-2]. The
    ACO gets ``max(REA, PSA)`` when REA-eligible (Global), else PSA.
    """
    b = cfg.policy.benchmark
    h = np.array([p.mean_annual_cost for p in cfg.population.ordered()]) / 12.0
    r = h / cfg.aco.historical_to_regional
    nat = np.array([p.national_annual_cost or p.mean_annual_cost for p in cfg.population.ordered()]) / 12.0
    cap = (b.rea_cap_renewing if cfg.aco.renewing_from_mssp else b.rea_cap) * nat
    rea = np.clip(b.rea_share * (r - h), 0.0, cap)
    psa = np.minimum(b.psa_share * cfg.aco.prior_savings_pbpm, b.psa_cap * nat)
    return np.maximum(rea, psa) if track.rea_eligible else psa


def two_way_trend(national: np.ndarray, regional: np.ndarray, national_weight: float) -> np.ndarray:
    """``TW_t = w N_t + (1 - w) G_t`` on cumulative national/regional growth factors [ASSUMED w = 0.25]."""
    return national_weight * national + (1.0 - national_weight) * regional


def guardrailed_prospective(prospective: np.ndarray, tw: np.ndarray, hi: np.ndarray,
                            lo: np.ndarray) -> np.ndarray:
    """``P*_t = clamp(P_t, TW_t (1 - g_lo,t), TW_t (1 + g_hi,t))`` [LEAD-2 PY2027; later years ASSUMED]."""
    return np.clip(prospective, tw * (1.0 - lo[:, None]), tw * (1.0 + hi[:, None]))


def blended_update(tw: np.ndarray, p_star: np.ndarray, acpt_weight: float) -> np.ndarray:
    """``U_t = (1 - w_p) TW_t + w_p P*_t`` [LEAD-2; MSSP ACPT weight 1/3]."""
    return (1.0 - acpt_weight) * tw + acpt_weight * p_star


def reach_rta_update(prospective: np.ndarray, tw: np.ndarray, deadband: float, breakpoints: list[float],
                     shares: list[float]) -> np.ndarray:
    """REACH-style trend: prospective x retrospective trend adjustment (RTA) [REACH].

    Notes
    -----
    ``delta = TW_t / P_t - 1``. No adjustment while ``|delta| <= deadband`` (1%); beyond it the
    adjustment applied is ``sign(delta) sum_k s_k clip(|delta| - b_k, ...)``: the ACO bears 100% of
    the RTA up to 4%, 50% between 4% and 8%, none beyond (methodology §4).
    """
    delta = tw / prospective - 1.0
    applied = np.sign(delta) * marginal_bands(np.abs(delta), breakpoints, shares)
    applied = np.where(np.abs(delta) <= deadband, 0.0, applied)
    return prospective * (1.0 + applied)


def convergence_weights(cfg: Config) -> np.ndarray:
    """Rate-book weight ``c_t`` per year (0 through PY2031, then toward 1.0 [LEAD; path ASSUMED])."""
    return np.asarray(per_year(cfg.policy.benchmark.convergence, cfg.simulation.years))


def discount_path(cfg: Config, track: TrackPolicy) -> np.ndarray:
    """Benchmark discount ``d_t`` per year: higher-spending 1.75% rising 0.25pp/yr to 3%, lower 3% [LEAD-2]."""
    path = track.discount_higher if is_higher_spending(cfg) else track.discount_lower
    return np.asarray(per_year(path, cfg.simulation.years))


def risk_adjustment(risk_score: np.ndarray, coding_drift: np.ndarray, caps: np.ndarray,
                    reference: np.ndarray | float = 1.0) -> np.ndarray:
    """``clamp((RS_t + c (t - 2026)) / RS_0, 1 - k, 1 + k)``, ``k`` = 3% (A&D, ESRD), 4% (High Needs) [LEAD-2]."""
    ratio = (risk_score + coding_drift[:, None]) / reference
    return np.clip(ratio, 1.0 - caps, 1.0 + caps)


def withhold_factor(quality: np.ndarray, withhold: float) -> np.ndarray:
    """``1 - w (1 - q_t)``: the 3% quality withhold, earned back in proportion to the quality score [LEAD]."""
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
                   spending_pbpm: np.ndarray | None = None) -> BenchmarkParts:
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

    Notes
    -----
    ``B = [(1 - c_t) H' + c_t R] x U_t x riskadj x (1 - d_t) x (1 - w (1 - q_t))`` (methodology §2).
    With every growth rate zero and neutral risk, the benchmark stays at its base-year level ``H'``.
    Rebasing (``rebase_years``, MSSP) replaces ``H' U_t`` from the rebase year on by the weighted
    realised spending PBPM of the three prior years, each trended to the last of them by ``TW``, times
    ``U_t / U_{r-1}``, and risk-adjusts against the score of year ``r - 1``.
    """
    b = cfg.policy.benchmark
    track = cfg.policy.track(track_name)
    assert track is not None
    n_years = cfg.simulation.years
    years = np.asarray(cfg.years)
    pops = cfg.population.ordered()
    h = np.array([p.mean_annual_cost for p in pops]) / 12.0
    r = h / cfg.aco.historical_to_regional
    h_adj = h + historical_adjustment(cfg, track)

    tw = two_way_trend(_cum(national_growth), _cum(regional_growth), cfg.trend.national_weight)
    p_cum = np.cumprod(1.0 + prospective_growth, axis=0)[None, :, :]
    if b.trend_method == "blend":
        hi = np.asarray(per_year(b.guardrail_hi, n_years))
        lo = np.asarray(per_year(b.guardrail_lo, n_years))
        update = blended_update(tw, guardrailed_prospective(p_cum, tw, hi, lo), b.acpt_weight)
    else:
        update = reach_rta_update(p_cum, tw, b.rta_deadband, b.rta_breakpoints, b.rta_shares)

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
        weights, idx = weights[keep] / weights[keep].sum(), idx[keep]
        last = t_r - 1
        h_reb = sum(w * spending_pbpm[:, i, :] * tw[:, last, :] / tw[:, i, :]
                    for w, i in zip(weights, idx, strict=True))
        base[:, t_r:, :] = h_reb[:, None, :] * update[:, t_r:, :] / update[:, last:last + 1, :]
        ref = risk_score[:, last:last + 1, :] + drift[last]
        radj[:, t_r:, :] = risk_adjustment(risk_score[:, t_r:, :], drift[t_r:], caps, ref)

    before = base * radj
    after = before * (1.0 - discount_path(cfg, track))[None, :, None]
    final = after * withhold_factor(quality, b.withhold)[:, :, None]
    return BenchmarkParts(before, after, final, update)
