"""Configuration: the pydantic schema, policy presets and loading with messages that name the key.

``load_config`` is the entry point; :class:`Config` is the frozen, validated result every other part of
leadsim reads.
"""

from leadsim.config.loading import load_config, parse_override_value, validate
from leadsim.config.presets import assumed_policy_keys, available_presets, preset_dir
from leadsim.config.schema import (
    MAX_YEARS,
    POPULATIONS,
    TRACKS,
    Config,
    TrackPolicy,
    chunk_bounds,
    per_year,
    shock_path,
)
from leadsim.errors import ConfigError, LeadsimWarning

__all__ = [
    "MAX_YEARS",
    "POPULATIONS",
    "TRACKS",
    "Config",
    "ConfigError",
    "LeadsimWarning",
    "TrackPolicy",
    "assumed_policy_keys",
    "available_presets",
    "chunk_bounds",
    "load_config",
    "parse_override_value",
    "per_year",
    "preset_dir",
    "shock_path",
    "validate",
]
