"""Parameter uncertainty inside one run: the parameter set each draw uses (``simulation.parameter_draws``).

A fitted config (``leadsim fit --parameter-sets N``) carries ``[[parameter_sets]]``: population values drawn
from the fit's parameter uncertainty. With ``simulation.parameter_draws = true`` draw ``d`` is simulated with
set ``k(d)``: exactly the draw ``d`` of a run of the config with set ``k(d)``'s values (the same keyed shocks),
so a run mixes process and parameter risk and common random numbers across policies are kept.

The index is keyed like every random number (:mod:`leadsim.model.rng`): a SplitMix64 word of
``(seed, draw, PARAMETER_SLOT)`` at counter 0, mapped to ``0 .. n - 1`` by the multiply-shift rule
``k = floor(hi32(word) n / 2^32)`` (bias below ``n / 2^32``). It depends on the seed and the draw only: never
on the chunk, the thread or the worker, nor on the policy.
"""

from __future__ import annotations

import warnings

import numpy as np

from leadsim.config import Config, load_config
from leadsim.errors import LeadsimWarning
from leadsim.model.rng import key_np, word_np

__all__ = ["PARAMETER_SLOT", "parameter_set_configs", "parameter_set_index"]

PARAMETER_SLOT = np.uint64(0xFFFFFFFFFFFFFFFE)
"""Slot id of the per-draw parameter-set index (beneficiary slots are ``0 .. n_slots - 1``; the macro drivers
use ``0xFFFFFFFFFFFFFFFF``)."""


def parameter_set_index(cfg: Config, draws: np.ndarray) -> np.ndarray:
    """The 0-based ``[[parameter_sets]]`` index of each draw, shape ``draws.shape`` (int64).

    Parameters
    ----------
    cfg : Config
        A config with ``parameter_sets`` (at least one).
    draws : ndarray of int
        Draw indices.

    Notes
    -----
    ``k(d) = floor(hi32(w) n / 2^32)`` with ``w`` the keyed word of ``(seed, d, PARAMETER_SLOT)`` at counter 0
    and ``n`` the number of sets: each set has probability ``1/n`` (to within ``n / 2^32``), independently
    across draws (``docs/fit.md`` §4).
    """
    n = len(cfg.parameter_sets)
    if n == 0:
        raise ValueError("parameter_set_index: the config has no [[parameter_sets]]")
    words = word_np(key_np(cfg.simulation.seed, np.asarray(draws, dtype=np.int64).astype(np.uint64),
                           PARAMETER_SLOT), 0)
    return ((words >> np.uint64(32)) * np.uint64(n) >> np.uint64(32)).astype(np.int64)


def parameter_set_configs(cfg: Config) -> list[Config]:
    """One config per ``[[parameter_sets]]`` entry: ``cfg`` with the set's population values, validated, and
    parameter draws off (what a draw that uses the set is simulated and settled with)."""
    off = {"simulation.parameter_draws": False, "parameter_sets": []}
    with warnings.catch_warnings():
        # the base config already warned about what the sets share (e.g. an aco.mix that is no equilibrium)
        warnings.simplefilter("ignore", LeadsimWarning)
        return [load_config(cfg, overrides={**s.overrides(), **off}) for s in cfg.parameter_sets]
