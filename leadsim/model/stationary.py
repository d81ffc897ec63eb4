"""The stationary aligned cohort: what "mean annual cost" and "risk score 1" refer to.

Deaths favour high latent risk, so the surviving aligned population is healthier than a fresh
``N(0, 1)`` cohort, and entrants arrive with ``N(0, 1)``. A cohort that started from ``N(0, 1)`` would
drift toward that equilibrium over the first years and show a spurious fall in spending of several
percent. leadsim calibrates to the equilibrium instead:

- ``mean_annual_cost`` is the population's per-capita spending (per member-year of exposure) in the
  stationary cohort, so the kernel draws ``(m / kappa_p) Q_p(z)`` with ``kappa_p`` from this module;
- risk scores are divided by the stationary member-month-weighted mean score, so the base-year cohort's
  mean risk score is 1 (``RS_0 = 1`` in ``docs/methodology.md`` §2.5);
- the initial cohort's base-year latent is drawn from the stationary start-of-year law of its population
  (inverse cdf on the grid, each grid point's mass spread uniformly over its bin), so PY2027 starts in
  equilibrium.

The equilibrium is computed deterministically by iterating the cohort's year-to-year law on a latent
grid (transitions, AR(1) move, deaths, entrants, exits) until it settles, for a stable aligned count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leadsim.model.marginals import GRID_ZMAX, conditional_mean_table, death_probability, interp_table, normal_weights

__all__ = ["Stationary", "stationary_cohort"]

_H = 1.0 / 32.0


@dataclass(frozen=True)
class Stationary:
    """Per-population calibration constants of the stationary cohort (arrays of shape (3,))."""

    kappa: np.ndarray        # expected spending per member-year per unit of Q
    score_norm: np.ndarray   # stationary member-month-weighted mean of the raw risk score
    init_mean: np.ndarray    # mean of a continuing member's latent at the start of a year
    init_sd: np.ndarray      # sd of the same
    entrant_share: np.ndarray  # entrants' share of the beneficiaries aligned during a year
    latent_grid: np.ndarray    # (G,) latent grid of the law below
    latent_law: np.ndarray     # (3, G) probabilities of a continuing member's latent during a year
    entrant_mix: np.ndarray    # (3,) population mix of entrants that keeps the aligned mix at ``mix``
    equilibrium_mix: np.ndarray  # (3,) start-of-year aligned mix at equilibrium (= ``mix`` when reachable)
    init_nodes: np.ndarray     # (G + 1,) bin edges of the start-of-year law below
    init_cdf: np.ndarray       # (3, G + 1) its cdf at the edges (0 ... 1): the initial cohort's latent law


def _transition(rho: float, z: np.ndarray) -> np.ndarray:
    s = np.sqrt(max(1.0 - rho * rho, 1e-12))
    k = np.exp(-0.5 * ((z[:, None] - rho * z[None, :]) / s) ** 2)
    return k / k.sum(axis=0, keepdims=True)


def stationary_cohort(qtab: np.ndarray, prostab: np.ndarray, conctab: np.ndarray, concurrent: np.ndarray,
                      rho: np.ndarray, mortality: np.ndarray, beta: np.ndarray, death_mult: np.ndarray,
                      exit_rate: np.ndarray, sig_r: np.ndarray, mix: np.ndarray, hn_rate: float,
                      esrd_rate: float, iterations: int = 300) -> Stationary:
    """Iterate the cohort law to equilibrium and return the calibration constants.

    Parameters
    ----------
    qtab, prostab, conctab : ndarray (3, G)
        Mean-1 quantile table and raw score tables on the kernel's latent grid.
    concurrent : ndarray (3,) of bool
    rho, mortality, beta, death_mult, exit_rate, sig_r : ndarray (3,)
    mix : ndarray (3,)
        Configured aligned mix: the population shares of the beneficiaries aligned at the start of a year.
    hn_rate, esrd_rate : float
        Annual A&D -> High Needs and -> ESRD transition probabilities.

    Notes
    -----
    State: the mass ``f_p(z)`` of continuing members by latent at the start of a year (total aligned
    count normalised to 1). Entrants fill the vacancies ``E = 1 - sum_p |f_p|`` population by population
    so that the aligned mix is the configured one: ``E e_p = max(0, m_p - |f_p|)`` renormalised, so
    ``|f_p| + E e_p = m_p`` whenever every gap is non-negative. At the fixed point ``e`` is the entrant
    mix whose equilibrium is ``m`` (the kernel draws entrants with it). When the A&D transitions alone
    bring more members into ESRD or High Needs than ``m_p`` can hold, no entrant mix reaches ``m``: that
    population gets no entrants and ``equilibrium_mix`` reports where the mix settles.
    One year: A&D transitions; ``g_p = K_p f_p`` (the AR(1) move); deaths
    ``D_p(z)``; entrants fill ``1 - sum f`` with ``N(0, 1)`` latents by the mix (six months, half the
    annual draw, no death); survivors and entrants stay with probability ``1 - e_p``. Spending,
    member-months and scores are accumulated over the last year of the iteration.
    """
    z = -GRID_ZMAX + _H * np.arange(round(2 * GRID_ZMAX / _H) + 1)
    phi = normal_weights(z)
    q = np.stack([interp_table(qtab[p], z) for p in range(3)])
    pros = np.stack([interp_table(prostab[p], z) for p in range(3)])
    # expected concurrent score given z_t: E_nu[C(r z + sqrt(1 - r^2) nu)]
    conc_given_z = np.stack([interp_table(conditional_mean_table(conctab[p], sig_r[p], normalise=False), z)
                             for p in range(3)])
    dz = np.stack([death_probability(z, mortality[p], beta[p]) for p in range(3)])
    kmat = [_transition(rho[p], z) for p in range(3)]
    mm_given_next = 12.0 * (1.0 - dz) + 6.0 * dz
    mix = np.asarray(mix, dtype=float)
    f = np.outer(mix, phi)
    emix = mix.copy()
    start_mix = mix.copy()
    spend = np.zeros(3)
    months = np.zeros(3)
    scores = np.zeros(3)
    share = np.zeros(3)
    law = np.tile(phi, (3, 1))
    for _ in range(iterations):
        f = f.copy()
        counts = f.sum(axis=1)
        gap = np.maximum(mix - counts, 0.0)
        emix = gap / gap.sum() if gap.sum() > 1e-15 else mix
        start_mix = counts + max(0.0, 1.0 - counts.sum()) * emix
        moved = esrd_rate * f[0], min(hn_rate, 1.0 - esrd_rate) * f[0]  # as the kernel: ESRD first
        f[0] = f[0] - moved[0] - moved[1]
        f[1] = f[1] + moved[0]
        f[2] = f[2] + moved[1]
        entrants = max(0.0, 1.0 - f.sum())
        nxt = np.empty_like(f)
        for p in range(3):
            g = kmat[p] @ f[p]
            if g.sum() > 1e-12:
                law[p] = g / g.sum()
            ent = entrants * emix[p] * phi
            spend[p] = g @ ((1.0 - dz[p]) * q[p] + dz[p] * death_mult[p] * q[p]) + 0.5 * (ent @ q[p])
            months[p] = g @ mm_given_next[p] + 6.0 * ent.sum()
            if concurrent[p]:
                scores[p] = (g * mm_given_next[p]) @ conc_given_z[p] + 6.0 * (ent @ conc_given_z[p])
            else:
                mm_prev = kmat[p].T @ mm_given_next[p]
                scores[p] = (f[p] * mm_prev) @ pros[p] + 6.0 * ent.sum()
            total = f[p].sum() + ent.sum()
            share[p] = min(1.0, max(0.0, ent.sum() / total)) if total > 1e-12 else 0.0
            nxt[p] = (1.0 - exit_rate[p]) * ((1.0 - dz[p]) * g + ent)
        f = nxt
    kappa = np.ones(3)
    norm = np.ones(3)
    mean = np.zeros(3)
    sd = np.ones(3)
    nodes = np.concatenate([[z[0] - 0.5 * _H], z + 0.5 * _H])
    cdf = np.zeros((3, z.size + 1))
    for p in range(3):
        start = f[p] if f[p].sum() > 1e-12 else phi
        cdf[p, 1:] = np.cumsum(start) / start.sum()
        cdf[p, -1] = 1.0
        if months[p] > 1e-9:
            kappa[p] = spend[p] / (months[p] / 12.0)
            norm[p] = scores[p] / months[p]
        mass = f[p].sum()
        if mass > 1e-12:
            mean[p] = f[p] @ z / mass
            sd[p] = np.sqrt(max(f[p] @ (z - mean[p]) ** 2 / mass, 1e-12))
    return Stationary(kappa, norm, mean, sd, share, z, law, emix, start_mix / start_mix.sum(), nodes, cdf)
