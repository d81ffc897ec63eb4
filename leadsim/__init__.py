"""leadsim: Monte Carlo simulator of an ACO's ten-year financial risk under CMS's LEAD model.

Public API::

    import leadsim
    cfg = leadsim.load_config("configs/default.toml", overrides={"simulation.draws": 5000})
    ds = leadsim.simulate(cfg)                 # xarray.Dataset
    leadsim.save(ds, "out.nc"); ds = leadsim.open("out.nc")
    panel = leadsim.trajectories(cfg, draw=0)  # one draw's beneficiary-level panel
    summary = leadsim.summarize(ds)            # risk metrics with Monte Carlo standard errors; ds.leadsim.*
"""

from __future__ import annotations

__version__ = "0.1.0"

from leadsim.analysis.risk import summarize
from leadsim.config import Config, load_config
from leadsim.errors import ConfigError, LeadsimWarning
from leadsim.io.schema import open_result as open
from leadsim.io.schema import save
from leadsim.simulate import simulate, trajectories

__all__ = [
    "Config",
    "ConfigError",
    "LeadsimWarning",
    "__version__",
    "load_config",
    "open",
    "save",
    "simulate",
    "summarize",
    "trajectories",
]
