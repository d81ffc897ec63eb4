"""The config schema: pydantic models with bounds, validated into one frozen :class:`Config`.

Every numeric field has bounds and unknown keys are errors. The defaults of the cost model are the calibration
documented in ``docs/calibration.md`` (tags [S] sourced, [D] derived, [A] assumed). Policy figures have no
defaults in code: they come from a preset file, where each carries its tag ([LEAD], [LEAD-2], [REACH], [MSSP],
[ASSUMED]).
"""

from __future__ import annotations

import itertools
import unicodedata
from typing import Annotated, Any, Literal

import tomli_w
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_serializer, model_validator

from leadsim.config.presets import assumed_policy_keys

__all__ = ["MAX_YEARS", "POPULATIONS", "TRACKS", "Config", "TrackPolicy", "chunk_bounds", "per_year", "shock_path"]

POPULATIONS: tuple[str, ...] = ("aged_disabled", "esrd", "high_needs")
"""Population types in dataset order (``docs/methodology.md`` §1)."""

TRACKS: tuple[str, ...] = ("global", "professional", "enhanced")
"""Track kinds a policy may settle: LEAD Global, LEAD Professional, MSSP ENHANCED (comparator)."""

MAX_YEARS = 30


# --------------------------------------------------------------------------------------------------------
# Field types
# --------------------------------------------------------------------------------------------------------
Share = Annotated[float, Field(ge=0.0, le=1.0)]
Probability = Annotated[float, Field(ge=0.0, lt=1.0)]
Rate = Annotated[float, Field(ge=-0.5, le=1.0)]
NonNeg = Annotated[float, Field(ge=0.0, le=1e9)]
PerYearShare = Annotated[list[Share], Field(min_length=1, max_length=MAX_YEARS)]
ShockList = Annotated[list[Annotated[float, Field(ge=-0.5, le=0.5)]], Field(min_length=1, max_length=MAX_YEARS)]
# bounds of the cost-model fields, stated once (the population classes below only change defaults)
AnnualCost = Annotated[float, Field(gt=0.0, le=1e7)]
LogSigma = Annotated[float, Field(ge=0.0, le=4.0)]
Persistence = Annotated[float, Field(ge=0.0, le=0.999)]
DeathMultiplier = Annotated[float, Field(ge=0.0, le=10.0)]
# alpha <= 2: infinite variance, so a sample mean and its standard error are confidently wrong
TailAlpha = Annotated[float, Field(gt=2.0, le=100.0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False,
                              populate_by_name=True)


def chunk_bounds(n_draws: int, chunk: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each chunk of draws: chunk ``i`` covers ``[i * chunk, min((i + 1) * chunk, n))``."""
    return [(lo, min(lo + chunk, n_draws)) for lo in range(0, n_draws, chunk)]


def _printable(text: str) -> str:
    """Refuse control characters (NUL, newlines, escapes): names go into file attributes, tables and figures."""
    bad = sorted({c for c in text if unicodedata.category(c) == "Cc"})
    if bad:
        raise ValueError(f"contains control character{'s' if len(bad) > 1 else ''} "
                         f"{', '.join(repr(c) for c in bad)}; use printable text")
    return text


Name = Annotated[str, Field(max_length=200), AfterValidator(_printable)]
"""A display name (ACO, policy): printable text, at most 200 characters."""


def per_year(values: list[float] | tuple[float, ...], years: int) -> list[float]:
    """Expand a per-year list to ``years`` entries: missing later years hold the last value."""
    vals = list(values)
    return [vals[min(i, len(vals) - 1)] for i in range(years)]


def shock_path(values: list[float] | tuple[float, ...] | None, years: int) -> list[float]:
    """Expand a per-year list of one-off changes to ``years`` entries: missing later years are 0 (not held).

    Scenario fields (a spending shock, a forecast miss, loss relief) describe events in given years, so
    unlike :func:`per_year` the last value is not carried forward; ``None`` means no event at all.
    """
    vals = list(values or [])
    return [float(vals[i]) if i < len(vals) else 0.0 for i in range(years)]


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
TiltShift = Annotated[list[Annotated[float, Field(ge=-8.0, le=8.0)]], Field(max_length=4 * MAX_YEARS + 1)]
"""A pinned tilt vector of ``sampling = "tilted"``: one mean shift per systematic normal (``docs/design.md``)."""


class SimulationConfig(_Model):
    """Monte Carlo settings. ``chunk_draws`` and ``threads`` change memory and speed, never results."""

    draws: Annotated[int, Field(ge=1, le=10_000_000)] = 1000
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 20270101
    start_year: Annotated[int, Field(ge=2000, le=2100)] = 2027
    years: Annotated[int, Field(ge=1, le=MAX_YEARS)] = 10
    chunk_draws: Annotated[int, Field(ge=1, le=1_000_000)] = 128
    threads: Annotated[int, Field(ge=1, le=1024)] | None = None
    outlier_threshold: Annotated[float, Field(gt=0.0, le=1e9)] = 125_000.0
    # each draw uses one of the config's [[parameter_sets]] (docs/fit.md §4); false: the population values
    parameter_draws: bool = False
    # how the systematic (macro) variates are sampled: docs/design.md, "Sampling and weights"
    sampling: Literal["plain", "qmc", "tilted"] = "plain"
    qmc_replicates: Annotated[int, Field(ge=8, le=4096)] = 32
    qmc_rotate: bool = False  # qmc: rotate the first Sobol coordinate onto the pilot's loss direction
    tilt_level: Annotated[float, Field(ge=0.5, le=0.9999)] = 0.995
    pilot_draws: Annotated[int, Field(ge=64, le=100_000)] = 256
    tilt_shift: TiltShift | None = None
    tilt_track: Literal["global", "professional", "enhanced"] | None = None  # the track the pilot aims at

    @model_validator(mode="after")
    def _tilt_shift_length(self) -> SimulationConfig:
        if self.tilt_shift is not None and len(self.tilt_shift) != 4 * self.years + 1:
            raise ValueError(f"simulation.tilt_shift needs 4 * years + 1 = {4 * self.years + 1} values (national, "
                             "regional, ACO level and quality per year, then care management), got "
                             f"{len(self.tilt_shift)}")
        return self

    @model_serializer(mode="wrap")
    def _omit_default_sampling(self, handler: Any) -> Any:
        """Write the sampling keys only when one differs from its default: a plain run's resolved config
        (and so its stored ``config_toml``) reads exactly as before the keys existed."""
        data = handler(self)
        if isinstance(data, dict) and all(getattr(self, k) == SimulationConfig.model_fields[k].default
                                          for k in SAMPLING_KEYS):
            for k in SAMPLING_KEYS:
                data.pop(k, None)
        return data


SAMPLING_KEYS = ("sampling", "qmc_replicates", "qmc_rotate", "tilt_level", "pilot_draws")


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

    name: Name = "Standard ACO"
    beneficiaries: Annotated[int, Field(ge=1, le=5_000_000)] = 10_000
    growth: Annotated[float, Field(ge=-0.5, le=0.5)] = 0.0
    mix: MixConfig = MixConfig()
    historical_to_regional: Annotated[float, Field(ge=0.2, le=5.0)] = 0.97
    prior_savings_pbpm: NonNeg = 0.0
    renewing_from_mssp: bool = False
    care_management_effect: Annotated[list[Annotated[float, Field(ge=-0.9, le=0.9)]],
                                      Field(min_length=1, max_length=MAX_YEARS)] = [0.0]
    care_management_cv: Annotated[float, Field(ge=0.0, le=2.0)] = 0.0
    operating_cost_pbpm: NonNeg = 0.0
    rural: bool = False


class PopulationConfig(_Model):
    """Cost model of one population type (``docs/calibration.md`` §1-2)."""

    mean_annual_cost: AnnualCost
    national_annual_cost: AnnualCost | None = None
    zero_share: Probability = 0.0
    sigma: LogSigma = 1.0
    tail_start: Annotated[float, Field(ge=0.5, le=1.0)] = 0.99
    tail_alpha: TailAlpha = 4.0
    rho: Persistence = 0.75
    mortality: Probability = 0.04
    death_multiplier: DeathMultiplier = 1.2
    death_risk_beta: Persistence = 0.4
    exit_rate: Probability = 0.10
    risk_model_r2: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5


class AgedDisabledConfig(PopulationConfig):
    """Aged & Disabled: the defaults of ``docs/calibration.md`` §1, and the transitions out of it."""

    mean_annual_cost: AnnualCost = 14_400.0
    zero_share: Probability = 0.05
    sigma: LogSigma = 1.52
    rho: Persistence = 0.75
    mortality: Probability = 0.04
    death_multiplier: DeathMultiplier = 1.2
    exit_rate: Probability = 0.11
    high_needs_rate: Probability = 0.01
    esrd_rate: Probability = 0.002


class EsrdConfig(PopulationConfig):
    """ESRD: the defaults of ``docs/calibration.md`` §1."""

    mean_annual_cost: AnnualCost = 110_000.0
    zero_share: Probability = 0.0
    sigma: LogSigma = 0.89
    rho: Persistence = 0.80
    mortality: Probability = 0.136
    death_multiplier: DeathMultiplier = 1.3
    exit_rate: Probability = 0.08


class HighNeedsConfig(PopulationConfig):
    """High Needs: the defaults of ``docs/calibration.md`` §1."""

    mean_annual_cost: AnnualCost = 55_000.0
    zero_share: Probability = 0.0
    sigma: LogSigma = 1.00
    rho: Persistence = 0.60
    mortality: Probability = 0.15
    death_multiplier: DeathMultiplier = 1.2
    exit_rate: Probability = 0.10


class PopulationsConfig(_Model):
    aged_disabled: AgedDisabledConfig = AgedDisabledConfig()
    esrd: EsrdConfig = EsrdConfig()
    high_needs: HighNeedsConfig = HighNeedsConfig()

    def __getitem__(self, name: str) -> PopulationConfig:
        return getattr(self, name)

    def ordered(self) -> list[PopulationConfig]:
        return [getattr(self, p) for p in POPULATIONS]


class PopulationDraw(_Model):
    """One population's values in one parameter set; a key left out keeps the ``[population.*]`` value."""

    mean_annual_cost: AnnualCost | None = None
    zero_share: Probability | None = None
    sigma: LogSigma | None = None
    tail_alpha: TailAlpha | None = None
    rho: Persistence | None = None
    mortality: Probability | None = None
    death_multiplier: DeathMultiplier | None = None
    death_risk_beta: Persistence | None = None
    exit_rate: Probability | None = None


class ParameterSet(_Model):
    """One ``[[parameter_sets]]`` entry: population values drawn from a fit's parameter uncertainty
    (``leadsim fit --parameter-sets N``); ``simulation.parameter_draws = true`` gives each draw one set."""

    aged_disabled: PopulationDraw = PopulationDraw()
    esrd: PopulationDraw = PopulationDraw()
    high_needs: PopulationDraw = PopulationDraw()

    def overrides(self) -> dict[str, float]:
        """The set as dotted-key overrides of the config (``population.<name>.<key>``)."""
        return {f"population.{name}.{k}": v for name in POPULATIONS
                for k, v in getattr(self, name).model_dump(exclude_none=True).items()}


MAX_PARAMETER_SETS = 1000


class PerPopulation(_Model):
    aged_disabled: Rate
    esrd: Rate
    high_needs: Rate

    def ordered(self) -> list[float]:
        return [getattr(self, p) for p in POPULATIONS]


class TrendConfig(_Model):
    """Macro growth: national (per population) and regional AR(1), the ACO's own cost level, the forecast.

    The ACO's cost level relative to its region is a mean-reverting AR(1) in the log level,
    ``l_t = aco_level_persistence x l_{t-1} + aco_level_sd x eps_t`` with ``l = 0`` in the base year
    (``docs/calibration.md`` §1); it replaced the AR(1) on the ACO's growth (``aco_sd``, ``aco_ar``).
    """

    national_mean: PerPopulation = PerPopulation(aged_disabled=0.05, esrd=0.04, high_needs=0.05)
    national_sd: Annotated[float, Field(ge=0.0, le=0.5)] = 0.03
    national_ar: Annotated[float, Field(ge=-0.99, le=0.99)] = 0.5
    regional_sd: Annotated[float, Field(ge=0.0, le=0.5)] = 0.015
    regional_ar: Annotated[float, Field(ge=-0.99, le=0.99)] = 0.5
    aco_level_sd: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0265
    aco_level_persistence: Annotated[float, Field(ge=0.0, le=0.999)] = 0.80
    forecast_bias: Annotated[float, Field(ge=-0.5, le=0.5)] = 0.0
    national_weight: Share = 0.25
    # stress scenarios (configs/scenarios/): per-year one-off changes, later years 0 (``shock_path``)
    national_shock: ShockList | None = None   # added to national (so regional and ACO) annual growth
    forecast_miss: ShockList | None = None    # added to the prospective (forecast) annual growth


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
    """Benchmark rules (``docs/methodology.md`` §2). Per-year lists hold their last value for later years."""

    trend_method: Literal["blend", "reach_rta"]
    acpt_weight: Share
    guardrail_hi: Annotated[list[Annotated[float, Field(ge=0.0, le=10.0)]], Field(min_length=1)]
    guardrail_lo: Annotated[list[Annotated[float, Field(ge=0.0, le=1.0)]], Field(min_length=1)]
    rta_deadband: Share = 0.0
    rta_breakpoints: Annotated[list[Share], Field(min_length=1)] = [0.0]
    rta_shares: Annotated[list[Share], Field(min_length=1)] = [1.0]
    rta_reference: Literal["national", "two_way"] = "national"
    convergence: PerYearShare
    convergence_cap: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    rea_share: Share
    rea_cap: Share
    rea_cap_renewing: Share
    rea_share_negative: Share = 0.0
    rea_negative_cap: Share = 0.0
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
    """Sharing rules of one track (``docs/methodology.md`` §3.4, §4)."""

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
    basis: Literal["realised", "expected"] = "realised"
    truncation_cap: Annotated[float, Field(gt=0.0, le=1e9)] | None = None
    truncation_percentile: Annotated[float, Field(gt=0.5, lt=1.0)] | None = None

    @property
    def truncates(self) -> bool:
        """Whether per-beneficiary truncation is the outlier rule (a cap or a national percentile)."""
        return self.truncation_cap is not None or self.truncation_percentile is not None

    @model_validator(mode="after")
    def _bands(self) -> StopLossPolicy:
        if len(self.attachments) != len(self.shares):
            raise ValueError(f"attachments and shares must have the same length "
                             f"(got {len(self.attachments)} and {len(self.shares)})")
        if any(b <= a for a, b in zip(self.attachments, self.attachments[1:], strict=False)):
            raise ValueError(f"attachments must be strictly increasing (got {self.attachments})")
        if self.enabled and self.truncation_cap is not None:
            raise ValueError("choose stop-loss (enabled = true) or truncation_cap, not both")
        if self.enabled and self.truncation_percentile is not None:
            raise ValueError("choose stop-loss (enabled = true) or truncation_percentile, not both")
        if self.truncation_cap is not None and self.truncation_percentile is not None:
            raise ValueError("choose truncation_cap (one cap) or truncation_percentile (per population), not both")
        return self


class SettlementPolicy(_Model):
    sequestration: Annotated[float, Field(ge=0.0, le=0.2)]
    sequestration_on_losses: bool
    financial_guarantee: Annotated[float, Field(ge=0.0, le=1.0)]
    discount_rate: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0
    # stress scenarios: extreme-and-uncontrollable-circumstances relief (share of shared losses forgiven per
    # year, later years 0) and the last performance year settled before the model ends early
    euc_loss_relief: PerYearShare | None = None
    terminated_after: Annotated[int, Field(ge=2000, le=2200)] | None = None


class RuleChange(_Model):
    """A mid-model rule change: from performance year ``year`` on, a higher Global discount, a higher
    withhold and narrower risk corridors (as ACO REACH did between PY2022 and PY2026; ``docs/methodology.md``)."""

    year: Annotated[int, Field(ge=2000, le=2200)]
    global_discount_add: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0
    withhold_add: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0
    corridor_scale: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0


class PolicyConfig(_Model):
    """A policy: which tracks are settled and under which rules (``docs/methodology.md`` §2-§4)."""

    preset: str | None = None
    name: Name
    tracks: Annotated[list[Literal["global", "professional", "enhanced"]], Field(min_length=1, max_length=3)]
    benchmark: BenchmarkPolicy
    global_: TrackPolicy | None = Field(default=None, alias="global")
    professional: TrackPolicy | None = None
    enhanced: TrackPolicy | None = None
    stop_loss: StopLossPolicy = StopLossPolicy()
    settlement: SettlementPolicy
    rule_change: RuleChange | None = None

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
    scenario: Name | None = None  # the stress scenario(s) applied by ``load_config(..., scenario=...)``, a label

    @model_validator(mode="after")
    def _event_years(self) -> Config:
        first, last = self.simulation.start_year, self.simulation.start_year + self.simulation.years - 1
        rc, end = self.policy.rule_change, self.policy.settlement.terminated_after
        if rc is not None and not first <= rc.year <= last:
            raise ValueError(f"policy.rule_change.year = {rc.year}: must be a performance year "
                             f"(allowed: {first} <= value <= {last})")
        if end is not None and not first <= end <= last:
            raise ValueError(f"policy.settlement.terminated_after = {end}: must be a performance year "
                             f"(allowed: {first} <= value <= {last})")
        return self

    @model_validator(mode="after")
    def _tilt_track_is_settled(self) -> Config:
        t = self.simulation.tilt_track
        if t is not None and t not in self.policy.tracks:
            raise ValueError(f"simulation.tilt_track = {t!r} is not a track of this policy "
                             f"(tracks: {', '.join(self.policy.tracks)})")
        return self

    @property
    def years(self) -> list[int]:
        """Performance years, e.g. 2027..2036."""
        s = self.simulation
        return list(range(s.start_year, s.start_year + s.years))

    # fitted parameter uncertainty (docs/fit.md §4): used when simulation.parameter_draws = true
    parameter_sets: Annotated[list[ParameterSet], Field(max_length=MAX_PARAMETER_SETS)] = []

    @model_validator(mode="after")
    def _parameter_sets_present(self) -> Config:
        if self.simulation.parameter_draws and not self.parameter_sets:
            raise ValueError("simulation.parameter_draws = true needs fitted parameter sets: the config has no "
                             "[[parameter_sets]] (write them with `leadsim fit PANEL -o fitted.toml "
                             "--parameter-sets N`, N >= 2), or set simulation.parameter_draws = false")
        return self

    def to_toml(self) -> str:
        """The full resolved config as TOML (round-trips through :func:`load_config`)."""
        return tomli_w.dumps(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        # parameter uncertainty off: the keys are left out, so a config without them reads and records as before
        if not data["simulation"]["parameter_draws"]:
            del data["simulation"]["parameter_draws"]
        if not data["parameter_sets"]:
            del data["parameter_sets"]
        return data

    def assumptions(self) -> list[str]:
        """The [ASSUMED] parameters in force (``docs/methodology.md`` §5), as ``key = value`` strings.

        Policy keys are those whose comment in the preset file (``configs/policy/<preset>.toml``, or
        ``lead_py2027`` for a self-contained policy) tags them ASSUMED, with the value in force;
        stop-loss terms only when stop-loss is elected. Calibration assumptions ([A] in ``docs/calibration.md``) that
        drive the tail follow.
        """
        p = self.policy
        data = self.to_dict()
        out = [f"trend.national_weight = {self.trend.national_weight}",
               f"quality = Beta(mean={self.quality.mean}, sd={self.quality.sd})"]
        if any(c != 0.0 for c in self.aco.care_management_effect):
            out.append(f"aco.care_management_cv = {self.aco.care_management_cv} "
                       f"(effect {self.aco.care_management_effect} x (1 + cv eps), one eps per draw)")
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
        if self.scenario:  # stress-scenario magnitudes are stylised (docs/model.md §6a)
            out.append(f"scenario = {self.scenario}")
            events = {"trend.national_shock": self.trend.national_shock,
                      "trend.forecast_miss": self.trend.forecast_miss,
                      "policy.settlement.euc_loss_relief": p.settlement.euc_loss_relief,
                      "policy.settlement.terminated_after": p.settlement.terminated_after,
                      "policy.rule_change": p.rule_change.model_dump() if p.rule_change else None}
            out += [f"{k} = {v}" for k, v in events.items() if v is not None]
        for name in POPULATIONS:
            pop = self.population[name]
            out.append(f"population.{name}: tail_alpha = {pop.tail_alpha}, rho = {pop.rho}, "
                       f"death_risk_beta = {pop.death_risk_beta}, risk_model_r2 = {pop.risk_model_r2}")
        return out
