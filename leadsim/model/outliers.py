"""Outlier relief priced on the cost model: the stop-loss charge and MSSP's base-year truncation amount.

Both are expectations under the model's own calibration (the spliced marginal and the stationary cohort's
latent law), computed once per run before any draw; the ledger receives them as arrays.
"""

from __future__ import annotations

import numpy as np

from leadsim.config import Config, per_year
from leadsim.config.schema import PopulationConfig
from leadsim.model.marginals import SplicedMarginal, death_probability, latent_grid, normal_weights
from leadsim.schedules import stop_loss_payout

__all__ = ["expected_truncation", "price_stop_loss", "price_stop_loss_realised", "truncation_caps"]


def _population_law(pop: PopulationConfig, z: np.ndarray, law: np.ndarray, entrant_share: np.ndarray | None,
                    j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Cost quantile, death probability and weight of each latent grid point of one population, its expected
    member-months per stationary beneficiary (a decedent counts 6 months) and its entrants' share."""
    q = SplicedMarginal(pop.zero_share, pop.sigma, pop.tail_start, pop.tail_alpha).quantile_of_latent(z)
    dz = death_probability(z, pop.mortality, pop.death_risk_beta)
    w = np.asarray(law, dtype=float)
    months = float(w @ ((1.0 - dz) * 12.0 + dz * 6.0))
    share = 0.0 if entrant_share is None else float(entrant_share[j])
    return q, dz, w, months, share


def price_stop_loss(cfg: Config, unit_mean: np.ndarray, latent_grid: np.ndarray, latent_law: np.ndarray,
                    entrant_share: np.ndarray | None = None) -> np.ndarray:
    """Stop-loss charge PBPM per year and population, priced before the year (closed form).

    Parameters
    ----------
    unit_mean : ndarray (3,)
        Mean annual cost per unit of ``Q`` in the base year (``mean / kappa``, :mod:`leadsim.model.stationary`).
    latent_grid : ndarray (G,)
        Latent grid.
    latent_law : ndarray (3, G)
        Probabilities of a continuing member's latent during a year, per population, on ``latent_grid``
        (the stationary cohort's, :class:`leadsim.model.stationary.Stationary`).
    entrant_share : ndarray (3,), optional
        Entrants' share of the beneficiaries aligned in a year (stationary cohort, the first year
        included); default none.

    Returns
    -------
    ndarray, shape (years, 3)
        ``(1 + loading) x E[payout] / E[member-months]`` under the model's own calibration and expected
        trend; zero when stop-loss is not elected.

    Notes
    -----
    Priced by summation over the stationary cohort's latent law, at the expected mean cost
    ``m_t = unit_mean x (1 + mu_p)^t x (1 + care management)`` with
    attachments trended by expected national growth. A beneficiary dies in the year with probability
    ``D(z) = Phi((beta z - Phi^{-1}(1 - q)) / sqrt(1 - beta^2))`` and then spends ``k`` times the
    annual draw over six months; survivors twelve. A share ``entrant_share`` of the beneficiaries are
    entrants (``z ~ N(0, 1)``, half the annual draw over six months, no death). No macro noise enters
    the price: trend risk stays with the ACO, as with CMS's prospectively priced charge [REACH]; since
    payouts are convex in the mean cost, the realised loading is a little below ``loading`` when trend
    is uncertain.
    """
    sl = cfg.policy.stop_loss
    n_years = cfg.simulation.years
    out = np.zeros((n_years, 3))
    if not sl.enabled:
        return out
    z = np.asarray(latent_grid, dtype=float)
    phi = normal_weights(z)
    mu = np.asarray(cfg.trend.national_mean.ordered())
    cm = np.asarray(per_year(cfg.aco.care_management_effect, n_years))
    attach = np.asarray(sl.attachments)
    shares = np.asarray(sl.shares)
    for j, pop in enumerate(cfg.population.ordered()):
        q, dz, w, months, share = _population_law(pop, z, latent_law[j], entrant_share, j)
        for t in range(n_years):
            m = unit_mean[j] * (1.0 + mu[j]) ** (t + 1) * (1.0 + cm[t])
            a = attach * (1.0 + mu[j]) ** t
            pay = float(w @ ((1.0 - dz) * stop_loss_payout(m * q, a, shares) + dz * stop_loss_payout(
                pop.death_multiplier * m * q, a, shares)))
            s_t = share
            pay_ent = float(phi @ stop_loss_payout(0.5 * m * q, a, shares))
            out[t, j] = (1.0 + sl.loading) * ((1.0 - s_t) * pay + s_t * pay_ent) / (
                (1.0 - s_t) * months + s_t * 6.0)
    return out


def price_stop_loss_realised(cfg: Config, unit_mean: np.ndarray, latent_grid: np.ndarray, latent_law: np.ndarray,
                             entrant_share: np.ndarray | None, national_growth: np.ndarray) -> np.ndarray:
    """Stop-loss charge PBPM per draw, year and population at the draw's realised national trend.

    Parameters
    ----------
    unit_mean, latent_grid, latent_law, entrant_share
        As for :func:`price_stop_loss`.
    national_growth : ndarray (draws, years, 3)
        The draw's realised national growth per population.

    Returns
    -------
    ndarray, shape (draws, years, 3)
        ``(1 + loading) x E[payout | N_t] / E[member-months]``; zeros when stop-loss is not elected.

    Notes
    -----
    The after-the-fact basis (``policy.stop_loss.basis = "realised"``, the default): the charge is the
    expected payout of the year *given the national trend that actually happened*, as REACH's ex-post
    budget neutrality makes charges and payouts balance at the realised national experience [REACH].
    With ``N_t`` the cumulative national factor and attachments trended by ``A_t = N_t / N_1`` (start-year
    dollars), the expected payout at mean cost ``m_t = unit x N_t x (1 + c_t)`` is homogeneous of degree
    one in (cost, attachments), so ``E[payout] = A_t x P(unit x N_1 x (1 + c_t))`` with ``P`` the
    payout at start-year attachments, computed by the same summation over the stationary latent law as
    :func:`price_stop_loss` (``c_t`` the expected care-management path). Only the national trend enters:
    the ACO's own cost level and its region's deviation stay with the ACO. The charge then moves with
    national trend one for one, so stop-loss no longer pays the ACO in high-trend years (the ex-ante basis,
    ``basis = "expected"``, prices at expected trend and leaves that hedge in place).
    """
    sl = cfg.policy.stop_loss
    g = np.asarray(national_growth, dtype=float)
    n_draws, n_years = g.shape[0], g.shape[1]
    out = np.zeros((n_draws, n_years, 3))
    if not sl.enabled:
        return out
    z = np.asarray(latent_grid, dtype=float)
    phi = normal_weights(z)
    cm = np.asarray(per_year(cfg.aco.care_management_effect, n_years))
    attach = np.asarray(sl.attachments)
    shares = np.asarray(sl.shares)
    cum = np.cumprod(1.0 + g, axis=1)
    for j, pop in enumerate(cfg.population.ordered()):
        q, dz, w, months, share = _population_law(pop, z, latent_law[j], entrant_share, j)
        m = (unit_mean[j] * cum[:, :1, j] * (1.0 + cm)[None, :]).reshape(-1, 1)   # (draws x years, 1)
        mq = m * q[None, :]
        # row-wise sums, not a matrix product: BLAS rounding would depend on how many draws are in the chunk
        pay = (((1.0 - dz) * stop_loss_payout(mq, attach, shares)
                + dz * stop_loss_payout(pop.death_multiplier * mq, attach, shares)) * w).sum(axis=1)
        pay_ent = (stop_loss_payout(0.5 * mq, attach, shares) * phi).sum(axis=1)
        per_mm = ((1.0 - share) * pay + share * pay_ent) / ((1.0 - share) * months + share * 6.0)
        trend = cum[:, :, j] / cum[:, :1, j]
        out[:, :, j] = (1.0 + sl.loading) * trend * per_mm.reshape(n_draws, n_years)
    return out


def truncation_caps(cfg: Config) -> np.ndarray:
    """Per-beneficiary truncation cap per population, start-year dollars (``inf`` when not truncating).

    Returns
    -------
    ndarray, shape (3,)
        ``truncation_cap`` for every population, or with ``truncation_percentile = pi`` the national
        ``pi``-quantile of the population's annual spending, trended to the start year:
        ``nat_p x F_p^{-1}(pi) x (1 + mu_p)``.

    Notes
    -----
    MSSP truncates each beneficiary's annual expenditure at the 99th percentile of national
    assignable FFS per-capita expenditure, computed separately for each Medicare enrollment type (ESRD,
    disabled, aged dual, aged non-dual) [MSSP, 42 CFR 425.601(a)(4), 425.605]. leadsim's populations
    stand for the enrollment types; ``F_p`` is the population's mean-1 spliced marginal and ``nat_p`` the
    national per-capita cost (``national_annual_cost``, default ``mean_annual_cost``). At the default
    calibration the A&D cap is about 12 times the mean and the ESRD cap about 5.35 times
    (``docs/calibration.md`` §6). A single dollar cap (``truncation_cap``) applies to every population.
    """
    sl = cfg.policy.stop_loss
    if sl.truncation_cap is not None:
        return np.full(3, float(sl.truncation_cap))
    if sl.truncation_percentile is None:
        return np.full(3, np.inf)
    mu = cfg.trend.national_mean.ordered()
    out = np.empty(3)
    for j, pop in enumerate(cfg.population.ordered()):
        marg = SplicedMarginal(pop.zero_share, pop.sigma, pop.tail_start, pop.tail_alpha)
        nat = pop.national_annual_cost or pop.mean_annual_cost
        out[j] = nat * float(marg.ppf(sl.truncation_percentile)) * (1.0 + mu[j])
    return out


def expected_truncation(cfg: Config) -> np.ndarray:
    """Expected per-beneficiary spending removed by truncation in the base year, PBPM per population.

    Returns
    -------
    ndarray, shape (3,)
        ``E[(m_p Q_p(Z) - cap_0)^+] / 12`` with ``Z ~ N(0, 1)``, ``m_p`` the population's mean annual
        cost and ``cap_0 = cap_p / (1 + mu_p)`` the population's cap (:func:`truncation_caps`) deflated from
        start-year to base-year dollars by the expected national growth; zeros when not truncating.

    Notes
    -----
    MSSP truncates each beneficiary's annual Parts A+B spending at the national 99th percentile in the
    benchmark years *and* in the performance years [MSSP, 42 CFR 425.601/425.605]. The kernel truncates
    the performance years; this is the matching base-year amount, so that the historical baseline is on
    the same truncated basis [ASSUMED: closed form under the population's spliced marginal at its mean
    cost, by quadrature on the kernel's latent grid; the stationary cohort's decedent uplift is left out,
    a second-order difference].
    """
    caps = truncation_caps(cfg)
    out = np.zeros(3)
    if not cfg.policy.stop_loss.truncates:
        return out
    z = latent_grid()
    w = normal_weights(z)
    mu = cfg.trend.national_mean.ordered()
    for j, pop in enumerate(cfg.population.ordered()):
        q = SplicedMarginal(pop.zero_share, pop.sigma, pop.tail_start, pop.tail_alpha).quantile_of_latent(z)
        out[j] = float(w @ np.maximum(pop.mean_annual_cost * q - caps[j] / (1.0 + mu[j]), 0.0)) / 12.0
    return out
