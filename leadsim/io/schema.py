"""The xarray Dataset of a run: variable schema, units, provenance attrs, and reading a result's config back.

Dims ``draw`` (CF ``realization``), ``year``, ``population``, ``track``; every variable has ``units`` and
``long_name``; the global attrs carry the full resolved config (``config_toml``) and the versions that made
it. See ``docs/design.md`` for the table of variables.
"""

from __future__ import annotations

import datetime as _dt
import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
import xarray as xr

from leadsim._version import __version__
from leadsim.config import POPULATIONS, Config, load_config
from leadsim.errors import ConfigError, ResultError

__all__ = ["CONSTANTS", "OPTIONAL", "SCHEMA", "RunHeader", "build_dataset", "config_of", "encode", "provenance"]

D_YP = ("draw", "year", "population")
D_YPT = ("draw", "year", "population", "track")
D_YT = ("draw", "year", "track")
D_Y = ("draw", "year")

# name: (dims, units, long_name)
SCHEMA: dict[str, tuple[tuple[str, ...], str, str]] = {
    "member_months": (D_YP, "months", "aligned beneficiary-months"),
    "deaths": (D_YP, "count", "deaths of aligned beneficiaries"),
    "entrants": (D_YP, "count", "newly aligned beneficiaries (half a year of exposure)"),
    "outliers": (D_YP, "count", "beneficiary-years above the outlier threshold (trended)"),
    "expenditure": (D_YP, "USD", "Parts A+B spending of aligned beneficiaries"),
    "stop_loss_payout": (D_YP, "USD", "outlier relief: stop-loss payout (after the budget-neutrality factor), "
                                      "or spending removed by truncation"),
    "risk_score": (D_YP, "1", "member-month-weighted mean risk score (prospective; High Needs concurrent)"),
    "national_growth": (D_YP, "1", "annual national per-capita growth rate"),
    "regional_growth": (D_YP, "1", "annual regional per-capita growth rate"),
    "aco_growth": (D_YP, "1", "annual growth rate of the ACO's own mean cost"),
    "quality_score": (D_Y, "1", "quality score q (earns back the withhold)"),
    "benchmark_pbpm": (D_YPT, "USD per member-month", "final benchmark after discount and withhold"),
    "blended_update": (D_YPT, "1", "cumulative benchmark trend factor U from the base year"),
    "benchmark": (D_YT, "USD", "benchmark dollars (final benchmark x member-months)"),
    "benchmark_discount": (D_YT, "USD", "benchmark reduction by the discount"),
    "withhold_retained": (D_YT, "USD", "quality withhold not earned back"),
    "stop_loss_charge": (D_YT, "USD", "stop-loss charge (at realised national trend, or priced before the year)"),
    "gross_savings": (D_YT, "USD", "benchmark - (expenditure - stop-loss payout + charge)"),
    "savings_rate": (D_YT, "1", "gross savings / benchmark"),
    "shared_savings": (D_YT, "USD", "corridor share of gross savings after sequestration (<0: loss owed)"),
    "sequestration": (D_YT, "USD", "sequestration taken from shared savings (or losses)"),
    "add_on_payments": (D_YT, "USD", "administrative, rural and bonus add-on payments"),
    "operating_cost": (D_YT, "USD", "the ACO's own operating cost"),
    "net_settlement": (D_YT, "USD", "shared savings + add-ons - operating cost (positive to the ACO)"),
    "cumulative_settlement": (("draw", "track"), "USD", "sum of annual net settlements (discounted)"),
    "pcc_advance": (D_YT, "USD", "enhanced primary care capitation advanced during the year"),
    "cash_settlement": (D_YT, "USD", "cash at settlement: net settlement - recouped enhanced PCC advance"),
    "weight": (("draw",), "1", "likelihood-ratio weight of the draw in every metric (1 unless sampling = tilted)"),
    "replicate": (("draw",), "1", "randomization replicate of a QMC draw (the batch of batch-means errors)"),
    # only with simulation.parameter_draws = true
    "parameter_set": (("draw",), "1", "0-based index of the [[parameter_sets]] entry the draw was simulated with"),
}


OPTIONAL: frozenset[str] = frozenset({"parameter_set"})
"""Variables of :data:`SCHEMA` only some runs have (``parameter_set``: with ``simulation.parameter_draws``)."""


