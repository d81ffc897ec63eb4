"""Variance attribution, the simulation half: the ten-year result with every subset of the risk sources on.

:func:`source_runs` settles a config ``2^k`` times (``k = 7`` sources) on the same draws, each time with a subset
of the sources switched off, and returns the cumulative settlement of every subset, draw and track.
:mod:`leadsim.analysis.attribution` turns these into Shapley values of the variance and of TVaR 99% with
bootstrap standard errors. The method is in ``docs/model.md`` (variance attribution).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import xarray as xr

from leadsim._version import __version__
from leadsim.config import Config, ConfigError, chunk_bounds
from leadsim.engine import costs_of, prepare, settle_chunk, threads
from leadsim.model._kernel import OUT_FIELDS, RELIEF_NONE
from leadsim.model.cohort import CohortModel, realised_means, run_cohort
from leadsim.model.drivers import MacroPaths, macro_paths
from leadsim.model.marginals import latent_grid, normal_weights

__all__ = ["SOURCES", "flat_tail_table", "source_runs"]

SOURCES: tuple[str, ...] = ("beneficiary", "outliers", "national", "regional", "aco_level", "quality",
                            "care_management")
"""The risk sources, in the order of the bits of a subset (bit ``i`` set = source ``i`` on)."""


_MACRO_SWITCH = {  # the parameter that switches a macro source off (its normals are still drawn, then unused)
    "national": ("trend", "national_sd"),
    "regional": ("trend", "regional_sd"),
    "aco_level": ("trend", "aco_level_sd"),
    "quality": ("quality", "sd"),
    "care_management": ("aco", "care_management_cv"),
}


def flat_tail_table(cfg: Config, model: CohortModel) -> np.ndarray:
    """The spending table with the Pareto tail replaced by its conditional mean (outliers switched off).

    Parameters
    ----------
    cfg : Config
    model : CohortModel
        The run's cost model: its table ``Q_p`` on the latent grid and its stationary latent law.

    Returns
    -------
    ndarray (3, G)
        ``Q_p(z)`` below the splice ``z_tau = Phi^{-1}(p0 + (1 - p0) tau)``, and above it the constant
        ``c_p = E[k(z) Q_p(z) | z >= z_tau] / E[k(z) | z >= z_tau]`` under the latent law of a year's members.

    Notes
    -----
    Every beneficiary keeps its latent path and its random numbers; a beneficiary whose latent is in the tail
    costs the tail's mean instead of a Pareto amount. The law is the stationary cohort's
    (``docs/calibration.md`` §1): continuing members with the stationary latent law, spending weight
    ``k(z) = 1 + d(z) (m - 1)`` (death probability ``d``, death-year multiplier ``m``), and entrants (their
    stationary share) with ``N(0, 1)`` latents and half a year's exposure. So the expected spending of a
    stationary year is unchanged and switching the tail off removes the variance of the amounts above the
    splice, not their expected cost (``docs/model.md`` §6b).
    """
    from scipy import special

    from leadsim.model.marginals import death_probability

    qtab = model.kernel.qtab
    z = latent_grid()                      # the table's fine grid: the quadrature resolves the splice
    out = np.array(qtab, dtype=float, copy=True)
    zl = np.asarray(model.latent_grid, dtype=float)
    for j, pop in enumerate(cfg.population.ordered()):
        if pop.tail_start >= 1.0:
            continue
        z_tau = float(special.ndtri(pop.zero_share + (1.0 - pop.zero_share) * pop.tail_start))
        e = float(model.entrant_share[j])
        law = np.asarray(model.latent_law[j], dtype=float)
        density = np.interp(z, zl, law / law.sum(), left=0.0, right=0.0)   # continuing members, on the fine grid
        weight = (1.0 - e) * density / density.sum() * (
            1.0 + death_probability(z, pop.mortality, pop.death_risk_beta) * (pop.death_multiplier - 1.0)) \
            + e * 0.5 * normal_weights(z)
        tail = z >= z_tau
        out[j, tail] = float(np.sum(weight[tail] * qtab[j, tail]) / np.sum(weight[tail]))
    return out


def _switched(cfg: Config, on: dict[str, bool]) -> Config:
    """``cfg`` with the parameters of the macro sources that are off set to 0 (no validation needed: 0 is allowed)."""
    sections: dict[str, dict[str, Any]] = {}
    for name, (section, key) in _MACRO_SWITCH.items():
        if not on[name]:
            sections.setdefault(section, {})[key] = 0.0
    return cfg.model_copy(update={s: getattr(cfg, s).model_copy(update=kv) for s, kv in sections.items()})


def _unit_kernel(cfg: Config, model: CohortModel, draws: np.ndarray, macro: MacroPaths) -> np.ndarray:
    """Kernel output at unit cost level (``mean = 1``): spending is then ``S``, and any level ``m`` gives ``m S``."""
    _, scale = realised_means(model, macro)
    out = []
    for lo, hi in chunk_bounds(draws.shape[0], cfg.simulation.chunk_draws):
        d = draws[lo:hi]
        out.append(run_cohort(model, d, np.ones(scale[lo:hi].shape), np.ascontiguousarray(scale[lo:hi])))
    return np.concatenate(out, axis=0)


def source_runs(cfg: Config, draws: int | None = None) -> xr.Dataset:
    """The ten-year result of every draw and track with each subset of the risk sources switched on.

    Parameters
    ----------
    cfg : Config
        A validated config without per-beneficiary outlier relief (stop-loss or truncation).
    draws : int, optional
        Number of draws (default ``simulation.draws``).

    Returns
    -------
    xarray.Dataset
        ``cumulative_settlement`` (subset, draw, track) for the ``2^7`` subsets (bit ``i`` of ``subset`` is
        :data:`SOURCES` ``[i]``), ``source_on`` (subset, source), and the config in ``attrs["config_toml"]``.

    Raises
    ------
    ConfigError
        When stop-loss or truncation is the outlier rule (``policy.stop_loss``): the method relies on spending
        being linear in the cost level; when ``simulation.sampling`` is not ``"plain"``: the method treats the
        draws as equally weighted and independent (tilted weights and QMC replicates are not carried).

    Notes
    -----
    Switching a source off keeps every other random number (``docs/model.md``, variance attribution):

    * macro sources (national, regional, the ACO's level, quality, care-management uncertainty): their
      standard deviation (or ``care_management_cv``) is set to 0; the keyed normals are unchanged;
    * outliers: the Pareto tail of the spending table is replaced by its conditional mean
      (:func:`flat_tail_table`);
    * beneficiary-level noise: every kernel output (spending at unit level, member-months, risk-weighted
      months) is replaced by its mean over the draws, i.e. beneficiaries at their expected cost given the
      cost level of the draw. The kernel's beneficiary streams are independent of the macro streams, so the
      mean over draws estimates this conditional mean.

    Without per-beneficiary relief a beneficiary's spending is ``m_{d,t,p} Q_p(z)``, linear in the draw's
    cost level ``m``: the kernel runs once per tail variant at ``m = 1`` and the spending of any subset is
    ``m S`` (equal to a full run's to rounding). Each subset is then settled by the ledger, so the whole
    attribution costs two kernel passes and ``2^7`` ledger passes.
    """
    n = int(draws or cfg.simulation.draws)
    if n < 2:
        raise ConfigError([f"--draws {n}: variance attribution needs at least 2 draws"])
    if draws is not None:
        cfg = cfg.model_copy(update={"simulation": cfg.simulation.model_copy(update={"draws": n})})
    k = len(SOURCES)
    problems = []
    if cfg.policy.stop_loss.enabled or cfg.policy.stop_loss.truncates:
        problems.append("policy.stop_loss: variance attribution supports configs without stop-loss or "
                        "truncation (spending must be linear in the cost level); set "
                        "policy.stop_loss.enabled = false and no truncation_cap/truncation_percentile")
    if cfg.simulation.sampling != "plain":
        problems.append(f"simulation.sampling = {cfg.simulation.sampling!r}: variance attribution supports only "
                        "'plain' (its Shapley values, conditional means and bootstrap treat the draws as equally "
                        "weighted and independent); set simulation.sampling = \"plain\"")
    if cfg.simulation.parameter_draws:
        problems.append("simulation.parameter_draws = true: variance attribution simulates one parameter set (its "
                        "sources are process risks); set simulation.parameter_draws = false to attribute the risk "
                        "under the base parameters (the run summary gives the parameter-risk share)")
    if problems:
        raise ConfigError(problems)
    with threads(cfg.simulation.threads):
        inputs = prepare(cfg)
        model = inputs.model
        if model.relief_mode != RELIEF_NONE:  # pragma: no cover (the check above is the same rule)
            raise ConfigError(["policy.stop_loss: per-beneficiary relief is not supported by the attribution"])
        idx = np.arange(n, dtype=np.int64)
        full_macro = macro_paths(cfg, idx)
        flat = dataclasses.replace(model, kernel=model.kernel._replace(qtab=flat_tail_table(cfg, model)))
        unit = {True: _unit_kernel(cfg, model, idx, full_macro), False: _unit_kernel(cfg, flat, idx, full_macro)}
    # beneficiary noise off: every draw at the mean kernel output (computed once per tail variant)
    unit_mean = {tail: np.broadcast_to(out.mean(axis=0), out.shape) for tail, out in unit.items()}
    expenditure_field = OUT_FIELDS.index("expenditure")
    macro_cache: dict[tuple[bool, ...], tuple[Config, MacroPaths, np.ndarray]] = {}
    tracks = list(cfg.policy.tracks)
    result = np.empty((2**k, n, len(tracks)))
    on_table = np.zeros((2**k, k), dtype=bool)
    for subset in range(2**k):
        on = {s: bool(subset >> i & 1) for i, s in enumerate(SOURCES)}
        on_table[subset] = list(on.values())
        key = tuple(on[s] for s in _MACRO_SWITCH)
        if key not in macro_cache:
            c = _switched(cfg, on)
            m = macro_paths(c, idx)
            macro_cache[key] = (c, m, realised_means(model, m)[0])
        c, macro, mean = macro_cache[key]
        out = np.array((unit if on["beneficiary"] else unit_mean)[on["outliers"]], copy=True)
        out[..., expenditure_field] *= mean
        res = settle_chunk(c, inputs, costs_of(model, idx, macro, out))
        result[subset] = res.arrays["cumulative_settlement"]
    return xr.Dataset(
        {"cumulative_settlement": (("subset", "draw", "track"), result,
                                   {"units": "USD", "long_name": "ten-year settlement, the subset's sources on"}),
         "source_on": (("subset", "source"), on_table)},
        coords={"subset": np.arange(2**k), "draw": idx, "track": tracks, "source": list(SOURCES)},
        attrs={"config_toml": cfg.to_toml(), "seed": cfg.simulation.seed, "leadsim_version": __version__,
               "aco_name": cfg.aco.name, "policy_name": cfg.policy.name, "scenario": cfg.scenario or ""})
