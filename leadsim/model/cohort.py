"""The draw-independent cost model of a run: lookup tables, the stationary cohort, the kernel's parameters.

:func:`cohort_model` turns a config into a :class:`CohortModel` once per run (tables are cached, see
:mod:`leadsim.model.cache`); :func:`realised_means` turns a chunk's macro paths into the kernel's per-draw
inputs; :func:`run_cohort` runs the numba kernel on a chunk of draws.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import special

from leadsim.config import Config, per_year
from leadsim.errors import LeadsimWarning
from leadsim.model._kernel import (
    OUT_FIELDS,
    RELIEF_NONE,
    RELIEF_STOP_LOSS,
    RELIEF_TRUNCATION,
    KernelParams,
    cohort_chunk,
)
from leadsim.model.cache import memoize
from leadsim.model.drivers import MacroPaths
from leadsim.model.marginals import SplicedMarginal, conditional_mean_table
from leadsim.model.outliers import price_stop_loss, price_stop_loss_realised, truncation_caps
from leadsim.model.stationary import Stationary, stationary_cohort

__all__ = ["CohortModel", "cohort_model", "initial_populations", "realised_means", "run_cohort", "stop_loss_price"]


@dataclass(frozen=True)
class CohortModel:
    """The draw-independent cost model of a run: the kernel's inputs and what pricing and summaries need."""

    kernel: KernelParams        # everything the numba kernel reads
    init_mean: np.ndarray       # (3,) stationary latent mean of the initial cohort (summary)
    init_sd: np.ndarray         # (3,) stationary latent sd of the initial cohort (summary)
    entrant_share: np.ndarray   # (3,) stationary entrants' share of a year's beneficiaries
    latent_grid: np.ndarray     # (G,) grid of the stationary in-year latent law (pricing only)
    latent_law: np.ndarray      # (3, G) stationary in-year latent law of continuing members (pricing only)
    base_mean: np.ndarray       # (3,) mean annual cost per unit Q, base year (mean / kappa)
    care_management: np.ndarray  # (years,) expected care-management effect (the configured path)
    entrant_mix: np.ndarray     # (3,) entrants' population mix, solved so the equilibrium is the configured mix
    equilibrium_mix: np.ndarray  # (3,) the aligned mix the cohort settles at (= configured mix when reachable)

    @property
    def n_slots(self) -> int:
        """Slots a draw needs (the kernel's own rule)."""
        k = self.kernel
        return int(max(k.target.max(initial=0), k.init_pop.shape[0]))

    @property
    def relief_mode(self) -> int:
        """``RELIEF_NONE``, ``RELIEF_STOP_LOSS`` or ``RELIEF_TRUNCATION`` (:mod:`leadsim.model._kernel`)."""
        return int(self.kernel.relief_mode)


def initial_populations(cfg: Config, entrant_share: np.ndarray | None = None) -> np.ndarray:
    """Population code of each initial slot: deterministic counts from the mix.

    Codes 0-2 (A&D, ESRD, High Needs) are beneficiaries continuing from the base year; codes 3-5 are the
    same populations aligned during the first performance year. A share ``entrant_share[p]`` of each
    population (the stationary cohort's, :mod:`leadsim.model.stationary`) enters during the first year, as in
    every later year, so PY2027 is a stationary year like the others and not a year without churn.
    """
    n = cfg.aco.beneficiaries
    n_esrd = round(n * cfg.aco.mix.esrd)
    n_hn = min(round(n * cfg.aco.mix.high_needs), n - n_esrd)
    counts = [n - n_esrd - n_hn, n_esrd, n_hn]
    share = np.zeros(3) if entrant_share is None else np.asarray(entrant_share)
    parts = []
    for p, c in enumerate(counts):
        n_ent = min(c, max(0, round(c * float(share[p]))))
        parts += [np.full(c - n_ent, p, np.int8), np.full(n_ent, p + 3, np.int8)]
    return np.concatenate(parts)


@memoize(("leadsim.model.marginals", "leadsim.model.stationary", "leadsim.model._kernel"),
         (np.ndarray, np.ndarray, np.ndarray, Stationary))
def _tables(marginals, concurrent, rho, mort, beta, death_mult, exit_rate, sig_r, mix, hn_rate, esrd_rate):
    """The lookup tables (Q, raw prospective and concurrent scores) and the stationary cohort (cached)."""
    qtab = np.stack([SplicedMarginal(*m).table() for m in marginals])
    prostab = np.stack([conditional_mean_table(qtab[j], rho[j]) for j in range(3)])
    conctab = np.stack([conditional_mean_table(qtab[j], sig_r[j]) for j in range(3)])
    st = stationary_cohort(qtab, prostab, conctab, concurrent, rho, mort, beta, death_mult, exit_rate,
                           sig_r, mix, hn_rate, esrd_rate)
    return qtab, prostab, conctab, st


