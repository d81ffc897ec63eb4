"""Configuration: TOML files validated by pydantic into one frozen :class:`Config`.

A config is read from TOML (``schema_version = 1``), merged with a policy preset from ``configs/policy/``
when ``policy.preset`` names one, patched with dotted-key overrides, and validated. Every numeric field has
bounds; unknown keys are errors; a bad value raises :class:`ConfigError` whose message names the dotted key,
the value and the allowed range. Nothing is simulated before the config is valid.

The defaults of the cost model are the calibration of ``shared/spec/calibration.md`` (tags [S] sourced,
[D] derived, [A] assumed). Policy figures have no defaults in code: they come from a preset file, where each
carries its tag ([LEAD], [LEAD-2], [REACH], [MSSP], [ASSUMED]).
"""

from __future__ import annotations

import copy
import itertools
import os
import tomllib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import annotated_types as at
import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "POPULATIONS",
    "TRACKS",
    "Config",
    "ConfigError",
    "LeadsimWarning",
    "load_config",
    "preset_dir",
]

POPULATIONS: tuple[str, ...] = ("aged_disabled", "esrd", "high_needs")
"""Population types in dataset order (methodology §1)."""

TRACKS: tuple[str, ...] = ("global", "professional", "enhanced")
"""Track kinds a policy may settle: LEAD Global, LEAD Professional, MSSP ENHANCED (comparator)."""

MAX_YEARS = 30


class ConfigError(ValueError):
    """An invalid configuration. ``str(err)`` has one line per problem, each naming the dotted key."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class LeadsimWarning(UserWarning):
    """A valid but questionable setting (below LEAD's minimum size, an infinite-variance tail, ...)."""


# --------------------------------------------------------------------------------------------------------
# Field types
# --------------------------------------------------------------------------------------------------------
Share = Annotated[float, Field(ge=0.0, le=1.0)]
Probability = Annotated[float, Field(ge=0.0, lt=1.0)]
Rate = Annotated[float, Field(ge=-0.5, le=1.0)]
NonNeg = Annotated[float, Field(ge=0.0, le=1e9)]
PerYearShare = Annotated[list[Share], Field(min_length=1, max_length=MAX_YEARS)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False,
                              populate_by_name=True)


def per_year(values: list[float] | tuple[float, ...], years: int) -> list[float]:
    """Expand a per-year list to ``years`` entries: missing later years hold the last value."""
    vals = list(values)
    return [vals[min(i, len(vals) - 1)] for i in range(years)]


def _check_bands(breakpoints: list[float], shares: list[float], what: str) -> None:
    if len(breakpoints) != len(shares):
        raise ValueError(f"{what}_breakpoints and {what}_shares must have the same length "
                         f"(got {len(breakpoints)} and {len(shares)})")
    if breakpoints[0] != 0.0:
        raise ValueError(f"{what}_breakpoints must start at 0 (got {breakpoints[0]})")
    if any(b2 <= b1 for b1, b2 in itertools.pairwise(breakpoints)):
        raise ValueError(f"{what}_breakpoints must be strictly increasing (got {breakpoints})")


# --------------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------------
class SimulationConfig(_Model):
    """Monte Carlo settings. ``chunk_draws`` and ``threads`` change memory and speed, never results."""

    draws: Annotated[int, Field(ge=1, le=10_000_000)] = 1000
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 20270101
    start_year: Annotated[int, Field(ge=2000, le=2100)] = 2027
    years: Annotated[int, Field(ge=1, le=MAX_YEARS)] = 10
    chunk_draws: Annotated[int, Field(ge=1, le=1_000_000)] = 128
    threads: Annotated[int, Field(ge=1, le=1024)] | None = None
    outlier_threshold: Annotated[float, Field(gt=0.0, le=1e9)] = 125_000.0


class MixConfig(_Model):
    aged_disabled: Share = 0.95
    esrd: Share = 0.01
    high_needs: Share = 0.04

    @model_validator(mode="after")
    def _sums_to_one(self) -> MixConfig:
        total = self.aged_disabled + self.esrd + self.high_needs
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"mix must sum to 1 within 1e-9 (got {total!r})")
        return self


class AcoConfig(_Model):
    """The ACO: size, population mix, where its spending stands against its region, its levers."""

    name: str = "Standard ACO"
    beneficiaries: Annotated[int, Field(ge=1, le=5_000_000)] = 10_000
    growth: Annotated[float, Field(ge=-0.5, le=0.5)] = 0.0
    mix: MixConfig = MixConfig()
    historical_to_regional: Annotated[float, Field(ge=0.2, le=5.0)] = 0.97
    prior_savings_pbpm: NonNeg = 0.0
    renewing_from_mssp: bool = False
    care_management_effect: Annotated[list[Annotated[float, Field(ge=-0.9, le=0.9)]],
                                      Field(min_length=1, max_length=MAX_YEARS)] = [0.0]
    operating_cost_pbpm: NonNeg = 0.0
    rural: bool = False


