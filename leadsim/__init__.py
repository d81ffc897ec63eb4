"""leadsim: Monte Carlo simulator of an ACO's ten-year financial risk under CMS's LEAD model.

Public API::

    import leadsim
    cfg = leadsim.load_config("configs/default.toml", overrides={"simulation.draws": 5000})
    ds = leadsim.simulate(cfg)                 # xarray.Dataset
    leadsim.save(ds, "out.nc"); ds = leadsim.open("out.nc")
    panel = leadsim.trajectories(cfg, draw=0)  # one draw's beneficiary-level panel
    leadsim.run(cfg, "run.zarr", resume=True)  # to a file or store, chunk by chunk (resumable Zarr)
    summary = leadsim.summarize(ds)            # risk metrics with Monte Carlo standard errors; ds.leadsim.*
    cfg = leadsim.config_of(ds)                # the config a result was made with
    attr = leadsim.attribute(cfg, draws=1000)  # Shapley shares of Var and TVaR 99% by risk source
    cfg = leadsim.load_config(path, scenario="pandemic")   # a stress scenario of configs/scenarios/
    d = leadsim.decide(cfg)                    # options on the same draws: ranking, break-even, switch, reserves
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from leadsim._version import __version__
from leadsim.analysis.risk import summarize
from leadsim.config import Config, load_config
from leadsim.decide import decide
from leadsim.errors import ConfigError, LeadsimWarning
from leadsim.io.schema import config_of
from leadsim.io.sink import open_result as open
from leadsim.io.sink import save
from leadsim.simulate import run, simulate, trajectories

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = [
    "Config",
    "ConfigError",
    "LeadsimWarning",
    "__version__",
    "attribute",
    "config_of",
    "decide",
    "load_config",
    "open",
    "run",
    "save",
    "simulate",
    "summarize",
    "trajectories",
]


def attribute(cfg: Config | str | None = None, draws: int | None = None, *, p: float = 0.99, n_boot: int = 200,
              seed: int = 0) -> xr.Dataset:
    """Variance attribution: the Shapley share of each risk source in the variance and TVaR_p of the ten-year result.

    Parameters
    ----------
    cfg : Config, path or None
        A config without stop-loss or truncation (see :func:`leadsim.attribution.source_runs`).
    draws : int, optional
        Draws (default ``simulation.draws``); the run is two kernel passes and ``2^7`` ledger passes.
    p : float
        TVaR level.
    n_boot : int
        Bootstrap resamples for the standard errors.
    seed : int
        Seed of the bootstrap (the simulation's is ``simulation.seed``).

    Returns
    -------
    xarray.Dataset
        See :func:`leadsim.analysis.attribution.attribute_runs`; the method is in ``docs/model.md``.
    """
    from leadsim.analysis.attribution import attribute_runs
    from leadsim.attribution import source_runs

    cfg = cfg if isinstance(cfg, Config) else load_config(cfg)
    return attribute_runs(source_runs(cfg, draws), p=p, n_boot=n_boot, seed=seed)
