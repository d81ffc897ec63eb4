"""Fitting the cost model to an ACO's own beneficiary-year claims panel (``leadsim fit``, ``docs/fit.md``).

- :mod:`leadsim.fit.panel`: reading and validating a panel (CSV or Parquet), before any work;
- :mod:`leadsim.fit.synth`: a panel in the same layout from the simulator's own trajectories;
- :mod:`leadsim.fit.estimate`: maximum-likelihood estimation per population, with standard errors;
- :mod:`leadsim.fit.write`: the fitted config as TOML, each fitted value tagged ``[FIT]``.

Import direction: this package reads :mod:`leadsim.config` and :mod:`leadsim.model` and the public
:func:`leadsim.simulate.trajectories`; nothing in ``model``, ``ledger`` or ``io`` imports it.
"""

from leadsim.fit.panel import Panel, read_panel, validate_frame

__all__ = ["Panel", "read_panel", "validate_frame"]
