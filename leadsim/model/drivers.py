"""Macro random drivers of each draw: national, regional and ACO growth, the forecast, quality scores.

These are the systematic risks shared by every beneficiary of a draw (``docs/calibration.md`` §1). They are drawn
from the keyed streams of :mod:`leadsim.model.rng` at slot ``MACRO_SLOT``, vectorised over the draws of a chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from leadsim.config import Config, per_year, shock_path
from leadsim.model.rng import MACRO_SLOT, N_STREAMS, Stream, key_np, normals_np, uniforms_np, word_np

__all__ = ["MacroPaths", "Shocks", "ar1", "care_management_paths", "keyed_shocks", "level_growth", "macro_paths",
           "paths_from_shocks", "prospective_growth"]


@dataclass(frozen=True)
class MacroPaths:
    """Annual growth rates and quality scores of a set of draws.

    Attributes
    ----------
    national_growth, regional_growth, aco_growth : ndarray, shape (draws, years, 3)
        Annual per-capita growth rates by population: national ``n_t``, regional ``g_t = n_t + d_t``, and
        the ACO's ``(1 + g_t) exp(l_t - l_{t-1}) - 1``, so that the ACO's cumulative factor is the
        region's times ``exp(l_t)``.
    quality : ndarray, shape (draws, years)
        Quality score ``q_t`` in [0, 1].
    aco_level : ndarray, shape (draws, years)
        The ACO's log cost level relative to its region, ``l_t`` (0 in the base year).
    care_management : ndarray, shape (draws, years)
        The realised care-management effect on spending (``-0.03`` = 3% less), see
        :func:`care_management_paths`.
    """

    national_growth: np.ndarray
    regional_growth: np.ndarray
    aco_growth: np.ndarray
    quality: np.ndarray
    aco_level: np.ndarray
    care_management: np.ndarray


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


def level_growth(level: np.ndarray) -> np.ndarray:
    """Growth factors ``exp(l_t - l_{t-1})`` of a log level path along the last axis (``l_{-1} = 0``)."""
    prev = np.concatenate([np.zeros((*level.shape[:-1], 1)), level[..., :-1]], axis=-1)
    return np.exp(level - prev)


def care_management_paths(cfg: Config, eps: np.ndarray) -> np.ndarray:
    """The realised care-management effect per draw and year.

    Parameters
    ----------
    cfg : Config
    eps : ndarray (draws,)
        One keyed standard normal per draw (macro slot, ``Stream.CARE``, year index 0).

    Returns
    -------
    ndarray, shape (draws, years)
        ``c_t (1 + cv eps)``, clipped to ``[-0.9, 0.9]``: the configured path of expected effects ``c_t``
        (``aco.care_management_effect``, last value held) scaled by one factor per draw.

    Notes
    -----
    An ACO does not know in advance how much its care management will save: the scale ``1 + cv eps`` is
    drawn once per draw, so an ACO whose programme works better than planned does so every year
    (``docs/calibration.md`` §1). ``E[effect_t] = c_t`` (before the clip, which only binds at ``|c_t (1 +
    cv eps)| > 0.9``) and ``SD = cv |c_t|``. The default ``cv = 0`` is a known effect; with ``c = -3%``
    and ``cv = 0.5`` the 95% range of the effect is about -0.1% to -5.9%. The normal comes from its own
    keyed stream, so switching the uncertainty on or off leaves every other random number unchanged
    (common random numbers across policies and across values of ``cv``).
    """
    path = np.asarray(per_year(cfg.aco.care_management_effect, cfg.simulation.years))
    scale = 1.0 + cfg.aco.care_management_cv * np.asarray(eps, dtype=float)
    return np.clip(path[None, :] * scale[:, None], -0.9, 0.9)


def prospective_growth(cfg: Config) -> np.ndarray:
    """The prospective (forecast) annual growth per year and population, fixed at model start.

    Returns
    -------
    ndarray, shape (years, 3)
        ``mu_p + forecast_bias + m_t``: the expected national growth plus an optional forecast bias
        (recent misses were 4-5% of benchmark in either direction; ``docs/calibration.md`` §1) and the
        one-off miss ``m_t`` of year ``t`` (``trend.forecast_miss``, the ``forecast_miss`` stress scenario).
    """
    mu = np.asarray(cfg.trend.national_mean.ordered()) + cfg.trend.forecast_bias
    out = np.broadcast_to(mu, (cfg.simulation.years, 3)).copy()
    if cfg.trend.forecast_miss is not None:  # a one-off miss (stress scenario), carried by the cumulative factor
        out = out + np.asarray(shock_path(cfg.trend.forecast_miss, cfg.simulation.years))[:, None]
    return out


@dataclass(frozen=True)
class Shocks:
    """The systematic variates of a set of draws, before they become paths (:func:`paths_from_shocks`).

    Attributes
    ----------
    national, regional, aco : ndarray, shape (draws, years)
        Standard normal innovations of the national and regional AR(1) shocks and of the ACO's log level.
    quality : ndarray, shape (draws, years)
        Uniforms in (0, 1) inverted through the quality score's Beta law.
    care : ndarray, shape (draws,)
        The standard normal of the care-management scale.
    """

    national: np.ndarray
    regional: np.ndarray
    aco: np.ndarray
    quality: np.ndarray
    care: np.ndarray


def keyed_shocks(cfg: Config, draws: np.ndarray) -> Shocks:
    """The keyed systematic variates of the given draw indices (plain Monte Carlo; independent of chunking).

    Notes
    -----
    Slot ``MACRO_SLOT``; year ``t`` uses counter ``(t + 1) * N_STREAMS + stream``: ``Stream.NATIONAL`` gives the
    national and regional normals (the two Box-Muller normals of one word), the first normal of ``Stream.ACO``
    the ACO level, the second uniform of ``Stream.QUALITY`` (offset by half a 32-bit step, so never 0) the
    quality score; the care-management normal is the first of ``Stream.CARE`` at year index 0.
    """
    n_years = cfg.simulation.years
    draws = np.asarray(draws, dtype=np.uint64)
    k = key_np(cfg.simulation.seed, draws, MACRO_SLOT)[:, None]
    base = (np.arange(n_years, dtype=np.uint64) + np.uint64(1)) * np.uint64(N_STREAMS)
    eps_nat, eps_reg = normals_np(word_np(k, base + np.uint64(Stream.NATIONAL)))
    eps_aco, _ = normals_np(word_np(k, base + np.uint64(Stream.ACO)))
    _, u_q = uniforms_np(word_np(k, base + np.uint64(Stream.QUALITY)))
    eps_care, _ = normals_np(word_np(k[:, 0], np.uint64(Stream.CARE)))
    return Shocks(eps_nat, eps_reg, eps_aco, u_q + 0.5 / 4294967296.0, eps_care)


def macro_paths(cfg: Config, draws: np.ndarray, shocks: Shocks | None = None) -> MacroPaths:
    """Draw the macro paths of the given draw indices (keyed: independent of chunking).

    Parameters
    ----------
    cfg : Config
    draws : ndarray (draws,)
        Draw indices.
    shocks : Shocks, optional
        The systematic variates to use (quasi-random or tilted ones, :mod:`leadsim.model.sampling`); default
        the keyed ones of :func:`keyed_shocks`.

    Notes
    -----
    National growth ``n_{p,t} = mu_p + e_t`` with one AR(1) national shock shared by the populations;
    regional ``g_{p,t} = n_{p,t} + d_t`` adds an AR(1) deviation ``d`` (``docs/calibration.md`` §1).
    The ACO's cost level relative to its region is ``exp(l_t)`` with the mean-reverting
    ``l_t = psi l_{t-1} + sigma_l eps_t``, ``l_{-1} = 0`` (the base year): its variance
    ``sigma_l^2 (1 - psi^{2(t+1)}) / (1 - psi^2)`` tends to ``sigma_l^2 / (1 - psi^2)`` instead of growing
    without bound, and ``corr(l_t, l_{t+k}) -> psi^k``. The ACO's annual growth is
    ``(1 + g_{p,t}) exp(l_t - l_{t-1}) - 1`` (log-level model: a multiplicative deviation, always positive).
    A stress scenario's ``trend.national_shock`` ``s_t`` is added to ``n_{p,t}`` of every draw (the normals
    are unchanged, so regional and ACO growth move by the same shock on common random numbers).
    Quality ``q_t ~ Beta`` with the configured mean and sd, drawn by inversion of a keyed uniform.
    The ACO-level shock uses the first normal of ``Stream.ACO`` (the stream of the retired growth shock);
    the care-management scale uses ``Stream.CARE`` at year index 0.
    """
    return paths_from_shocks(cfg, keyed_shocks(cfg, draws) if shocks is None else shocks)


def paths_from_shocks(cfg: Config, shocks: Shocks) -> MacroPaths:
    """Turn systematic variates into macro paths (the model of :func:`macro_paths`)."""
    tr = cfg.trend
    n_years = cfg.simulation.years
    if shocks.national.shape[-1] != n_years or shocks.quality.shape[-1] != n_years:
        raise ValueError(f"shocks cover {shocks.national.shape[-1]} years, the config {n_years}")
    e = ar1(shocks.national, tr.national_ar, tr.national_sd)
    d = ar1(shocks.regional, tr.regional_ar, tr.regional_sd)
    level = ar1(shocks.aco, tr.aco_level_persistence, tr.aco_level_sd)
    mu = np.asarray(tr.national_mean.ordered())
    national = mu[None, None, :] + e[:, :, None]
    if tr.national_shock is not None:  # stress scenario: a deterministic shock to every draw's national growth
        national = national + np.asarray(shock_path(tr.national_shock, n_years))[None, :, None]
    regional = national + d[:, :, None]
    aco = (1.0 + regional) * level_growth(level)[:, :, None] - 1.0

    qm, qs = cfg.quality.mean, cfg.quality.sd
    u_q = shocks.quality
    if qs == 0.0:
        quality = np.full(u_q.shape, qm)
    else:
        nu = qm * (1.0 - qm) / qs**2 - 1.0
        quality = special.betaincinv(qm * nu, (1.0 - qm) * nu, u_q)
    return MacroPaths(national, regional, aco, quality, level, care_management_paths(cfg, shocks.care))