class PopulationConfig(_Model):
    """Cost model of one population type (calibration.md §1-2)."""

    mean_annual_cost: Annotated[float, Field(gt=0.0, le=1e7)]
    national_annual_cost: Annotated[float, Field(gt=0.0, le=1e7)] | None = None
    zero_share: Probability = 0.0
    sigma: Annotated[float, Field(ge=0.0, le=4.0)] = 1.0
    tail_start: Annotated[float, Field(ge=0.5, le=1.0)] = 0.99
    tail_alpha: Annotated[float, Field(gt=1.0, le=100.0)] = 4.0
    rho: Annotated[float, Field(ge=0.0, le=0.999)] = 0.75
    mortality: Probability = 0.04
    death_multiplier: Annotated[float, Field(ge=0.0, le=10.0)] = 1.2
    death_risk_beta: Annotated[float, Field(ge=0.0, le=0.999)] = 0.4
    exit_rate: Probability = 0.10
    risk_model_r2: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5


class AgedDisabledConfig(PopulationConfig):
    mean_annual_cost: Annotated[float, Field(gt=0.0, le=1e7)] = 14_400.0
    zero_share: Probability = 0.05
    sigma: Annotated[float, Field(ge=0.0, le=4.0)] = 1.52
    rho: Annotated[float, Field(ge=0.0, le=0.999)] = 0.75
    mortality: Probability = 0.04
    death_multiplier: Annotated[float, Field(ge=0.0, le=10.0)] = 1.2
    exit_rate: Probability = 0.11
    high_needs_rate: Probability = 0.02
    esrd_rate: Probability = 0.003


class EsrdConfig(PopulationConfig):
    mean_annual_cost: Annotated[float, Field(gt=0.0, le=1e7)] = 110_000.0
    zero_share: Probability = 0.0
    sigma: Annotated[float, Field(ge=0.0, le=4.0)] = 0.89
    rho: Annotated[float, Field(ge=0.0, le=0.999)] = 0.80
    mortality: Probability = 0.136
    death_multiplier: Annotated[float, Field(ge=0.0, le=10.0)] = 1.3
    exit_rate: Probability = 0.08


class HighNeedsConfig(PopulationConfig):
    mean_annual_cost: Annotated[float, Field(gt=0.0, le=1e7)] = 55_000.0
    zero_share: Probability = 0.0
    sigma: Annotated[float, Field(ge=0.0, le=4.0)] = 1.00
    rho: Annotated[float, Field(ge=0.0, le=0.999)] = 0.60
    mortality: Probability = 0.15
    death_multiplier: Annotated[float, Field(ge=0.0, le=10.0)] = 1.2
    exit_rate: Probability = 0.10


class PopulationsConfig(_Model):
    aged_disabled: AgedDisabledConfig = AgedDisabledConfig()
    esrd: EsrdConfig = EsrdConfig()
    high_needs: HighNeedsConfig = HighNeedsConfig()

    def __getitem__(self, name: str) -> PopulationConfig:
        return getattr(self, name)

    def ordered(self) -> list[PopulationConfig]:
        return [getattr(self, p) for p in POPULATIONS]


class PerPopulation(_Model):
    aged_disabled: Rate
    esrd: Rate
    high_needs: Rate

    def ordered(self) -> list[float]:
        return [getattr(self, p) for p in POPULATIONS]


class TrendConfig(_Model):
    """Macro growth: national (per population) and regional AR(1), ACO-specific noise, the forecast."""

    national_mean: PerPopulation = PerPopulation(aged_disabled=0.05, esrd=0.04, high_needs=0.05)
    national_sd: Annotated[float, Field(ge=0.0, le=0.5)] = 0.03
    national_ar: Annotated[float, Field(ge=-0.99, le=0.99)] = 0.5
    regional_sd: Annotated[float, Field(ge=0.0, le=0.5)] = 0.015
    regional_ar: Annotated[float, Field(ge=-0.99, le=0.99)] = 0.5
    aco_sd: Annotated[float, Field(ge=0.0, le=0.5)] = 0.025
    aco_ar: Annotated[float, Field(ge=-0.99, le=0.99)] = 0.5
    forecast_bias: Annotated[float, Field(ge=-0.5, le=0.5)] = 0.0
    national_weight: Share = 0.25


