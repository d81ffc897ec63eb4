"""Plain numpy reference twins of the numba kernels in :mod:`leadsim.model._kernel`.

:func:`cohort_reference` follows the rules of :func:`leadsim.model._kernel.simulate_draw` step by step for one
draw: a Python loop over the years, numpy vectorised over the beneficiary slots, and the same keyed random
numbers (the ``*_np`` twins of :mod:`leadsim.model.rng`). It exists for two reasons:

- tests check that the kernel and this twin agree to rounding (counts exactly; money to ~1e-12 relative:
  only the order of floating-point summation and libm's last bits differ);
- the speed benchmark uses it as the "straightforward vectorised numpy implementation of the same model".

It is deliberately simple: no numba, no chunking, no threads. Read it next to the module docstring of
:mod:`leadsim.model._kernel`, which states the model of one draw (steps 1-7 below follow the same numbering).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leadsim.model._kernel import OUT_FIELDS, RELIEF_STOP_LOSS, RELIEF_TRUNCATION, KernelParams
from leadsim.model.marginals import interp_table
from leadsim.model.rng import N_STREAMS, Stream, key_np, normals_np, uniforms_np, word_np

__all__ = ["ReferencePanel", "cohort_reference", "floor_reference", "reference_chunk"]

_MM, _SPEND, _PAYOUT, _RISKW, _DEATHS, _ENTRANTS, _OUTLIERS = (OUT_FIELDS.index(f) for f in (
    "member_months", "expenditure", "stop_loss_payout", "risk_weighted_months", "deaths", "entrants", "outliers"))
_AD, _ESRD, _HN = 0, 1, 2
_VACANT, _CONTINUING, _ENTRANT = 0, 1, 2


@dataclass(frozen=True)
class ReferencePanel:
    """The slot-level panel of one draw, as the kernel records it with ``record=True``.

    Attributes
    ----------
    population : ndarray of int8, shape (slots, years)
        Population index (0 A&D, 1 ESRD, 2 High Needs), -1 where the slot is vacant.
    member_months : ndarray of float, shape (slots, years)
    spending : ndarray of float, shape (slots, years)
        Annual spending in USD (gross of stop-loss).
    died : ndarray of bool, shape (slots, years)
    """

    population: np.ndarray
    member_months: np.ndarray
    spending: np.ndarray
    died: np.ndarray


def _interp_rows(table: np.ndarray, pop: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``table[pop[j]]`` interpolated at ``z[j]`` for every j (rows picked per element)."""
    out = np.empty_like(z)
    for p in range(table.shape[0]):
        sel = pop == p
        if sel.any():
            out[sel] = interp_table(table[p], z[sel])
    return out


def _relief(kp: KernelParams, x: np.ndarray, scale: np.ndarray, pop: np.ndarray) -> np.ndarray:
    """Outlier relief per beneficiary-year: banded stop-loss payout, or the amount truncated (step 5).

    ``scale`` is the attachment trend of each element and ``pop`` its population (the truncation cap is
    per population). Bands are few, so the loop is over bands, in the
    kernel's order (the payout sums band by band).
    """
    relief = np.zeros_like(x)
    if kp.relief_mode == RELIEF_STOP_LOSS:
        n_bands = kp.attach.shape[0]
        for b in range(n_bands):
            lo = kp.attach[b] * scale
            hi = kp.attach[b + 1] * scale if b + 1 < n_bands else np.full_like(x, np.inf)
            above = x > lo
            relief = np.where(above, relief + kp.sl_share[b] * (np.minimum(x, hi) - lo), relief)
    elif kp.relief_mode == RELIEF_TRUNCATION:
        cap = kp.trunc_cap[pop] * scale
        relief = np.where(x > cap, x - cap, 0.0)
    return relief


