"""The entry points that run the model: :func:`simulate` (a Dataset in memory), :func:`run` (to a file or any
sink, resumable, serial or on dask) and :func:`trajectories` (one draw's beneficiary-level panel)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from leadsim.config import POPULATIONS, Config, load_config
from leadsim.engine import run_draws
from leadsim.io.sink import MemorySink, Sink, sink_for
from leadsim.model import _kernel
from leadsim.model.cohort import cohort_model, realised_means
from leadsim.model.drivers import macro_paths
from leadsim.model.parameter_sets import parameter_set_configs, parameter_set_index

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client

__all__ = ["run", "simulate", "trajectories"]


def _as_config(cfg: Config | str | None) -> Config:
    return cfg if isinstance(cfg, Config) else load_config(cfg)


def simulate(cfg: Config | str | None = None, *, progress: bool | None = None) -> xr.Dataset:
    """Simulate every draw of a configuration and settle each track on the same spending.

    Parameters
    ----------
    cfg : Config, path or None
        A validated config, a TOML path, or None for the defaults.
    progress : bool, optional
        Show a progress bar (default: on a terminal, off under ``CI``).

    Returns
    -------
    xarray.Dataset
        Dims ``draw, year, population, track``; variables and attrs as in ``docs/design.md``.

    Examples
    --------
    >>> import leadsim
    >>> cfg = leadsim.load_config(overrides={"simulation.draws": 20, "aco.beneficiaries": 500})
    >>> ds = leadsim.simulate(cfg, progress=False)
    >>> ds.sizes["draw"], ds.sizes["year"]
    (20, 10)
    """
    cfg = _as_config(cfg)
    sink = MemorySink()
    run_draws(cfg, sink, progress=progress)
    if sink.dataset is None:
        raise RuntimeError("the run finished without a dataset")
    return sink.dataset


def run(cfg: Config | str | None, output: str | os.PathLike[str] | Sink, *, resume: bool = False,
        overwrite: bool = False, client: Client | None = None, threads: int | None = None,
        progress: bool | None = None) -> Sink:
    """Run a config into an output: a netCDF file, a resumable Zarr store (``*.zarr``) or any sink.

    Parameters
    ----------
    cfg : Config, path or None
        A validated config, a TOML path, or None for the defaults.
    output : path or Sink
        ``*.zarr`` writes each chunk as it completes (resumable); another path writes netCDF atomically at the
        end; a :class:`~leadsim.io.sink.Sink` receives the chunks itself.
    resume : bool
        Finish an interrupted Zarr run (same config required); only the missing chunks are computed.
    overwrite : bool
        Replace an existing Zarr run store.
    client : distributed.Client, optional
        Run the chunks on a dask cluster (:mod:`leadsim.distributed`); results are identical bit for bit.
    threads : int, optional
        numba threads per dask task (default ``simulation.threads`` or 1); ignored without ``client``.
    progress : bool, optional
        Show a progress bar (default: on a terminal, off under ``CI``).

    Returns
    -------
    Sink
        The closed sink (``.dataset`` of a netCDF or memory sink; ``.manifest`` of a Zarr sink).
    """
    cfg = _as_config(cfg)
    sink = output if isinstance(output, Sink) else sink_for(output, resume=resume, overwrite=overwrite)
    if client is None:
        return run_draws(cfg, sink, progress=progress)
    from leadsim.distributed import run_draws_distributed

    return run_draws_distributed(cfg, client, sink, threads=threads, progress=progress)


def trajectories(cfg: Config | str | None = None, draw: int = 0) -> xr.Dataset:
    """One draw's beneficiary-level panel, from the same keyed streams as :func:`simulate`.

    Returns
    -------
    xarray.Dataset
        Dims ``slot, year``: ``population`` (name, '' when the slot is vacant), ``member_months``,
        ``spending`` (USD) and ``died`` (bool). Summing a population's panel reproduces the
        ``member_months`` and ``expenditure`` of that draw in :func:`simulate`.
    """
    cfg = _as_config(cfg)
    draws = np.array([draw], dtype=np.int64)
    if cfg.simulation.parameter_draws:  # the draw's own parameter set, as in simulate
        cfg = parameter_set_configs(cfg)[int(parameter_set_index(cfg, draws)[0])]
    model = cohort_model(cfg)
    mean, scale = realised_means(model, macro_paths(cfg, draws))
    n_years = cfg.simulation.years
    n_slots = model.n_slots
    out = np.zeros((n_years, 3, len(_kernel.OUT_FIELDS)))
    rec_pop = np.full((n_slots, n_years), -1, dtype=np.int8)
    rec_mm = np.zeros((n_slots, n_years))
    rec_spend = np.zeros((n_slots, n_years))
    rec_died = np.zeros((n_slots, n_years), dtype=np.bool_)
    _kernel.simulate_draw(model.kernel, np.int64(draw), mean[0], scale[0], out, True, rec_pop, rec_mm, rec_spend,
                          rec_died)
    names = np.array([*POPULATIONS, ""], dtype=object)
    return xr.Dataset(
        {
            "population": (("slot", "year"), names[rec_pop.astype(np.int64)], {"long_name": "population type"}),
            "member_months": (("slot", "year"), rec_mm, {"units": "months", "long_name": "member-months"}),
            "spending": (("slot", "year"), rec_spend, {"units": "USD", "long_name": "annual spending"}),
            "died": (("slot", "year"), rec_died, {"long_name": "died in the year"}),
        },
        coords={"slot": np.arange(n_slots), "year": np.asarray(cfg.years)},
        attrs={"draw": int(draw), "seed": int(cfg.simulation.seed)},
    )
