"""Settlement: stop-loss charge, gross savings, risk corridors, sequestration, add-ons (``docs/methodology.md`` §3).

Plain numpy, vectorised over draws. Sign convention: positive is money to the ACO, negative is owed to
CMS. Order per year: expenditure with stop-loss -> gross savings -> corridors -> sequestration ->
add-ons -> net settlement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leadsim.config import Config, TrackPolicy, shock_path
from leadsim.ledger.benchmark import is_higher_spending, rule_change_years, track_policy
from leadsim.schedules import marginal_bands

__all__ = [
    "Settlement",
    "corridor_share",
    "discounted_total",
    "financial_guarantee",
    "financial_guarantee_by_year",
    "narrowed",
    "settle",
    "settled_years",
]


def narrowed(track: TrackPolicy, scale: float) -> TrackPolicy:
    """The track with every savings and loss corridor band edge multiplied by ``scale`` (a rule change).

    Notes
    -----
    ``scale < 1`` narrows the bands: the ACO's share drops to the next band's sooner, so it bears less of
    a large saving or loss (``docs/model.md``, the ``rule_change`` stress scenario). Caps and minimum
    savings/loss rates are unchanged.
    """
    return track.model_copy(update={"savings_breakpoints": [b * scale for b in track.savings_breakpoints],
                                    "loss_breakpoints": [b * scale for b in track.loss_breakpoints]})


def settled_years(cfg: Config) -> np.ndarray:
    """Boolean per performance year: whether the year is settled (False after ``terminated_after``)."""
    end = cfg.policy.settlement.terminated_after
    years = np.asarray(cfg.years)
    return np.ones(years.shape, bool) if end is None else years <= end


def corridor_share(rate: np.ndarray, track: TrackPolicy, quality: np.ndarray | None = None) -> np.ndarray:
    """The ACO's shared fraction of benchmark for a savings rate ``r`` (signed, per marginal bands).

    Notes
    -----
    Savings (``r > 0``) and losses (``r < 0``) each have a table of marginal bands on ``|r|``
    (``docs/methodology.md`` §3.4). A minimum savings/loss rate zeroes sharing inside it (first dollar once
    exceeded) [MSSP]. For MSSP ENHANCED (``quality_loss_share``) the loss share is
    ``1 - s_0 q`` bounded by ``loss_share_bounds`` (40%-75%), with ``s_0`` the first savings share
    (75%) [MSSP]. Caps on shared savings and losses are fractions of the benchmark. ``r = 0`` shares
    nothing. The share is continuous and non-decreasing in ``r`` except at a minimum savings/loss rate,
    where MSSP's first-dollar rule makes it jump by design.
    """
    r = np.asarray(rate, dtype=float)
    a = np.abs(r)
    sav = marginal_bands(a, track.savings_breakpoints, track.savings_shares)
    if track.quality_loss_share:
        q = np.broadcast_to(np.asarray(quality if quality is not None else 1.0), r.shape)
        lo, hi = track.loss_share_bounds
        loss = np.clip(1.0 - track.savings_shares[0] * q, lo, hi) * a
    else:
        loss = marginal_bands(a, track.loss_breakpoints, track.loss_shares)
    if track.savings_cap is not None:
        sav = np.minimum(sav, track.savings_cap)
    if track.loss_cap is not None:
        loss = np.minimum(loss, track.loss_cap)
    sav = np.where(r < track.minimum_savings_rate, 0.0, sav) if track.minimum_savings_rate > 0 else sav
    loss = np.where(-r < track.minimum_loss_rate, 0.0, loss) if track.minimum_loss_rate > 0 else loss
    return np.where(r > 0, sav, np.where(r < 0, -loss, 0.0))


def financial_guarantee(cfg: Config) -> float:
    """Financial guarantee in force for the first performance year, USD (:func:`financial_guarantee_by_year`)."""
    return float(financial_guarantee_by_year(cfg)[0])


def financial_guarantee_by_year(cfg: Config) -> np.ndarray:
    """Financial guarantee in USD per performance year, recomputed each year on that year's basis.

    Returns
    -------
    ndarray, shape (years,)
        ``G_t = share x sum_p n_t m_p prod_{s < t} (1 + mu_p)``: a share (default 4%) of the annualised Parts
        A+B spending of the year before performance year ``t``, at expected trend.

    Notes
    -----
    ``docs/methodology.md`` §3.7: 2-4% of prior Parts A+B spending [LEAD], default 4% [LEAD-2]. The
    amount is set annually before the year, as REACH sets its guarantee each performance year [REACH],
    so it grows with expected spending (about 60% over ten years at 5% trend) instead of staying at
    its PY2027 amount. PY2027's basis is the base year: the initial cohort's size times the population
    mean annual costs (untruncated: the ACO's actual spending); later years trend each population at its
    expected national growth ``mu_p`` and follow the configured aligned count ``n_t``.
    """
    mix = cfg.aco.mix
    n_years = cfg.simulation.years
    n_t = cfg.aco.beneficiaries * (1.0 + cfg.aco.growth) ** np.arange(n_years)
    mu = cfg.trend.national_mean.ordered()
    spend = np.zeros(n_years)
    for j, name in enumerate(("aged_disabled", "esrd", "high_needs")):
        spend = spend + getattr(mix, name) * cfg.population[name].mean_annual_cost * (1.0 + mu[j]) ** np.arange(
            n_years)
    return cfg.policy.settlement.financial_guarantee * n_t * spend


@dataclass(frozen=True)
class Settlement:
    """One track's settlement, arrays of shape (draws, years) unless noted. USD; positive to the ACO."""

    benchmark: np.ndarray
    stop_loss_charge: np.ndarray
    gross_savings: np.ndarray
    savings_rate: np.ndarray
    shared_savings: np.ndarray
    sequestration: np.ndarray
    add_on_payments: np.ndarray
    operating_cost: np.ndarray
    net_settlement: np.ndarray
    cumulative_settlement: np.ndarray  # (draws,)
    pcc_advance: np.ndarray
    cash_settlement: np.ndarray


def discounted_total(net: np.ndarray, rate: float) -> np.ndarray:
    """The years' results ``net[draw, year]`` summed, discounted at ``rate`` to the first year.

    A fixed-order sum over years (not ``net @ disc``: BLAS rounding depends on how many draws are in the chunk,
    which broke bit-identical results across ``chunk_draws``).
    """
    disc = (1.0 + rate) ** -np.arange(net.shape[1])
    total = np.zeros(net.shape[0])
    for t in range(net.shape[1]):
        total = total + net[:, t] * disc[t]
    return total


def settle(cfg: Config, track_name: str, benchmark_pbpm: np.ndarray, member_months: np.ndarray,
           expenditure: np.ndarray, stop_loss_payout: np.ndarray, charge_pbpm: np.ndarray,
           quality: np.ndarray) -> Settlement:
    """Settle one track for every draw and year.

    Parameters
    ----------
    benchmark_pbpm : ndarray (draws, years, 3)
        Final benchmark (after discount and withhold).
    member_months, expenditure, stop_loss_payout : ndarray (draws, years, 3)
        From the cohort kernel; ``stop_loss_payout`` is the outlier relief (stop-loss payout, or the
        amount removed by truncation).
    charge_pbpm : ndarray (years, 3) or (draws, years, 3)
        Stop-loss charge PBPM: priced before the year at expected trend
        (:func:`leadsim.model.outliers.price_stop_loss`), or per draw at the realised national trend
        (:func:`leadsim.model.outliers.price_stop_loss_realised`).
    quality : ndarray (draws, years)

    Notes
    -----
    ``benchmark = sum_p B_p months_p``; ``gross_savings = benchmark - (E - payout x neutrality +
    charge)``; ``r = gross / benchmark`` over all populations together; shared = corridor share of
    ``r`` x benchmark; sequestration (2%) reduces positive shared savings, and losses when switched on
    [LEAD-2]: with the switch on, the loss owed is scaled by ``1 - 2%`` (the ACO owes 2% less, the
    mirror of the savings rule) [ASSUMED]; the ``sequestration`` output is then negative.
    Sequestration comes after any MSSP cap. Add-ons: administrative 1.5% of benchmark for
    higher-spending ACOs [LEAD], rural add-on and High Performers Pool bonus as shares of benchmark
    [ASSUMED 0], all on the final benchmark dollars of the track (after discount and withhold)
    [ASSUMED: "benchmark dollars" read as the benchmark the ACO is settled against]; ``net = shared +
    add-ons - operating cost``. Primary Care Capitation changes cash timing only: the enhanced PCC
    advance ``a = pcc_enhanced x benchmark`` [LEAD-2] is paid during the year and recouped at settlement,
    so it nets out of the year's result and is not in ``net_settlement`` (the accrual view). The cash
    view is ``cash_settlement = net_settlement - a``: what changes hands at settlement, so the cash owed
    in a loss year includes the recoupment (the financial guarantee backs this amount). Base PCC is a
    reduction of FFS claims paid, not an advance, and does not enter either view.
    Cumulative settlement sums the years discounted at ``discount_rate`` to the first year.

    Stress-scenario rules (``docs/model.md``): a ``policy.rule_change`` settles its years on the corridors
    of :func:`narrowed`; ``euc_loss_relief`` ``e_t`` multiplies a year's shared loss (before sequestration)
    by ``1 - e_t`` (MSSP's extreme-and-uncontrollable-circumstances rule, 42 CFR 425.605(f): the share of
    the year in the emergency times the share of beneficiaries in affected areas); after
    ``terminated_after`` the shared savings, sequestration, add-ons, operating cost, PCC advance and net
    settlement are 0 (the benchmark and gross savings are still reported, as the counterfactual).
    """
    track = track_policy(cfg, track_name)
    st = cfg.policy.settlement
    b = cfg.policy.benchmark
    neutrality = cfg.policy.stop_loss.neutrality
    bench = np.einsum("dyp,dyp->dy", benchmark_pbpm, member_months)
    charge_pbpm = np.asarray(charge_pbpm, dtype=float)
    if charge_pbpm.ndim == 2:
        charge = np.einsum("yp,dyp->dy", charge_pbpm, member_months)
    else:
        charge = np.einsum("dyp,dyp->dy", charge_pbpm, member_months)
    relief = stop_loss_payout.sum(axis=2) * (neutrality if cfg.policy.stop_loss.enabled else 1.0)
    net_spend = expenditure.sum(axis=2) - relief + charge
    gross = bench - net_spend
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(bench > 0, gross / bench, 0.0)
    share = corridor_share(rate, track, quality)
    rc = cfg.policy.rule_change
    if rc is not None and rc.corridor_scale != 1.0:  # narrower corridors from the rule change's year
        share = np.where(rule_change_years(cfg)[None, :], corridor_share(rate, narrowed(track, rc.corridor_scale),
                                                                         quality), share)
    shared_before = share * bench
    if st.euc_loss_relief is not None:  # extreme and uncontrollable circumstances: losses forgiven in part
        euc = np.asarray(shock_path(st.euc_loss_relief, net_spend.shape[1]))[None, :]
        shared_before = np.where(shared_before < 0, shared_before * (1.0 - euc), shared_before)
    seq_rate = np.where(shared_before > 0, st.sequestration,
                        st.sequestration if st.sequestration_on_losses else 0.0)
    sequestration = shared_before * seq_rate
    shared = shared_before - sequestration
    add_rate = (b.admin_addon if is_higher_spending(cfg) else 0.0) + (
        b.rural_addon if cfg.aco.rural else 0.0) + b.high_performers_bonus
    add_on = add_rate * bench
    operating = cfg.aco.operating_cost_pbpm * member_months.sum(axis=2)
    net = shared + add_on - operating
    advance = b.pcc_enhanced * bench
    if st.terminated_after is not None:  # the model ended early: later years settle nothing
        on = settled_years(cfg)[None, :]
        shared, sequestration, add_on, operating, net, advance = (
            np.where(on, a, 0.0) for a in (shared, sequestration, add_on, operating, net, advance))
    cumulative = discounted_total(net, st.discount_rate)
    return Settlement(bench, charge, gross, rate, shared, sequestration, add_on, operating, net, cumulative,
                      advance, net - advance)
