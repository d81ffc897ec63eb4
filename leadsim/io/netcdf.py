"""netCDF-4 results (via h5netcdf): written atomically, read fully into memory."""

from __future__ import annotations

import os
from pathlib import Path

import xarray as xr

from leadsim.io.atomic import atomic_path, clean_stale_temporaries
from leadsim.io.schema import encode

__all__ = ["open_netcdf", "save_netcdf"]


def save_netcdf(ds: xr.Dataset, path: str | os.PathLike[str]) -> Path:
    """Write ``ds`` as netCDF-4 atomically (temporary file in the target folder, then a rename)."""
    path = Path(path)
    clean_stale_temporaries(path)  # a save killed earlier (SIGKILL) left its temporary file behind
    with atomic_path(path) as tmp:
        encode(ds).to_netcdf(tmp, engine="h5netcdf")
    return path


def open_netcdf(path: str | os.PathLike[str]) -> xr.Dataset:
    """Read a netCDF result fully into memory (the file is closed on return)."""
    ds = xr.open_dataset(path, engine="h5netcdf")
    with ds:
        return ds.load()
