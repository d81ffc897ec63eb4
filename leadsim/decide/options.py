"""The option set of a decision: tracks, stop-loss election, the Professional-to-Global switch, comparators.

An *option* is one way the ACO can participate: a track of a policy (``global``, ``professional``, MSSP's
``enhanced``) or the switch rule (Professional for the four-year minimum stay, then Global when a per-draw rule
fires), under a *policy variant* (the config's own policy with stop-loss elected or not, or a comparator preset).
Variants whose cost model is the same share one kernel pass (:func:`cost_key`); see ``docs/design.md``
("Decisions").
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from leadsim.config import Config, available_presets, load_config
from leadsim.errors import ConfigError, LeadsimWarning

__all__ = ["COMPARATORS", "SWITCH_AFTER", "Option", "Variant", "build_options", "cost_key"]

COMPARATORS: tuple[str, ...] = ("lead_py2027", "reach_py2026", "mssp_enhanced")
"""Comparator presets evaluated beside the config's own policy by default (``configs/policy/``); the config's own
preset is skipped, so a LEAD config is compared with REACH and MSSP, an MSSP config with LEAD and REACH."""

SWITCH_AFTER = 4
"""Years an ACO must stay on Professional before it may move to Global (LEAD's four-year minimum)."""

_SPENDING_NEUTRAL_STOP_LOSS = ("loading", "neutrality", "basis")
"""Stop-loss terms the ledger reads (the price and the payout scale), never the kernel."""


@dataclass(frozen=True)
class Variant:
    """A policy variant: a full config, and the key of the kernel pass it settles against."""

    name: str
    cfg: Config
    cost_key: str


@dataclass(frozen=True)
class Option:
    """One option: ``track`` of ``variant``, or ``"switch"`` (Professional, then Global when the rule fires)."""

    name: str
    label: str
    variant: str
    track: str


def _label(policy_name: str, track: str) -> str:
    """``"LEAD PY2027 Global"``; the track is not repeated when the policy's name already says it
    (``"MSSP ENHANCED"``, not ``"MSSP ENHANCED Enhanced"``)."""
    return policy_name if track.lower() in policy_name.lower().split() else f"{policy_name} {track.capitalize()}"


def cost_key(cfg: Config) -> str:
    """A key equal for two configs exactly when the cohort kernel does the same work for both.

    Notes
    -----
    The kernel reads everything outside ``[policy]`` (simulation, ACO, populations, trend, quality) and, of the
    policy, only the outlier relief: whether stop-loss is elected and its bands, or the truncation rule.
    Tracks, benchmark, sharing, settlement terms and the stop-loss price (``loading``, ``neutrality``,
    ``basis``) act in the ledger, so policies that differ only there settle against one kernel pass; keyed
    draws make that reuse exact (``docs/design.md``, "Decisions"). The keys that only choose the pilot's tilt
    (:data:`_PILOT_ONLY`) are left out: a decision gives every pass the tilt of the config's own pilot.
    """
    data = cfg.to_dict()
    sl = dict(data["policy"]["stop_loss"])
    if cfg.policy.stop_loss.enabled or cfg.policy.stop_loss.truncates:
        for k in _SPENDING_NEUTRAL_STOP_LOSS:
            sl.pop(k, None)
        if not cfg.policy.stop_loss.enabled:  # truncation: the bands are not used
            sl.pop("attachments", None)
            sl.pop("shares", None)
    else:
        sl = {"relief": "none"}
    data["policy"] = {"stop_loss": sl}
    for k in ("threads", "chunk_draws", *_PILOT_ONLY):
        data["simulation"].pop(k, None)
    return json.dumps(data, sort_keys=True)


_PILOT_ONLY = ("tilt_track", "tilt_level", "pilot_draws")
"""Simulation keys that only choose the pilot's tilt: a decision computes the tilt once, from the config's own
pilot, and gives it to every kernel pass (:class:`leadsim.decide.evaluate.Evaluator`), so they never change a pass."""


def _family(preset: str | None) -> str:
    return (preset or "policy").split("_")[0]


def _variant(cfg: Config, overrides: dict[str, object]) -> Config:
    with warnings.catch_warnings():  # the config's own warnings were shown when it was loaded
        warnings.simplefilter("ignore", LeadsimWarning)
        return load_config(cfg, overrides=overrides)


def build_options(cfg: Config, comparators: Sequence[str] = COMPARATORS, stop_loss: bool = True,
                  switch: bool = True) -> tuple[dict[str, Variant], list[Option]]:
    """The policy variants and options a decision compares, all on the draws of ``cfg``.

    Parameters
    ----------
    cfg : Config
        The ACO, cost model and simulation settings, and the policy whose tracks are the main options.
    comparators : sequence of str
        Policy presets (``configs/policy/<name>.toml``) evaluated beside it; the config's own preset is skipped.
        Each comparator keeps the config's own policy settings that differ from its preset, as
        ``--set policy.preset=NAME`` does, with stop-loss not elected.
    stop_loss : bool
        Also evaluate each track of the config's policy with stop-loss elected (unless the policy truncates).
    switch : bool
        Add the switch option when the policy has both LEAD tracks and the run is longer than the stay.

    Returns
    -------
    variants : dict of name to Variant
    options : list of Option
        In table order: the config's policy (global, professional, switch; then the same with stop-loss),
        then the comparators' tracks.
    """
    unknown = [c for c in comparators if c not in available_presets()]
    if unknown:
        raise ConfigError([f"comparator {c!r}: unknown policy preset (available: {', '.join(available_presets())})"
                           for c in unknown])
    fam = _family(cfg.policy.preset)
    own = [(fam, {"policy.stop_loss.enabled": False} if cfg.policy.stop_loss.enabled else {}, "")]
    if stop_loss and not cfg.policy.stop_loss.truncates:
        own.append((f"{fam}_sl", {"policy.stop_loss.enabled": True}, ", stop-loss elected"))
    variants: dict[str, Variant] = {}
    options: list[Option] = []
    for name, ov, suffix in own:
        vcfg = _variant(cfg, ov) if ov else cfg
        variants[name] = Variant(name, vcfg, cost_key(vcfg))
        tracks = list(vcfg.policy.tracks)
        options.extend(Option(f"{name}_{t}", _label(vcfg.policy.name, t) + suffix, name, t) for t in tracks)
        if switch and {"global", "professional"} <= set(tracks) and vcfg.simulation.years > SWITCH_AFTER:
            options.append(Option(f"{name}_switch", f"{vcfg.policy.name} Professional {SWITCH_AFTER} years, "
                                                     f"then Global if the rule fires{suffix}", name, "switch"))
    for preset in comparators:
        if preset == cfg.policy.preset:
            continue
        # the tilt comes from the config's own pilot: its tilt_track need not be a track of the comparator
        vcfg = _variant(cfg, {"policy.preset": preset, "policy.stop_loss.enabled": False,
                              **({"simulation.tilt_track": None} if cfg.simulation.tilt_track else {})})
        name = _family(preset)
        while name in variants:
            name += "_"
        variants[name] = Variant(name, vcfg, cost_key(vcfg))
        options.extend(Option(f"{name}_{t}", _label(vcfg.policy.name, t), name, t) for t in vcfg.policy.tracks)
    return variants, options
