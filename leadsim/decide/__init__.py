"""Decisions under LEAD: options evaluated on common random numbers, break-even effects, the track switch, reserves.

``leadsim.decide(cfg)`` (:func:`leadsim.decide.api.decide`) returns one xarray Dataset; ``leadsim decide CONFIG``
prints its one-screen table (:func:`leadsim.decide.report.decide_text`) and writes it and an HTML report. Methods
and choices: ``docs/design.md`` ("Decisions").
"""

from leadsim.decide.api import DEFAULT_ALPHA, DEFAULT_LAMBDA, LEVELS, decide, run_break_even
from leadsim.decide.breakeven import BREAK_EVEN
from leadsim.decide.metrics import CRITERIA
from leadsim.decide.options import COMPARATORS, SWITCH_AFTER, Option, build_options

__all__ = ["BREAK_EVEN", "COMPARATORS", "CRITERIA", "DEFAULT_ALPHA", "DEFAULT_LAMBDA", "LEVELS", "SWITCH_AFTER",
           "Option", "build_options", "decide", "run_break_even"]
