"""The xarray Dataset of a run: schema, units, provenance; atomic save and open (design.md)."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import tempfile
from pathlib import Path
from typing import Any

import numba
import numpy as np
import xarray as xr

from leadsim import __version__
from leadsim.config import POPULATIONS, Config
from leadsim.model.rng import RNG_SCHEME

__all__ = ["SCHEMA", "build_dataset", "open_result", "save"]

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
    "stop_loss_charge": (D_YT, "USD", "stop-loss charge (priced before the year)"),
    "gross_savings": (D_YT, "USD", "benchmark - (expenditure - stop-loss payout + charge)"),
    "savings_rate": (D_YT, "1", "gross savings / benchmark"),
    "shared_savings": (D_YT, "USD", "corridor share of gross savings after sequestration (<0: loss owed)"),
    "sequestration": (D_YT, "USD", "sequestration taken from shared savings (or losses)"),
    "add_on_payments": (D_YT, "USD", "administrative, rural and bonus add-on payments"),
    "operating_cost": (D_YT, "USD", "the ACO's own operating cost"),
    "net_settlement": (D_YT, "USD", "shared savings + add-ons - operating cost (positive to the ACO)"),
    "cumulative_settlement": (("draw", "track"), "USD", "sum of annual net settlements (discounted)"),
}


def build_dataset(cfg: Config, arrays: dict[str, np.ndarray], draws: np.ndarray | None = None) -> xr.Dataset:
    """Wrap the gathered arrays in an xarray Dataset with coordinates, units and provenance attrs."""
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
    from leadsim.ledger.settlement import financial_guarantee

    data_vars["financial_guarantee"] = ((), financial_guarantee(cfg),
                                        {"units": "USD", "long_name": "financial guarantee amount"})
    ds = xr.Dataset(data_vars, coords=coords)
    ds.attrs.update(provenance(cfg))
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
        "rng_scheme": RNG_SCHEME,
        "policy_name": cfg.policy.name,
        "aco_name": cfg.aco.name,
        "config_toml": cfg.to_toml(),
        "assumptions": "\n".join(cfg.assumptions()),
        "sign_convention": "positive is money to the ACO, negative is owed to CMS",
        "Conventions": "CF-1.10",
    }


def _encode(ds: xr.Dataset) -> xr.Dataset:
    out = ds.copy()
    for name in ("population", "track"):
        if name in out.coords:
            out = out.assign_coords({name: out[name].astype(str)})
    return out


def save(ds: xr.Dataset, path: str | os.PathLike[str]) -> Path:
    """Write a result atomically: a temporary file in the target folder, then a rename.

    ``.nc`` (or any other suffix) writes netCDF-4 via h5netcdf; ``.zarr`` writes a Zarr store (needs the
    ``dask`` extra). On any error the temporary file is removed and no partial file is left.
    """
    path = Path(path)
    if path.suffix == ".zarr":
        from leadsim.io.zarrstore import save_zarr

        return save_zarr(ds, path)
    parent = path.resolve().parent
    if not parent.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {parent}")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    os.close(fd)
    try:
        _encode(ds).to_netcdf(tmp, engine="h5netcdf")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def open_result(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a saved result (netCDF file or Zarr store) fully loaded into memory."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such result: {path}")
    if path.is_dir() or path.suffix == ".zarr":
        from leadsim.io.zarrstore import open_store

        return open_store(path)  # refuses an interrupted run (see leadsim.io.zarrstore)
    ds = xr.open_dataset(path, engine="h5netcdf")
    with ds:
        return ds.load()