def cohort_model(cfg: Config) -> CohortModel:
    """Build the draw-independent kernel inputs (tables are computed once per run)."""
    pops = cfg.population.ordered()
    marg = [SplicedMarginal(p.zero_share, p.sigma, p.tail_start, p.tail_alpha) for p in pops]
    rho = np.array([p.rho for p in pops])
    sig_r = np.sqrt(np.array([p.risk_model_r2 for p in pops]))
    mort = np.array([p.mortality for p in pops])
    with np.errstate(divide="ignore"):
        death_c = np.where(mort > 0, special.ndtri(1.0 - mort), np.inf)
    mix = cfg.aco.mix
    mix_arr = np.array([mix.aged_disabled, mix.esrd, mix.high_needs])
    beta = np.array([p.death_risk_beta for p in pops])
    death_mult = np.array([p.death_multiplier for p in pops])
    exit_rate = np.array([p.exit_rate for p in pops])
    concurrent = np.array([False, False, True])
    ad = cfg.population.aged_disabled
    qtab, prostab, conctab, st = _tables(tuple((m.zero_share, m.sigma, m.tail_start, m.tail_alpha) for m in marg),
                                         concurrent, rho, mort, beta, death_mult, exit_rate, sig_r, mix_arr,
                                         ad.high_needs_rate, ad.esrd_rate)
    if np.max(np.abs(st.equilibrium_mix - mix_arr)) > 1e-3:
        warnings.warn(f"aco.mix = {mix_arr.round(4).tolist()} is not an equilibrium of the cohort: the A&D "
                      "transitions (population.aged_disabled.high_needs_rate, esrd_rate) alone bring more members "
                      "into ESRD or High Needs than the mix holds, so the mix drifts to "
                      f"{st.equilibrium_mix.round(4).tolist()} (docs/calibration.md §1)", LeadsimWarning,
                      stacklevel=2)
    prostab = prostab / st.score_norm[:, None]
    conctab = conctab / st.score_norm[:, None]
    n_years = cfg.simulation.years
    growth = (1.0 + cfg.aco.growth) ** np.arange(n_years)
    target = np.round(cfg.aco.beneficiaries * growth).astype(np.int64)
    sl = cfg.policy.stop_loss
    mode = RELIEF_STOP_LOSS if sl.enabled else (RELIEF_TRUNCATION if sl.truncates else RELIEF_NONE)
    kernel = KernelParams(
        seed=np.uint64(cfg.simulation.seed),
        target=target,
        init_pop=initial_populations(cfg, st.entrant_share),
        init_nodes=st.init_nodes,
        init_cdf=st.init_cdf,
        qtab=qtab, prostab=prostab, conctab=conctab,
        entrant_score=1.0 / st.score_norm,
        z0=np.array([m.zero_latent for m in marg]),
        rho=rho, death_c=death_c,
        beta=beta,
        death_mult=death_mult,
        exit_rate=exit_rate,
        sig_r=sig_r,
        concurrent=concurrent,
        hn_rate=float(ad.high_needs_rate),
        esrd_rate=float(ad.esrd_rate),
        mix_cum=np.array([st.entrant_mix[0], st.entrant_mix[0] + st.entrant_mix[1]]),
        attach=np.asarray(sl.attachments, dtype=float),
        sl_share=np.asarray(sl.shares, dtype=float),
        relief_mode=mode,
        trunc_cap=truncation_caps(cfg),
        outlier_thr=float(cfg.simulation.outlier_threshold),
    )
    return CohortModel(
        kernel=kernel,
        init_mean=st.init_mean,
        init_sd=st.init_sd,
        entrant_share=st.entrant_share,
        latent_grid=st.latent_grid,
        latent_law=st.latent_law,
        base_mean=np.array([p.mean_annual_cost for p in pops]) / st.kappa,
        care_management=np.asarray(per_year(cfg.aco.care_management_effect, n_years)),
        entrant_mix=st.entrant_mix,
        equilibrium_mix=st.equilibrium_mix,
    )


def stop_loss_price(cfg: Config, model: CohortModel, national_growth: np.ndarray | None = None) -> np.ndarray:
    """Stop-loss charge PBPM at this model's unit means and stationary latent law.

    Without ``national_growth``: the ex-ante price at expected trend, shape (years, 3). With it (draws,
    years, 3): the after-the-fact price at each draw's realised national trend, shape (draws, years, 3)
    (:func:`leadsim.model.outliers.price_stop_loss_realised`).
    """
    if national_growth is None:
        return price_stop_loss(cfg, model.base_mean, model.latent_grid, model.latent_law, model.entrant_share)
    return price_stop_loss_realised(cfg, model.base_mean, model.latent_grid, model.latent_law,
                                    model.entrant_share, national_growth)




def realised_means(model: CohortModel, macro: MacroPaths) -> tuple[np.ndarray, np.ndarray]:
    """Mean annual cost per (draw, year, population) and the attachment trend (start-year dollars).

    ``m_{p,t} = mean_p x prod_{s<=t}(1 + aco_growth) x (1 + care_management_{d,t})`` with the draw's
    realised care-management effect (:func:`leadsim.model.drivers.care_management_paths`); attachments and the
    outlier threshold are trended with the draw's national growth from the first performance year.
    """
    cum_aco = np.cumprod(1.0 + macro.aco_growth, axis=1)
    mean = model.base_mean[None, None, :] * cum_aco * (1.0 + macro.care_management)[:, :, None]
    cum_nat = np.cumprod(1.0 + macro.national_growth, axis=1)
    scale = cum_nat / (1.0 + macro.national_growth[:, :1, :])
    return np.ascontiguousarray(mean), np.ascontiguousarray(scale)


def run_cohort(model: CohortModel, draws: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Run the numba kernel on a set of draws; returns ``out[d, year, population, field]``."""
    out = np.zeros((draws.shape[0], mean.shape[1], 3, len(OUT_FIELDS)))
    cohort_chunk(model.kernel, np.ascontiguousarray(draws, dtype=np.int64), mean, scale, out)
    return out
