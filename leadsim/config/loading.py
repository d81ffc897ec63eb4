"""Loading a config: TOML files, policy presets, dotted-key overrides, and error messages that name the key.

A config is read from TOML (``schema_version = 1``), merged with a policy preset from ``configs/policy/``
when ``policy.preset`` names one, patched with dotted-key overrides, and validated. A bad value raises
:class:`~leadsim.errors.ConfigError` whose message names the dotted key, the value and the allowed range.
Nothing is simulated before the config is valid.
"""

from __future__ import annotations

import copy
import os
import stat
import sys
import tomllib
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import annotated_types as at
from pydantic import BaseModel, ValidationError

from leadsim.config.presets import available_presets, available_scenarios, preset_dir, scenario_dir
from leadsim.config.schema import POPULATIONS, Config
from leadsim.errors import ConfigError, LeadsimWarning

__all__ = ["load_config", "parse_override_value", "scenario_overlay", "validate"]


MAX_CONFIG_BYTES = 1_000_000
"""Largest config file read (a real one is a few kB): ``/dev/zero`` or a huge file is refused, not read."""


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError([f"{what}: not a regular file (a device, FIFO or socket?): {path}"])
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigError([f"{what}: {path} is {st.st_size:,} bytes; a config is at most "
                               f"{MAX_CONFIG_BYTES:,} bytes"])
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError([f"{what}: {path} is larger than {MAX_CONFIG_BYTES:,} bytes"])
        if raw.startswith(b"\xef\xbb\xbf"):
            raise ConfigError([f"{what}: {path} starts with a UTF-8 byte-order mark (BOM), which TOML does not "
                               "allow; save the file as UTF-8 without BOM"])
        return tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{what}: file not found: {path}"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{what}: is a directory, not a TOML file: {path}"]) from None
    except PermissionError:
        raise ConfigError([f"{what}: permission denied: {path}"]) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError([f"{what}: malformed TOML in {path}: {err}"]) from None
    except UnicodeDecodeError as err:
        raise ConfigError([f"{what}: not UTF-8 text in {path}: {err}"]) from None
    except RecursionError:
        raise ConfigError([f"{what}: {path} nests arrays or tables too deeply to read"]) from None


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in top.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_override_value(text: str) -> Any:
    """Parse a ``--set`` value as a TOML literal (``5``, ``0.2``, ``true``, ``[1, 2]``), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _apply_override(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError([f"override {key!r}: not a dotted key such as simulation.draws"])
    node = data
    for i, part in enumerate(parts[:-1]):
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConfigError([f"override {key!r}: {'.'.join(parts[: i + 1])} is a value, not a table"])
        node = nxt
    node[parts[-1]] = value


def _resolve_preset(data: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
    policy = data.get("policy")
    if policy is None:
        policy = {}
    if not isinstance(policy, dict):
        raise ConfigError([f"policy = {policy!r}: must be a table ([policy])"])
    if "preset" not in policy and "name" not in policy:
        # no preset and no self-contained policy (which must carry a name): patch the default preset
        policy = {**policy, "preset": "lead_py2027"}
    preset = policy.get("preset")
    if preset is None:
        return data
    if not isinstance(preset, str) or not preset.replace("_", "").isalnum():
        raise ConfigError([f"policy.preset = {preset!r}: must be the name of a file in configs/policy/ "
                           f"(one of {', '.join(available_presets())})"])
    candidates = [preset_dir() / f"{preset}.toml"]
    if base_dir is not None:
        candidates.insert(0, base_dir / "policy" / f"{preset}.toml")
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise ConfigError([f"policy.preset = {preset!r}: unknown preset "
                           f"(available: {', '.join(available_presets())})"])
    preset_data = _read_toml(path, f"policy.preset = {preset!r}")
    preset_policy = preset_data.get("policy", preset_data)
    merged = _deep_merge(preset_policy, policy)
    merged["preset"] = preset
    out = dict(data)
    out["policy"] = merged
    return out


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _rebase_policy(own: Any, policy: dict[str, Any], overrides: Mapping[str, Any], resolved: bool,
                   base_dir: Path | None) -> dict[str, Any]:
    """The policy table after ``--set policy.preset=X``: the config's own policy settings kept on the new preset.

    Choosing a preset by override means what writing ``preset = X`` in the file would mean: the file's own
    ``[policy.*]`` settings still apply on top of the preset. A resolved config (a :class:`Config`, e.g. read back
    from a result) carries every key, so its own settings are those that differ from its preset. A config with a
    complete policy of its own (a ``name`` and no preset) is refused, listing the settings a preset would drop.
    """
    if not isinstance(own, dict):
        return policy
    if own.get("preset") is None and own.get("name") is not None:
        keys = sorted(f"policy.{k}" for k in _flat(own))
        shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
        raise ConfigError([f"policy.preset = {overrides['policy.preset']!r} (set by override): the config defines a "
                           f"complete policy of its own (policy.name = {own['name']!r}, no preset); a preset "
                           f"would drop or be overridden by its {len(keys)} settings ({shown}). Edit the config's "
                           "[policy] instead, or start from a config with `preset = ...`"])
    if not resolved:
        return policy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old = validate(_resolve_preset({"policy": {"preset": own.get("preset") or "lead_py2027"}}, base_dir))
    old_flat = _flat(old.to_dict()["policy"])
    set_now = {k.split(".", 1)[1] for k in overrides if k.startswith("policy.")}
    missing = object()
    keep: dict[str, Any] = {}
    for key, value in _flat(policy).items():
        if key in set_now or old_flat.get(key, missing) != value:
            _apply_override(keep, key, value)
    return keep


def _field_range(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """Describe the allowed range of the field at ``loc`` from its annotated bounds, or ''."""
    cls: Any = model
    info = None
    for part in loc:
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            break
        fields = cls.model_fields
        name = part if part in fields else {f.alias: n for n, f in fields.items() if f.alias}.get(part)
        if name is None:
            return ""
        info = fields[name]
        ann = info.annotation
        nxt = None
        for cand in (*getattr(ann, "__args__", ()), ann):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                nxt = cand
        cls = nxt
    if info is None:
        return ""
    metas = list(info.metadata)
    ann = info.annotation
    for arg in getattr(ann, "__args__", ()):
        metas += list(getattr(arg, "__metadata__", ()))
        for inner in getattr(arg, "__args__", ()):
            metas += list(getattr(inner, "__metadata__", ()))
    lo = hi = ""
    for m in metas:
        for sub in getattr(m, "metadata", [m]):
            if isinstance(sub, at.Ge):
                lo = f"{sub.ge} <= "
            elif isinstance(sub, at.Gt):
                lo = f"{sub.gt} < "
            elif isinstance(sub, at.Le):
                hi = f" <= {sub.le}"
            elif isinstance(sub, at.Lt):
                hi = f" < {sub.lt}"
    if lo or hi:
        return f"allowed: {lo}value{hi}"
    return ""


def _key_part(part: Any) -> str:
    """A dotted-key component as typed; quoted (repr) when it is empty or has spaces, dots or control chars."""
    text = str(part)
    return text if text and all(c.isalnum() or c in "_-" for c in text) else repr(text)


RETIRED_KEYS: dict[str, str] = {
    "trend.aco_sd": "trend.aco_level_sd (the ACO's cost level is now a mean-reverting AR(1) in its log level, "
                    "docs/calibration.md §1)",
    "trend.aco_ar": "trend.aco_level_persistence (the ACO's cost level is now a mean-reverting AR(1) in its log "
                    "level, docs/calibration.md §1)",
}
"""Keys of earlier versions and what replaced them: a config using one gets an error naming the replacement."""


def _format_errors(err: ValidationError) -> list[str]:
    lines = []
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        key = ".".join(_key_part(p) for p in loc) or "(top level)"
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if e["type"] == "extra_forbidden" and key in RETIRED_KEYS:
            lines.append(f"{key}: retired key; use {RETIRED_KEYS[key]}")
            continue
        if e["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key (check the spelling; see configs/default.toml)")
            continue
        if e["type"] == "missing":
            lines.append(f"{key}: required key is missing")
            continue
        if not loc and e["type"] == "value_error":  # a rule across sections: its message names the keys
            lines.append(msg)
            continue
        value = e.get("input")
        shown = repr(value) if not isinstance(value, dict) else "{...}"
        if len(shown) > 60:
            shown = shown[:57] + "..."
        rng = _field_range(Config, loc)
        bound_error = any(w in msg for w in ("greater", "less", "finite")) or e["type"] in (
            "float_type", "int_type", "finite_number")
        tail = f" ({rng})" if rng and bound_error else ""
        if e["type"] == "string_type" and isinstance(value, int | float | bool):
            tail = f"; quote it to make it text: --set '{key}=\"{value}\"' (or {key.split('.')[-1]} = \"{value}\")"
        lines.append(f"{key} = {shown}: {msg}{tail}")
    return lines


def validate(data: Mapping[str, Any]) -> Config:
    """Validate a config mapping (after preset resolution) into a :class:`Config`, or raise ConfigError."""
    try:
        cfg = Config.model_validate(dict(data))
    except ValidationError as err:
        raise ConfigError(_format_errors(err)) from None
    _check_size(cfg)
    _check_trend(cfg)
    _warn(cfg)
    return cfg


GROWTH_Z = 6.0
"""How many standard deviations of annual growth must fit above -100% (P(Z < -6) is about 1e-9)."""


def _check_trend(cfg: Config) -> None:
    """Annual growth is Gaussian (mean plus three AR(1) terms): refuse SDs that let it fall below -100%.

    A growth rate below -100% makes spending and benchmarks negative. With ``T`` years, the AR(1) term with
    innovation sd ``s`` and coefficient ``phi`` has variance ``s^2 (1 + phi^2 + ... + phi^(2(T-1)))`` in the last
    year; the three terms are independent. The lowest mean growth minus :data:`GROWTH_Z` standard deviations
    must stay above -100%.
    """
    tr, years = cfg.trend, cfg.simulation.years
    terms = {"national": (tr.national_sd, tr.national_ar), "regional": (tr.regional_sd, tr.regional_ar)}
    if hasattr(tr, "aco_sd"):  # an additive AR(1) on the ACO's growth (a log-level ACO term cannot go below -100%)
        terms["aco"] = (tr.aco_sd, tr.aco_ar)
    gain = {k: float(sum(phi ** (2 * t) for t in range(years))) for k, (_, phi) in terms.items()}
    var = {k: sd**2 * gain[k] for k, (sd, _) in terms.items()}
    mu = min(tr.national_mean.ordered())
    limit = (1.0 + mu) / GROWTH_Z  # the largest sd of annual growth the law allows
    total = sum(var.values()) ** 0.5
    if total <= limit:
        return
    worst = max(var, key=lambda k: var[k])
    others = sum(v for k, v in var.items() if k != worst)
    room = max(limit**2 - others, 0.0)
    allowed = (room / gain[worst]) ** 0.5
    sd, phi = terms[worst]
    raise ConfigError([
        f"trend.{worst}_sd = {sd!r}: annual growth could fall below -100% (negative spending): with "
        f"trend.{worst}_ar = {phi!r} and the other trend terms its sd reaches {total:.3g} by year {years}, and "
        f"the lowest trend.national_mean ({mu:.3g}) minus {GROWTH_Z:g} sd must stay above -1 "
        f"(allowed: 0 <= trend.{worst}_sd <= {allowed:.3g} with the other trend settings; or lower their sd)"])


MAX_ALIGNED = 5_000_000
"""Largest aligned count in any year (the ``aco.beneficiaries`` maximum); bounds the kernel's memory."""


