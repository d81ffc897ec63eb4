"""Macro random drivers of each draw: national, regional and ACO growth, the forecast, quality scores.

These are the systematic risks shared by every beneficiary of a draw (``docs/calibration.md`` §1). They are drawn
from the keyed streams of :mod:`leadsim.model.rng` at slot ``MACRO_SLOT``, vectorised over the draws of a chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from leadsim.config import Config
from leadsim.model.rng import MACRO_SLOT, N_STREAMS, Stream, key_np, normals_np, uniforms_np, word_np

__all__ = ["MacroPaths", "ar1", "macro_paths", "prospective_growth"]


@dataclass(frozen=True)
class MacroPaths:
    """Annual growth rates and quality scores of a set of draws.

    Attributes
    ----------
    national_growth, regional_growth, aco_growth : ndarray, shape (draws, years, 3)
        Annual per-capita growth rates by population (``n_t``, ``g_t = n_t + d_t``, ``g_t + a_t``).
    quality : ndarray, shape (draws, years)
        Quality score ``q_t`` in [0, 1].
    """

    national_growth: np.ndarray
    regional_growth: np.ndarray
    aco_growth: np.ndarray
    quality: np.ndarray


def ar1(shocks: np.ndarray, phi: float, sd: float) -> np.ndarray:
    """AR(1) deviations ``e_t = phi e_{t-1} + sd eps_t`` with ``e_{-1} = 0``, along the last axis.

    Notes
    -----
    Starting from zero (not the stationary law) reflects that the base year's growth is known when the
    benchmark is set; the variance reaches ``sd^2 / (1 - phi^2)`` after a few years.
    """
    out = np.empty_like(shocks)
    prev = np.zeros(shocks.shape[:-1])
    for t in range(shocks.shape[-1]):
        prev = phi * prev + sd * shocks[..., t]
        out[..., t] = prev
    return out


def prospective_growth(cfg: Config) -> np.ndarray:
    """The prospective (forecast) annual growth per year and population, fixed at model start.

    Returns
    -------
    ndarray, shape (years, 3)
        ``mu_p + forecast_bias``: the expected national growth plus an optional forecast miss
        (recent misses were 4-5% of benchmark in either direction; ``docs/calibration.md`` §1).
    """
    mu = np.asarray(cfg.trend.national_mean.ordered()) + cfg.trend.forecast_bias
    return np.broadcast_to(mu, (cfg.simulation.years, 3)).copy()


def macro_paths(cfg: Config, draws: np.ndarray) -> MacroPaths:
    """Draw the macro paths of the given draw indices (keyed: independent of chunking).

    Notes
    -----
    National growth ``n_{p,t} = mu_p + e_t`` with one AR(1) national shock shared by the populations;
    regional ``g_{p,t} = n_{p,t} + d_t`` and the ACO's own ``g_{p,t} + a_t`` add AR(1) deviations
    ``d``, ``a`` (``docs/calibration.md`` §1). Quality ``q_t ~ Beta`` with the configured mean and sd, drawn by
    inversion of a keyed uniform.
    """
    tr = cfg.trend
    n_years = cfg.simulation.years
    draws = np.asarray(draws, dtype=np.uint64)
    k = key_np(cfg.simulation.seed, draws, MACRO_SLOT)[:, None]
    base = (np.arange(n_years, dtype=np.uint64) + np.uint64(1)) * np.uint64(N_STREAMS)
    eps_nat, eps_reg = normals_np(word_np(k, base + np.uint64(Stream.NATIONAL)))
    eps_aco, _ = normals_np(word_np(k, base + np.uint64(Stream.ACO)))
    _, u_q = uniforms_np(word_np(k, base + np.uint64(Stream.QUALITY)))

    e = ar1(eps_nat, tr.national_ar, tr.national_sd)
    d = ar1(eps_reg, tr.regional_ar, tr.regional_sd)
    a = ar1(eps_aco, tr.aco_ar, tr.aco_sd)
    mu = np.asarray(tr.national_mean.ordered())
    national = mu[None, None, :] + e[:, :, None]
    regional = national + d[:, :, None]
    aco = regional + a[:, :, None]

    qm, qs = cfg.quality.mean, cfg.quality.sd
    if qs == 0.0:
        quality = np.full(u_q.shape, qm)
    else:
        nu = qm * (1.0 - qm) / qs**2 - 1.0
        quality = special.betaincinv(qm * nu, (1.0 - qm) * nu, u_q + 0.5 / 4294967296.0)
    return MacroPaths(national, regional, aco, quality)