def inverse_cdf_np(nodes: np.ndarray, cdf: np.ndarray, p: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Twin of :func:`leadsim.model._kernel.inverse_cdf`, vectorised over ``(p, u)`` (same operations, same bits)."""
    out = np.empty(u.shape)
    for q in np.unique(p):
        sel = p == q
        c = cdf[q]
        uu = u[sel]
        hi = np.clip(np.searchsorted(c, uu, side="left"), 1, c.size - 1)  # cdf[hi - 1] < u <= cdf[hi]
        lo = hi - 1
        val = nodes[lo] + (uu - c[lo]) / (c[hi] - c[lo]) * (nodes[hi] - nodes[lo])
        val = np.where(uu <= c[0], nodes[0], np.where(uu >= c[-1], nodes[-1], val))
        out[sel] = val
    return out


def cohort_reference(kp: KernelParams, draw: int, mean: np.ndarray, scale: np.ndarray, *,
                     return_panel: bool = False) -> np.ndarray | tuple[np.ndarray, ReferencePanel]:
    """Simulate one draw of the aligned cohort with numpy (twin of :func:`leadsim.model._kernel.simulate_draw`).

    Parameters
    ----------
    kp : KernelParams
        Draw-independent inputs, from :func:`leadsim.engine.cohort_model`.
    draw : int
        Draw index (part of the random-number address).
    mean : ndarray, shape (years, 3)
        This draw's realised mean annual cost per unit of ``Q`` (from :func:`leadsim.engine.realised_means`).
    scale : ndarray, shape (years, 3)
        This draw's trend of the stop-loss attachments, truncation cap and outlier threshold.
    return_panel : bool
        Also return the slot-level panel (what :func:`leadsim.trajectories` shows).

    Returns
    -------
    out : ndarray, shape (years, 3, len(OUT_FIELDS))
        Per year and population, the fields of :data:`leadsim.model._kernel.OUT_FIELDS`.
    panel : ReferencePanel
        Only with ``return_panel``.

    Notes
    -----
    One year (docs/calibration.md §1; numbering as in :mod:`leadsim.model._kernel`):

    0. vacant slots, lowest index first, take entrants until the aligned count reaches ``target[t]``;
    1. A&D -> ESRD if ``u_pop < esrd_rate``, else -> High Needs if ``u_pop < esrd_rate + hn_rate``; an
       entrant's population is drawn from the cumulative mix with the same uniform;
    2. latent ``z_t = rho z_{t-1} + sqrt(1 - rho^2) eta`` (entrant: ``z = eta``);
    3. death if ``beta z_t + sqrt(1 - beta^2) xi > Phi^{-1}(1 - q)`` (continuing members only): six
       months, spending ``k x``;
    4. ``x = mean_t,p * factor * Q_p(z_t)`` (zero when ``z_t <= z0_p``); entrants: factor 0.5, six months;
    5. stop-loss / truncation relief, outlier count (thresholds times ``scale``);
    6. score: prospective ``R_p(z_{t-1})`` (entrant: ``entrant_score``), replaced by the concurrent
       ``C_p(r z_t + sqrt(1 - r^2) nu)`` for concurrent populations;
    7. decedents leave; survivors exit if ``u_exit <= e_p``.

    Random numbers: ``(eta, xi)`` is the Box-Muller pair of the LATENT word, ``(u_exit, u_pop)`` the
    uniforms of the EVENTS word and ``nu`` the first normal of the SIGNAL word, all at counter
    ``(t + 1) * N_STREAMS + stream`` of the slot's key; the base-year latent uses counter ``LATENT``
    (year index 0). The kernel sums slot by slot, this twin with numpy's pairwise sums, so money fields
    agree to rounding, not bit for bit.
    """
    m = kp
    n_years = m.target.shape[0]
    n_slots = int(max(m.target.max(initial=0), m.init_pop.shape[0]))
    n_init = m.init_pop.shape[0]
    rho_s = np.sqrt(1.0 - m.rho * m.rho)
    beta_s = np.sqrt(1.0 - m.beta * m.beta)
    sig_s = np.sqrt(1.0 - m.sig_r * m.sig_r)

    keys = key_np(int(m.seed), np.uint64(draw), np.arange(n_slots, dtype=np.uint64))
    z = np.zeros(n_slots)
    pop = np.zeros(n_slots, dtype=np.int8)
    state = np.full(n_slots, _VACANT, dtype=np.int8)
    ip = m.init_pop.astype(np.int64)
    first_year_entrant = ip >= 3  # aligned during the first year, population preset
    state[:n_init] = np.where(first_year_entrant, _ENTRANT, _CONTINUING)
    pop[:n_init] = np.where(first_year_entrant, ip - 3, ip)
    ic = np.where(first_year_entrant, 0, ip)
    z0_init = inverse_cdf_np(m.init_nodes, m.init_cdf, ic, uniforms_np(word_np(keys[:n_init], Stream.LATENT))[0])
    z[:n_init] = np.where(first_year_entrant, 0.0, z0_init)
    preset = np.zeros(n_slots, dtype=bool)
    preset[:n_init] = first_year_entrant
    active = n_init

    out = np.zeros((n_years, 3, len(OUT_FIELDS)))
    if return_panel:
        rec_pop = np.full((n_slots, n_years), -1, dtype=np.int8)
        rec_mm = np.zeros((n_slots, n_years))
        rec_spend = np.zeros((n_slots, n_years))
        rec_died = np.zeros((n_slots, n_years), dtype=bool)

    for t in range(n_years):
        # 0. entrants fill vacancies, lowest slot first
        need = int(m.target[t]) - active
        if need > 0:
            vacant = np.flatnonzero(state == _VACANT)[:need]
            state[vacant] = _ENTRANT

        idx = np.flatnonzero(state != _VACANT)
        k = keys[idx]
        base = np.uint64((t + 1) * N_STREAMS)
        e1, e2 = normals_np(word_np(k, base + np.uint64(Stream.LATENT)))
        u_exit, u_pop = uniforms_np(word_np(k, base + np.uint64(Stream.EVENTS)))
        ent = state[idx] == _ENTRANT
        cont = ~ent

        # 1. population: entrants from the mix, A&D members may move to ESRD or High Needs
        p_ent = np.where(u_pop < m.mix_cum[0], _AD, np.where(u_pop < m.mix_cum[1], _ESRD, _HN))
        p_ent = np.where(preset[idx], pop[idx], p_ent)
        p_old = pop[idx].astype(np.int64)
        p_cont = np.where((p_old == _AD) & (u_pop < m.esrd_rate), _ESRD,
                          np.where((p_old == _AD) & (u_pop < m.esrd_rate + m.hn_rate), _HN, p_old))
        p = np.where(ent, p_ent, p_cont)

        # 2. latent risk; 6a. prospective score from last year's latent
        zp = z[idx]
        zn = np.where(ent, e1, m.rho[p] * zp + rho_s[p] * e1)
        score = np.where(ent, m.entrant_score[p], _interp_rows(m.prostab, p, zp))

        # 3. deaths (continuing members only) and exposure
        died = cont & (m.beta[p] * zn + beta_s[p] * e2 > m.death_c[p])
        mm = np.where(died | ent, 6.0, 12.0)
        factor = np.where(ent, 0.5, np.where(died, m.death_mult[p], 1.0))

        # 6b. concurrent score from this year's latent through a noisy signal
        conc = m.concurrent[p]
        if conc.any():
            nu = normals_np(word_np(k[conc], base + np.uint64(Stream.SIGNAL)))[0]
            pc = p[conc]
            score[conc] = _interp_rows(m.conctab, pc, m.sig_r[pc] * zn[conc] + sig_s[pc] * nu)

        # 4. spending
        x = np.where(zn <= m.z0[p], 0.0, mean[t, p] * factor * _interp_rows(m.qtab, p, zn))

        # 5. outlier relief and outlier count
        sc = scale[t, p]
        relief = _relief(m, x, sc, p)
        outlier = x > m.outlier_thr * sc

        # accumulate per population
        for q in range(3):
            s = p == q
            o = out[t, q]
            o[_MM] = mm[s].sum()
            o[_SPEND] = x[s].sum()
            o[_PAYOUT] = relief[s].sum()
            o[_RISKW] = (mm[s] * score[s]).sum()
            o[_DEATHS] = np.count_nonzero(died[s])
            o[_ENTRANTS] = np.count_nonzero(ent[s])
            o[_OUTLIERS] = np.count_nonzero(outlier[s])
        if return_panel:
            rec_pop[idx, t] = p
            rec_mm[idx, t] = mm
            rec_spend[idx, t] = x
            rec_died[idx, t] = died

        # 7. deaths and exits leave vacancies
        z[idx] = zn
        pop[idx] = p
        leaves = died | (u_exit <= m.exit_rate[p])
        state[idx] = np.where(leaves, _VACANT, _CONTINUING)
        preset[idx] = False
        active = int(np.count_nonzero(~leaves))

    if return_panel:
        return out, ReferencePanel(rec_pop, rec_mm, rec_spend, rec_died)
    return out


def reference_chunk(kp: KernelParams, draws: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """:func:`cohort_reference` for several draws (twin of :func:`leadsim.engine.run_cohort`).

    Parameters
    ----------
    kp : KernelParams
    draws : ndarray of int, shape (n,)
    mean, scale : ndarray, shape (n, years, 3)

    Returns
    -------
    ndarray, shape (n, years, 3, len(OUT_FIELDS))
    """
    draws = np.asarray(draws, dtype=np.int64)
    return np.stack([cohort_reference(kp, int(d), mean[j], scale[j]) for j, d in enumerate(draws)])


def floor_reference(seed: int, draws: np.ndarray, n_slots: int, n_years: int, sigma: float) -> np.ndarray:
    """Numpy twin of :func:`leadsim.model._kernel.floor_chunk`: per draw, the sum of one keyed lognormal per slot-year.

    Parameters
    ----------
    seed : int
    draws : ndarray of int, shape (n,)
    n_slots, n_years : int
    sigma : float
        Log-sd of the lognormal ``exp(sigma * eps)``.

    Returns
    -------
    ndarray, shape (n,)
    """
    draws = np.asarray(draws, dtype=np.int64)
    out = np.empty(draws.shape[0])
    slots = np.arange(n_slots, dtype=np.uint64)
    counters = (np.arange(n_years, dtype=np.uint64) + np.uint64(1)) * np.uint64(N_STREAMS)
    for j, d in enumerate(draws):
        k = key_np(seed, np.uint64(d), slots)[:, None]
        eps = normals_np(word_np(k, counters[None, :]))[0]
        out[j] = np.exp(sigma * eps).sum()
    return out
