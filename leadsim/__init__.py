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
    d = leadsim.decide(cfg)                    # options on the same draws: ranking, break-even, switch, reserves
"""

from __future__ import annotations

from leadsim._version import __version__
from leadsim.analysis.risk import summarize
from leadsim.config import Config, load_config
from leadsim.decide import decide
from leadsim.errors import ConfigError, LeadsimWarning
from leadsim.io.schema import config_of
from leadsim.io.sink import open_result as open
from leadsim.io.sink import save
from leadsim.simulate import run, simulate, trajectories

__all__ = [
    "Config",
    "ConfigError",
    "LeadsimWarning",
    "__version__",
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