CONSTANTS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "financial_guarantee": ((), "USD", "financial guarantee amount for the first performance year"),
    "financial_guarantee_by_year": (("year",), "USD", "financial guarantee, recomputed each performance year"),
}
"""Run-level variables without a ``draw`` dimension (computed once per run by the engine)."""


@dataclass(frozen=True)
class RunHeader:
    """What a run knows before its first draw: run-level variables and the model's own attributes."""

    constants: Mapping[str, Any] = field(default_factory=dict)
    attrs: Mapping[str, Any] = field(default_factory=dict)


def build_dataset(cfg: Config, arrays: Mapping[str, Any], constants: Mapping[str, Any] | None = None,
                  attrs: Mapping[str, Any] | None = None, draws: np.ndarray | None = None) -> xr.Dataset:
    """Wrap a run's arrays in an xarray Dataset with coordinates, units and provenance attrs.

    Parameters
    ----------
    cfg : Config
        The run's config (coordinates and attrs).
    arrays : mapping of str to array
        Per-draw variables named as in :data:`SCHEMA`, draw first (numpy or dask arrays).
    constants : mapping of str to array, optional
        Run-level variables named as in :data:`CONSTANTS`.
    attrs : mapping, optional
        Attributes the model adds to :func:`provenance` (e.g. ``rng_scheme``).
    draws : ndarray, optional
        The draw indices (default ``0 .. n - 1``).
    """
    n = next(iter(arrays.values())).shape[0]
    draw = np.arange(n) if draws is None else np.asarray(draws)
    coords = {
        "draw": ("draw", draw.astype(np.int64), {"standard_name": "realization", "long_name": "Monte Carlo draw"}),
        "year": ("year", np.asarray(cfg.years, dtype=np.int64), {"long_name": "performance year"}),
        "population": ("population", np.array(POPULATIONS, dtype=object), {"long_name": "population type"}),
        "track": ("track", np.array(cfg.policy.tracks, dtype=object), {"long_name": "risk track"}),
    }
    data_vars: dict[str, Any] = {}
    for name, (dims, units, long_name) in SCHEMA.items():
        if name not in arrays:
            continue
        data_vars[name] = (dims, arrays[name], {"units": units, "long_name": long_name})
    for name, value in (constants or {}).items():
        dims, units, long_name = CONSTANTS[name]
        data_vars[name] = (dims, value, {"units": units, "long_name": long_name})
    ds = xr.Dataset(data_vars, coords=coords)
    ds.attrs.update(provenance(cfg))
    ds.attrs.update(attrs or {})
    return ds


def provenance(cfg: Config) -> dict[str, Any]:
    """Global attributes that make a result reproducible and self-describing."""
    return {
        "title": f"leadsim run: {cfg.aco.name} under {cfg.policy.name}",
        "leadsim_version": __version__,
        "numba_version": numba.__version__,
        "numpy_version": np.__version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "seed": int(cfg.simulation.seed),
        "policy_name": cfg.policy.name,
        "aco_name": cfg.aco.name,
        "config_toml": cfg.to_toml(),
        "assumptions": "\n".join(cfg.assumptions()),
        "sign_convention": "positive is money to the ACO, negative is owed to CMS",
        "Conventions": "CF-1.10",
    }


def encode(ds: xr.Dataset) -> xr.Dataset:
    """The dataset as written to disk: string coordinates as fixed ``str`` (netCDF and Zarr need it)."""
    out = ds.copy()
    for name in ("population", "track"):
        if name in out.coords:
            out = out.assign_coords({name: out[name].astype(str)})
    return out


def config_of(ds: xr.Dataset) -> Config:
    """The validated config a result was made with (its ``config_toml`` attribute).

    Raises
    ------
    ResultError
        The dataset has no ``config_toml`` attribute, or it is not a valid leadsim config.
    """
    text = ds.attrs.get("config_toml")
    if not isinstance(text, str) or not text:
        raise ResultError("the dataset has no config_toml attribute: it is not a leadsim result")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ResultError(f"the dataset's config_toml attribute is not valid TOML: {err}") from None
    except RecursionError:
        raise ResultError("the dataset's config_toml attribute nests too deeply to read") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load_config(data)
    except ConfigError as err:
        raise ResultError(f"the dataset's config_toml attribute is not a valid leadsim config: "
                          f"{err.problems[0] if err.problems else err}") from None
