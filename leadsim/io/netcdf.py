"""netCDF-4 results (via h5netcdf): written atomically, read fully into memory.

Reading checks the file first: only a regular file with the HDF5 signature is opened, and a file whose
datasets live elsewhere (HDF5 external storage, virtual datasets, external links) is refused, so a crafted
result cannot make :func:`leadsim.open` read an arbitrary local file into the dataset.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import xarray as xr

from leadsim.atomic import atomic_path
from leadsim.errors import ResultError
from leadsim.io.schema import encode

__all__ = ["check_netcdf", "open_netcdf", "save_netcdf"]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def save_netcdf(ds: xr.Dataset, path: str | os.PathLike[str]) -> Path:
    """Write ``ds`` as netCDF-4 atomically (temporary file in the target folder, then a rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        encode(ds).to_netcdf(tmp, engine="h5netcdf")
    return path


def require_regular_file(path: str | os.PathLike[str], what: str = "result") -> None:
    """Raise :class:`ResultError` unless ``path`` is a regular file (never open a device, FIFO or socket)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ResultError(f"{path}: no such {what}") from None
    except OSError as err:
        raise ResultError(f"{path}: cannot read the {what}: {err.strerror or err}") from None
    if not stat.S_ISREG(mode):
        raise ResultError(f"{path}: not a regular file (a device, FIFO or socket?); a {what} must be a .nc file "
                          "or a .zarr folder")


def check_netcdf(path: str | os.PathLike[str]) -> None:
    """Refuse anything but a regular HDF5 file whose data all live inside it.

    Raises
    ------
    ResultError
        Not a regular file, no HDF5 signature, or a dataset with external storage, a virtual dataset or an
        external link (these read other files).
    """
    import h5py

    require_regular_file(path)
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head != HDF5_SIGNATURE:
        raise ResultError(f"{path}: not a netCDF-4 result (HDF5 file signature not found)")
    problems: list[str] = []
    try:
        with h5py.File(path, "r") as f:

            def visit(name: str, link: object) -> None:
                if isinstance(link, h5py.ExternalLink):
                    problems.append(f"{name} is an external link to {link.filename}")
                elif isinstance(link, h5py.HardLink):
                    obj = f[name]
                    if isinstance(obj, h5py.Dataset):
                        if obj.external:
                            problems.append(f"{name} keeps its data in external files")
                        if obj.is_virtual:
                            problems.append(f"{name} is a virtual dataset (maps other files)")

            f.visititems_links(visit)
    except OSError as err:
        raise ResultError(f"{path}: not a readable netCDF-4 result ({err})") from None
    if problems:
        raise ResultError(f"{path}: refusing a netCDF file that reads other files: {problems[0]}"
                          + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))


def open_netcdf(path: str | os.PathLike[str]) -> xr.Dataset:
    """Read a netCDF result fully into memory (the file is closed on return); see :func:`check_netcdf`."""
    check_netcdf(path)
    try:
        ds = xr.open_dataset(path, engine="h5netcdf")
    except (OSError, ValueError) as err:
        raise ResultError(f"{path}: not a readable netCDF-4 result ({err})") from None
    with ds:
        return ds.load()
