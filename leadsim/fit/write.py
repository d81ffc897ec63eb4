"""The fitted config as TOML: the base config with every fitted value replaced and tagged ``[FIT]``.

Each fitted key carries a comment ``# [FIT] se <SE>, <first>-<last> data, <file>``; a population too small to
fit keeps the base value with a comment saying so. The simulation starts the year after the data
(``simulation.start_year = last + 1``), so money is in dollars of the last data year, the new base year.
"""

from __future__ import annotations

import warnings
from typing import Any

import tomli_w

from leadsim.config import POPULATIONS, Config, LeadsimWarning, load_config
from leadsim.fit.estimate import FitResult

__all__ = ["fitted_config", "fitted_toml"]

# config bounds the estimates are clipped to (leadsim/config/schema.py); the tail index must exceed 2 (a Pareto
# tail with alpha <= 2 has infinite variance, which the simulator refuses), so a fit below it is written as 2.01
_CLIP = {"zero_share": (0.0, 0.999), "sigma": (0.0, 4.0), "tail_alpha": (2.01, 100.0), "rho": (0.0, 0.999),
         "mortality": (0.0, 0.999), "death_multiplier": (0.0, 10.0), "death_risk_beta": (0.0, 0.999),
         "exit_rate": (0.0, 0.999), "mean_annual_cost": (1.0, 1e7), "high_needs_rate": (0.0, 0.999),
         "esrd_rate": (0.0, 0.999)}


def _num(v: float) -> str:
    return repr(float(round(v, 6)))


def _clip(key: str, v: float, where: str) -> float:
    lo, hi = _CLIP.get(key, (-float("inf"), float("inf")))
    if v < lo or v > hi:
        warnings.warn(f"{where}.{key}: fitted {v:.6g} outside the config's range [{lo}, {hi}]; clipped",
                      LeadsimWarning, stacklevel=3)
    return min(max(v, lo), hi)


def _mix(result: FitResult) -> dict[str, float]:
    vals = {k: round(max(e.value, 0.0), 6) for k, e in result.mix.items()}
    vals["aged_disabled"] = round(1.0 - vals["esrd"] - vals["high_needs"], 6)
    return vals


def fitted_toml(result: FitResult, base: Config | None = None, parameter_sets: int = 0, seed: int = 12) -> str:
    """The fitted config as TOML text (loadable by ``leadsim run`` and :func:`leadsim.load_config`).

    With ``parameter_sets = N > 0`` it also carries ``N`` ``[[parameter_sets]]`` drawn from the fit's parameter
    uncertainty (:func:`leadsim.fit.uncertainty.parameter_set_values`, seed ``seed``) and turns
    ``simulation.parameter_draws`` on, so that ``leadsim run`` gives each draw one set (``docs/fit.md`` §4).
    """
    base = base or load_config()
    y0, y1 = result.years
    tag = f"{y0}-{y1} data, {result.source}"
    data: dict[str, Any] = base.to_dict()
    populations = data.pop("population")
    data["simulation"]["start_year"] = y1 + 1
    data.pop("parameter_sets", None)  # the base config's sets (if any) belong to another fit
    data["simulation"].pop("parameter_draws", None)
    if parameter_sets:
        data["simulation"]["parameter_draws"] = True
    data["aco"].pop("mix")
    data["aco"]["beneficiaries"] = max(1, result.beneficiaries)
    trend = result.trend
    head = [
        f"# leadsim fit of {result.source} ({y0}-{y1}); fitted values are tagged [FIT] with their standard error.",
        f"# Money in {y1} dollars (the base year of a simulation starting in {y1 + 1}); years put on one basis by "
        f"a trend of {trend.value:+.4f} per year ({'estimated' if result.trend_estimated else 'given'}, "
        f"se {trend.se:.4f}).",
        f"# aco.beneficiaries = {result.beneficiaries}: aligned in {y1}.",
    ]
    for name, pf in result.populations.items():
        gof = (f"goodness of fit KS D = {pf.gof_statistic:.4f}, p = {pf.gof_pvalue:.3g}"
               f"{' -- POOR FIT: the lognormal-Pareto marginal is rejected' if pf.flagged else ''}")
        head.append(f"# {name}: {pf.n_bene:,} beneficiaries; " + (gof if pf.fitted else pf.note))
    lines = [*head, "", tomli_w.dumps(data).rstrip(), "", "[aco.mix]  # aligned mix (entrants' mix solved to keep it)"]
    mix = _mix(result)
    lines += [f"{k} = {_num(mix[k])}  # [FIT] se {result.mix[k].se:.2g}, {tag}" for k in POPULATIONS]
    for name in POPULATIONS:
        pf = result.populations[name]
        lines += ["", f"[population.{name}]"]
        pop: dict[str, Any] = dict(populations[name])
        if name == "aged_disabled":
            pop.update(result.transitions)
        if pf.fitted:
            pop.update(pf.estimates)
        for key, val in pop.items():
            if hasattr(val, "se"):
                v = _clip(key, val.value, f"population.{name}")
                clipped = f", clipped from {val.value:.4g} to the config's range" if v != val.value else ""
                lines.append(f"{key} = {_num(v)}  # [FIT] se {val.se:.3g}, {tag}{clipped}")
            elif key == "mean_annual_cost" and not pf.fitted:
                # the base value is in dollars of the year before its start_year: trended to the new base year
                n_years = y1 - (base.simulation.start_year - 1)
                g = getattr(base.trend.national_mean, name)
                lines.append(f"{key} = {_num(val * (1.0 + g) ** n_years)}  # base value kept (too few "
                             f"beneficiaries to fit), trended {n_years} years at {g:+.3f} to {y1} dollars")
            else:
                note = "" if pf.fitted else "  # base value kept: too few beneficiaries to fit"
                lines.append(f"{key} = {tomli_w.dumps({'v': val})[4:].strip()}{note}")
    if parameter_sets:
        from leadsim.fit.uncertainty import parameter_set_values

        lines += ["", f"# {parameter_sets} parameter sets drawn from the fit's large-sample law (seed {seed}; "
                  "docs/fit.md §4). With simulation.parameter_draws = true", "# each draw uses one of them; "
                  "set it to false for process risk alone at the fitted values."]
        for one in parameter_set_values(result, parameter_sets, seed):
            lines.append("[[parameter_sets]]")
            lines += [f"{name} = {{ " + ", ".join(f"{k} = {_num(v)}" for k, v in vals.items()) + " }"
                      for name, vals in one.items()]
    return "\n".join(lines) + "\n"


def fitted_config(result: FitResult, base: Config | None = None, parameter_sets: int = 0) -> Config:
    """The fitted config, validated (as ``leadsim run`` would load it); ``parameter_sets`` as :func:`fitted_toml`."""
    import tomllib

    return load_config(tomllib.loads(fitted_toml(result, base, parameter_sets)))
