"""Outlier relief priced on the cost model: the stop-loss charge and MSSP's base-year truncation amount.

Both are expectations under the model's own calibration (the spliced marginal and the stationary cohort's
latent law), computed once per run before any draw; the ledger receives them as arrays.
"""

from __future__ import annotations

import numpy as np

from leadsim.config import Config, per_year
from leadsim.model.marginals import SplicedMarginal, death_probability, latent_grid, normal_weights
from leadsim.schedules import stop_loss_payout

__all__ = ["expected_truncation", "price_stop_loss"]


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
        marg = SplicedMarginal(pop.zero_share, pop.sigma, pop.tail_start, pop.tail_alpha)
        q = marg.quantile_of_latent(z)
        dz = death_probability(z, pop.mortality, pop.death_risk_beta)
        w = np.asarray(latent_law[j], dtype=float)
        months = float(w @ ((1.0 - dz) * 12.0 + dz * 6.0))
        share = 0.0 if entrant_share is None else float(entrant_share[j])
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


def expected_truncation(cfg: Config) -> np.ndarray:
    """Expected per-beneficiary spending removed by truncation in the base year, PBPM per population.

    Returns
    -------
    ndarray, shape (3,)
        ``E[(m_p Q_p(Z) - cap_0)^+] / 12`` with ``Z ~ N(0, 1)``, ``m_p`` the population's mean annual
        cost and ``cap_0 = truncation_cap / (1 + mu_p)`` the cap deflated from start-year to base-year
        dollars by the expected national growth; zeros when no truncation cap is set.

    Notes
    -----
    MSSP truncates each beneficiary's annual Parts A+B spending at the national 99th percentile in the
    benchmark years *and* in the performance years [MSSP, 42 CFR 425.601/425.605]. The kernel truncates
    the performance years; this is the matching base-year amount, so that the historical baseline is on
    the same truncated basis [ASSUMED: closed form under the population's spliced marginal at its mean
    cost, by quadrature on the kernel's latent grid; the stationary cohort's decedent uplift is left out,
    a second-order difference].
    """
    cap = cfg.policy.stop_loss.truncation_cap
    out = np.zeros(3)
    if cap is None:
        return out
    z = latent_grid()
    w = normal_weights(z)
    mu = cfg.trend.national_mean.ordered()
    for j, pop in enumerate(cfg.population.ordered()):
        q = SplicedMarginal(pop.zero_share, pop.sigma, pop.tail_start, pop.tail_alpha).quantile_of_latent(z)
        out[j] = float(w @ np.maximum(pop.mean_annual_cost * q - cap / (1.0 + mu[j]), 0.0)) / 12.0
    return out