class QualityConfig(_Model):
    """Quality score q ~ Beta(mean, sd) per draw and year [ASSUMED]; sd = 0 gives q = mean."""

    mean: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.85
    sd: Annotated[float, Field(ge=0.0, lt=0.5)] = 0.10

    @model_validator(mode="after")
    def _beta_feasible(self) -> QualityConfig:
        if self.sd**2 >= self.mean * (1.0 - self.mean):
            raise ValueError(f"sd must satisfy sd^2 < mean*(1-mean) = {self.mean * (1 - self.mean):.4g} "
                             f"for a Beta distribution (got sd={self.sd})")
        return self


class RiskCap(_Model):
    aged_disabled: Share
    esrd: Share
    high_needs: Share

    def ordered(self) -> list[float]:
        return [getattr(self, p) for p in POPULATIONS]


class BenchmarkPolicy(_Model):
    """Benchmark rules (methodology §2). Per-year lists hold their last value for later years."""

    trend_method: Literal["blend", "reach_rta"]
    acpt_weight: Share
    guardrail_hi: Annotated[list[Annotated[float, Field(ge=0.0, le=10.0)]], Field(min_length=1)]
    guardrail_lo: Annotated[list[Annotated[float, Field(ge=0.0, le=1.0)]], Field(min_length=1)]
    rta_deadband: Share = 0.0
    rta_breakpoints: Annotated[list[Share], Field(min_length=1)] = [0.0]
    rta_shares: Annotated[list[Share], Field(min_length=1)] = [1.0]
    convergence: PerYearShare
    convergence_cap: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    rea_share: Share
    rea_cap: Share
    rea_cap_renewing: Share
    psa_share: Share
    psa_cap: Share
    risk_cap: RiskCap
    coding_intensity: Annotated[float, Field(ge=-0.1, le=0.1)] = 0.0
    withhold: Annotated[float, Field(ge=0.0, le=0.5)]
    admin_addon: Annotated[float, Field(ge=0.0, le=0.5)]
    rural_addon: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0
    high_performers_bonus: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0
    pcc_base: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0
    pcc_enhanced: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0
    rebase_years: list[Annotated[int, Field(ge=2000, le=2200)]] = []
    rebase_weights: Annotated[list[Share], Field(min_length=1, max_length=5)] = [0.1, 0.3, 0.6]

    @model_validator(mode="after")
    def _bands(self) -> BenchmarkPolicy:
        _check_bands(self.rta_breakpoints, self.rta_shares, "rta")
        if abs(sum(self.rebase_weights) - 1.0) > 1e-9:
            raise ValueError(f"rebase_weights must sum to 1 (got {sum(self.rebase_weights)!r})")
        return self


class TrackPolicy(_Model):
    """Sharing rules of one track (methodology §3.4, §4)."""

    discount_higher: PerYearShare = [0.0]
    discount_lower: PerYearShare = [0.0]
    rea_eligible: bool = False
    savings_breakpoints: Annotated[list[Share], Field(min_length=1, max_length=20)]
    savings_shares: Annotated[list[Share], Field(min_length=1, max_length=20)]
    loss_breakpoints: Annotated[list[Share], Field(min_length=1, max_length=20)]
    loss_shares: Annotated[list[Share], Field(min_length=1, max_length=20)]
    savings_cap: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    loss_cap: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    minimum_savings_rate: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0
    minimum_loss_rate: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0
    quality_loss_share: bool = False
    loss_share_bounds: Annotated[list[Share], Field(min_length=2, max_length=2)] = [0.0, 1.0]

    @model_validator(mode="after")
    def _bands(self) -> TrackPolicy:
        _check_bands(self.savings_breakpoints, self.savings_shares, "savings")
        _check_bands(self.loss_breakpoints, self.loss_shares, "loss")
        lo, hi = self.loss_share_bounds
        if lo > hi:
            raise ValueError(f"loss_share_bounds must be [low, high] with low <= high (got {[lo, hi]})")
        return self


class StopLossPolicy(_Model):
    """Per-beneficiary outlier protection: banded stop-loss, or MSSP-style truncation (not both)."""

    enabled: bool = False
    attachments: Annotated[list[Annotated[float, Field(gt=0.0, le=1e9)]],
                           Field(min_length=1, max_length=10)] = [125_000.0, 250_000.0, 500_000.0]
    shares: Annotated[list[Share], Field(min_length=1, max_length=10)] = [0.5, 0.75, 0.9]
    loading: Annotated[float, Field(ge=0.0, le=5.0)] = 0.10
    neutrality: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0  # ex-post budget-neutrality scales payouts down
    truncation_cap: Annotated[float, Field(gt=0.0, le=1e9)] | None = None

    @model_validator(mode="after")
    def _bands(self) -> StopLossPolicy:
        if len(self.attachments) != len(self.shares):
            raise ValueError(f"attachments and shares must have the same length "
                             f"(got {len(self.attachments)} and {len(self.shares)})")
        if any(b <= a for a, b in zip(self.attachments, self.attachments[1:], strict=False)):
            raise ValueError(f"attachments must be strictly increasing (got {self.attachments})")
        if self.enabled and self.truncation_cap is not None:
            raise ValueError("choose stop-loss (enabled = true) or truncation_cap, not both")
        return self