def _check_size(cfg: Config) -> None:
    """Growth compounds: the last year's aligned count must stay within :data:`MAX_ALIGNED`."""
    a, years = cfg.aco, cfg.simulation.years
    peak = a.beneficiaries * max(1.0, (1.0 + a.growth) ** (years - 1))
    if round(peak) > MAX_ALIGNED:
        raise ConfigError([f"aco.growth = {a.growth!r}: grows aco.beneficiaries = {a.beneficiaries:,} to "
                           f"{peak:,.0f} aligned beneficiaries by year {years} (allowed: at most "
                           f"{MAX_ALIGNED:,} in any year; lower the growth, the years or the size)"])


def _user_stacklevel() -> int:
    """The ``stacklevel`` of the first caller outside the leadsim package, so a warning names the user's line."""
    package = Path(__file__).resolve().parent.parent
    frame, level = sys._getframe(1), 1
    while frame is not None and Path(frame.f_code.co_filename).resolve().is_relative_to(package):
        frame, level = frame.f_back, level + 1
    return level


def _warn(cfg: Config) -> None:
    n = cfg.aco.beneficiaries
    if n < 5000 and cfg.aco.mix.high_needs <= 0.4:
        warnings.warn(f"aco.beneficiaries = {n} is below LEAD's minimum of 5,000 aligned beneficiaries "
                      "(CMS LEAD page); simulating anyway", LeadsimWarning, stacklevel=_user_stacklevel())
    elif n < 800:
        warnings.warn(f"aco.beneficiaries = {n} is below LEAD's minimum of 800 for a High Needs ACO",
                      LeadsimWarning, stacklevel=_user_stacklevel())
    for name in POPULATIONS:
        a = cfg.population[name].tail_alpha
        if a < 3.0 and cfg.population[name].tail_start < 1.0:
            warnings.warn(f"population.{name}.tail_alpha = {a}: a Pareto tail with alpha < 3 has infinite "
                          "skewness; means converge slowly and their standard errors understate the error",
                          LeadsimWarning, stacklevel=_user_stacklevel())
    if cfg.simulation.start_year + cfg.simulation.years - 1 > 2036:
        warnings.warn("the simulation runs past PY2036, the last LEAD performance year", LeadsimWarning,
                      stacklevel=_user_stacklevel())


