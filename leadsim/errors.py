"""Every exception and warning leadsim raises, in one place.

All errors a user can cause derive from :class:`LeadsimError`; the CLI turns each into a one-line message and
exit code 2. :class:`ConfigError` and :class:`StoreError` are also :class:`ValueError` (bad input), so code
written against the standard exceptions keeps working.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DaskUnavailableError",
    "LeadsimError",
    "LeadsimWarning",
    "OutputError",
    "PanelError",
    "ResultError",
    "ResumeMismatchError",
    "StoreError",
    "StoreLockedError",
]


class LeadsimError(Exception):
    """Base class of the errors leadsim raises for bad input or unusable files."""


class ConfigError(LeadsimError, ValueError):
    """An invalid configuration. ``str(err)`` has one line per problem, each naming the dotted key."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class StoreError(LeadsimError, ValueError):
    """A Zarr store that cannot be used as asked (exists without --resume, incomplete, not a leadsim run)."""


class OutputError(LeadsimError, ValueError):
    """An output path leadsim refuses to write: one of the run's inputs, a device or FIFO, an existing result
    without ``--overwrite``, or an empty path."""


class StoreLockedError(StoreError):
    """A Zarr run store is being written by another live process (its lock file names the pid)."""


class ResumeMismatchError(ConfigError):
    """``--resume`` with a config that differs from the store's; one line per changed key."""


class ResultError(LeadsimError, ValueError):
    """A dataset that is not a readable leadsim result (no config, wrong schema, foreign file)."""


class PanelError(LeadsimError, ValueError):
    """A beneficiary-year panel that cannot be fitted: one line naming the column and the first offending rows."""


class DaskUnavailableError(LeadsimError, ImportError):
    """dask.distributed is needed (``--workers``/``--scheduler``) but is not installed."""


class LeadsimWarning(UserWarning):
    """A valid but questionable setting (below LEAD's minimum size, an infinite-variance tail, ...)."""