class SettlementPolicy(_Model):
    sequestration: Annotated[float, Field(ge=0.0, le=0.2)]
    sequestration_on_losses: bool
    financial_guarantee: Annotated[float, Field(ge=0.0, le=1.0)]
    discount_rate: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0


class PolicyConfig(_Model):
    """A policy: which tracks are settled and under which rules (methodology §2-§4)."""

    preset: str | None = None
    name: str
    tracks: Annotated[list[Literal["global", "professional", "enhanced"]], Field(min_length=1, max_length=3)]
    benchmark: BenchmarkPolicy
    global_: TrackPolicy | None = Field(default=None, alias="global")
    professional: TrackPolicy | None = None
    enhanced: TrackPolicy | None = None
    stop_loss: StopLossPolicy = StopLossPolicy()
    settlement: SettlementPolicy

    @model_validator(mode="after")
    def _tracks_defined(self) -> PolicyConfig:
        if len(set(self.tracks)) != len(self.tracks):
            raise ValueError(f"tracks must not repeat (got {self.tracks})")
        for t in self.tracks:
            if self.track(t) is None:
                raise ValueError(f"track {t!r} is listed in tracks but has no [policy.{t}] section")
        return self

    def track(self, name: str) -> TrackPolicy | None:
        return self.global_ if name == "global" else getattr(self, name)


class Config(_Model):
    """A complete, validated leadsim configuration (``schema_version = 1``)."""

    schema_version: Literal[1] = 1
    simulation: SimulationConfig = SimulationConfig()
    aco: AcoConfig = AcoConfig()
    population: PopulationsConfig = PopulationsConfig()
    trend: TrendConfig = TrendConfig()
    quality: QualityConfig = QualityConfig()
    policy: PolicyConfig

    @property
    def years(self) -> list[int]:
        """Performance years, e.g. 2027..2036."""
        s = self.simulation
        return list(range(s.start_year, s.start_year + s.years))

    def to_toml(self) -> str:
        """The full resolved config as TOML (round-trips through :func:`load_config`)."""
        return tomli_w.dumps(self.model_dump(mode="json", by_alias=True, exclude_none=True))

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def assumptions(self) -> list[str]:
        """The [ASSUMED] parameters in force (methodology §5), as ``key = value`` strings.

        Policy keys are those whose comment in the preset file (``configs/policy/<preset>.toml``, or
        ``lead_py2027`` for a self-contained policy) tags them ASSUMED, with the value in force;
        stop-loss terms only when stop-loss is elected. Calibration assumptions ([A] in calibration.md) that
        drive the tail follow.
        """
        p = self.policy
        data = self.to_dict()
        out = [f"trend.national_weight = {self.trend.national_weight}",
               f"quality = Beta(mean={self.quality.mean}, sd={self.quality.sd})"]
        for key in assumed_policy_keys(p.preset or "lead_py2027"):
            parts = key.split(".")
            if parts[1] == "stop_loss" and parts[2] != "truncation_cap" and not p.stop_loss.enabled:
                continue
            if parts[1] in TRACKS and parts[1] not in p.tracks:
                continue
            node: Any = data
            for part in parts:
                node = node.get(part) if isinstance(node, dict) else None
            if node is not None:
                out.append(f"{key} = {node}")
        for name in POPULATIONS:
            pop = self.population[name]
            out.append(f"population.{name}: tail_alpha = {pop.tail_alpha}, rho = {pop.rho}, "
                       f"death_risk_beta = {pop.death_risk_beta}, risk_model_r2 = {pop.risk_model_r2}")
        return out


def assumed_policy_keys(preset: str) -> list[str]:
    """Dotted keys of a preset file whose comment tags them ASSUMED (the file is the source)."""
    path = preset_dir() / f"{preset}.toml"
    if not path.is_file():
        return []
    keys: list[str] = []
    section = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        code, _, comment = line.partition("#")
        code = code.strip()
        if code.startswith("[") and code.endswith("]"):
            section = code.strip("[]").strip()
        elif "=" in code and "ASSUMED" in comment:
            keys.append(f"{section}.{code.split('=')[0].strip()}")
    return keys