def scenario_overlay(names: str | Sequence[str] | None) -> tuple[dict[str, Any], str | None]:
    """The merged TOML overlay of the named stress scenarios (in order) and their label (``a+b``).

    Raises
    ------
    ConfigError
        For a name that is not a file in ``configs/scenarios/``, listing the available names.
    """
    if names is None:
        return {}, None
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        return {}, None
    merged: dict[str, Any] = {}
    for name in names:
        path = scenario_dir() / f"{name}.toml"
        if not (isinstance(name, str) and name.replace("_", "").isalnum() and path.is_file()):
            raise ConfigError([f"scenario = {name!r}: unknown stress scenario (available: "
                               f"{', '.join(available_scenarios()) or 'none found in ' + str(scenario_dir())})"])
        merged = _deep_merge(merged, _read_toml(path, f"scenario = {name!r}"))
    return merged, "+".join(names)


def load_config(source: str | os.PathLike[str] | Mapping[str, Any] | Config | None = None,
                overrides: Mapping[str, Any] | None = None,
                scenario: str | Sequence[str] | None = None) -> Config:
    """Read, merge and validate a leadsim configuration.

    Parameters
    ----------
    source : path, mapping, Config or None
        A TOML file, an already-parsed mapping, a Config (re-validated with the overrides), or None for
        the built-in defaults (the standard ACO under the ``lead_py2027`` preset).
    overrides : mapping of dotted keys to values, optional
        Applied after the file, e.g. ``{"simulation.draws": 5000, "policy.preset": "reach_py2026"}``.
        String values are parsed as TOML literals, as with the CLI's ``--set key=value``.
    scenario : str or sequence of str, optional
        Stress scenario(s) from ``configs/scenarios/`` (``pandemic``, ``forecast_miss``, ``rule_change``,
        ``early_termination``), merged onto the config in order before the overrides; the config's
        ``scenario`` field records them (``docs/model.md``, stress scenarios).

    Returns
    -------
    Config
        Frozen, validated configuration.

    Raises
    ------
    ConfigError
        With one line per problem, each naming the dotted key, the value and the allowed range.
    """
    try:
        return _load_config(source, overrides, scenario)
    except RecursionError:
        raise ConfigError(["the config (or an override) nests arrays or tables too deeply"]) from None


def _load_config(source: str | os.PathLike[str] | Mapping[str, Any] | Config | None,
                 overrides: Mapping[str, Any] | None, scenario: str | Sequence[str] | None = None) -> Config:
    base_dir: Path | None = None
    resolved = isinstance(source, Config)
    if source is None:
        data: dict[str, Any] = {}
    elif isinstance(source, Config):
        data = source.to_dict()
    elif isinstance(source, Mapping):
        data = copy.deepcopy(dict(source))
    else:
        path = Path(source)
        data = _read_toml(path, "config")
        base_dir = path.resolve().parent
    overlay, label = scenario_overlay(scenario)
    if label is not None:
        data = _deep_merge(data, overlay)
        data["scenario"] = label if not data.get("scenario") else f"{data['scenario']}+{label}"
    own = copy.deepcopy(data.get("policy"))
    for key, value in (overrides or {}).items():
        _apply_override(data, key, parse_override_value(value) if isinstance(value, str) else value)
    if overrides and "policy.preset" in overrides and isinstance(data.get("policy"), dict):
        data["policy"] = _rebase_policy(own, data["policy"], overrides, resolved, base_dir)
    data = _resolve_preset(data, base_dir)
    return validate(data)