# --------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------
def preset_dir() -> Path:
    """Folder of policy presets: ``$LEADSIM_CONFIG_DIR/policy``, else the packaged or repository ``configs``."""
    env = os.environ.get("LEADSIM_CONFIG_DIR")
    if env:
        return Path(env) / "policy"
    here = Path(__file__).resolve().parent
    packaged = here / "_configs" / "policy"
    return packaged if packaged.is_dir() else here.parent / "configs" / "policy"


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
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


def available_presets() -> list[str]:
    d = preset_dir()
    return sorted(p.stem for p in d.glob("*.toml")) if d.is_dir() else []


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


def _format_errors(err: ValidationError) -> list[str]:
    lines = []
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        key = ".".join(_key_part(p) for p in loc) or "(top level)"
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if e["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key (check the spelling; see configs/default.toml)")
            continue
        if e["type"] == "missing":
            lines.append(f"{key}: required key is missing")
            continue
        value = e.get("input")
        shown = repr(value) if not isinstance(value, dict) else "{...}"
        if len(shown) > 60:
            shown = shown[:57] + "..."
        rng = _field_range(Config, loc)
        bound_error = any(w in msg for w in ("greater", "less", "finite")) or e["type"] in (
            "float_type", "int_type", "finite_number")
        tail = f" ({rng})" if rng and bound_error else ""
        lines.append(f"{key} = {shown}: {msg}{tail}")
    return lines


def validate(data: Mapping[str, Any]) -> Config:
    """Validate a config mapping (after preset resolution) into a :class:`Config`, or raise ConfigError."""
    try:
        cfg = Config.model_validate(dict(data))
    except ValidationError as err:
        raise ConfigError(_format_errors(err)) from None
    _check_size(cfg)
    _warn(cfg)
    return cfg


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


def _warn(cfg: Config) -> None:
    n = cfg.aco.beneficiaries
    if n < 5000 and cfg.aco.mix.high_needs <= 0.4:
        warnings.warn(f"aco.beneficiaries = {n} is below LEAD's minimum of 5,000 aligned beneficiaries "
                      "(CMS LEAD page); simulating anyway", LeadsimWarning, stacklevel=3)
    elif n < 800:
        warnings.warn(f"aco.beneficiaries = {n} is below LEAD's minimum of 800 for a High Needs ACO",
                      LeadsimWarning, stacklevel=3)
    for name in POPULATIONS:
        a = cfg.population[name].tail_alpha
        if a <= 2.0 and cfg.population[name].tail_start < 1.0:
            warnings.warn(f"population.{name}.tail_alpha = {a}: a Pareto tail with alpha <= 2 has infinite "
                          "variance; tail metrics will not converge", LeadsimWarning, stacklevel=3)
    if cfg.simulation.start_year + cfg.simulation.years - 1 > 2036:
        warnings.warn("the simulation runs past PY2036, the last LEAD performance year", LeadsimWarning,
                      stacklevel=3)


def load_config(source: str | os.PathLike[str] | Mapping[str, Any] | Config | None = None,
                overrides: Mapping[str, Any] | None = None) -> Config:
    """Read, merge and validate a leadsim configuration.

    Parameters
    ----------
    source : path, mapping, Config or None
        A TOML file, an already-parsed mapping, a Config (re-validated with the overrides), or None for
        the built-in defaults (the standard ACO under the ``lead_py2027`` preset).
    overrides : mapping of dotted keys to values, optional
        Applied after the file, e.g. ``{"simulation.draws": 5000, "policy.preset": "reach_py2026"}``.
        String values are parsed as TOML literals, as with the CLI's ``--set key=value``.

    Returns
    -------
    Config
        Frozen, validated configuration.

    Raises
    ------
    ConfigError
        With one line per problem, each naming the dotted key, the value and the allowed range.
    """
    base_dir: Path | None = None
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
    for key, value in (overrides or {}).items():
        _apply_override(data, key, parse_override_value(value) if isinstance(value, str) else value)
    if isinstance(data.get("policy"), dict) and "preset" in data["policy"] and overrides and any(
            k == "policy.preset" for k in overrides):
        # a preset chosen by override replaces the file's policy rules, keeping only the explicit overrides
        kept = {k.split(".", 1)[1]: v for k, v in overrides.items() if k.startswith("policy.")}
        data["policy"] = {}
        for k, v in kept.items():
            _apply_override(data["policy"], k, parse_override_value(v) if isinstance(v, str) else v)
    data = _resolve_preset(data, base_dir)
    return validate(data)

