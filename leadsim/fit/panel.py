"""Reading and validating a beneficiary-year panel, before any estimation.

Layout (``docs/fit.md``): one row per beneficiary and calendar year with the columns

========================  =====================================================================
``bene_id``               beneficiary identifier (any non-empty text or integer)
``year``                  calendar year (integer, 2000-2100)
``population``            ``aged_disabled``, ``esrd`` or ``high_needs``
``member_months``         aligned months in the year, 0-12
``spending``              paid Medicare FFS dollars in the year (>= 0)
``died``                  ``true`` if the beneficiary died that year (true/false, 1/0)
``risk_score``            optional, >= 0
========================  =====================================================================

Every problem found is a :class:`~leadsim.errors.PanelError` whose message is one line naming the column
and the first offending rows (row 1 = the first data row, i.e. line 2 of a CSV file).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from leadsim.config import POPULATIONS
from leadsim.errors import PanelError

__all__ = ["OPTIONAL", "REQUIRED", "Panel", "read_panel", "validate_frame"]

REQUIRED: tuple[str, ...] = ("bene_id", "year", "population", "member_months", "spending", "died")
"""Columns every panel must have."""
OPTIONAL: tuple[str, ...] = ("risk_score",)
"""Columns a panel may have."""
_TRUE = frozenset({"true", "1", "t", "yes", "y", "1.0"})
_FALSE = frozenset({"false", "0", "f", "no", "n", "0.0"})
_SHOW = 5


@dataclass(frozen=True)
class Panel:
    """A validated panel, sorted by beneficiary then year (arrays of one length ``n``).

    Attributes
    ----------
    bene : ndarray of int64
        Beneficiary code 0 .. n_bene - 1 (order of first appearance in the sorted ids).
    year, population : ndarray of int64 / int8
        Calendar year; population code (index into :data:`leadsim.config.POPULATIONS`).
    member_months, spending : ndarray of float64
    died : ndarray of bool
    risk_score : ndarray of float64 or None
    source : str
        File name the panel came from (for messages and the fitted config's comments).
    """

    bene: np.ndarray
    year: np.ndarray
    population: np.ndarray
    member_months: np.ndarray
    spending: np.ndarray
    died: np.ndarray
    risk_score: np.ndarray | None
    source: str = "panel"

    @property
    def n_rows(self) -> int:
        return int(self.bene.shape[0])

    @property
    def n_bene(self) -> int:
        return int(self.bene.max()) + 1 if self.n_rows else 0

    @property
    def years(self) -> tuple[int, int]:
        """First and last calendar year of the data."""
        return int(self.year.min()), int(self.year.max())


def _rows(mask: np.ndarray) -> str:
    """``rows 3, 8, 12 (5 rows)``: the first offending data rows, 1-based."""
    idx = np.flatnonzero(mask)
    shown = ", ".join(str(i + 1) for i in idx[:_SHOW])
    more = f" ({idx.size:,} rows)" if idx.size > _SHOW else ""
    return f"row{'s' if idx.size > 1 else ''} {shown}{more}"


def _fail(source: str, column: str, what: str, mask: np.ndarray | None = None) -> PanelError:
    where = f" at {_rows(mask)}" if mask is not None else ""
    return PanelError(f"{source}: column '{column}': {what}{where}")


def _as_text(col: pd.Series) -> np.ndarray:
    return col.astype("string").str.strip().fillna("").to_numpy(dtype=object)


def _numeric(df: pd.DataFrame, name: str, source: str, integer: bool = False) -> np.ndarray:
    col = df[name]
    missing = col.isna().to_numpy()
    if col.dtype == object or pd.api.types.is_string_dtype(col.dtype):
        text = col.astype("string").str.strip()
        missing = missing | (text == "").fillna(True).to_numpy(dtype=bool)
        vals = pd.to_numeric(text.where(text != ""), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    elif pd.api.types.is_bool_dtype(col.dtype):
        raise _fail(source, name, f"expected numbers, found booleans (dtype {col.dtype})")
    else:
        vals = col.to_numpy(dtype=float, na_value=np.nan)
    if missing.any():
        raise _fail(source, name, "missing value", missing)
    bad = ~np.isfinite(vals)
    if bad.any():
        raise _fail(source, name, "not a finite number", bad)
    if integer:
        frac = vals != np.round(vals)
        if frac.any():
            raise _fail(source, name, "not an integer", frac)
    return vals


def _boolean(df: pd.DataFrame, name: str, source: str) -> np.ndarray:
    col = df[name]
    if pd.api.types.is_bool_dtype(col.dtype) and not col.isna().any():
        return col.to_numpy(dtype=bool)
    text = col.astype("string").str.strip().str.lower().fillna("").to_numpy(dtype=object)
    is_true = np.isin(text, list(_TRUE))
    is_false = np.isin(text, list(_FALSE))
    bad = ~(is_true | is_false)
    if bad.any():
        raise _fail(source, name, "expected true/false (or 1/0)", bad)
    return is_true


def validate_frame(df: pd.DataFrame, source: str = "panel") -> Panel:
    """Check a panel table and return it as a :class:`Panel`; the first problem raises :class:`PanelError`.

    Checks, in order: required columns present (a near-miss name is suggested), at least one row, then per
    column: ``bene_id`` non-empty; ``year`` an integer in 2000-2100; ``population`` one of
    :data:`~leadsim.config.POPULATIONS`; ``member_months`` a number in [0, 12]; ``spending`` a finite
    number >= 0 and 0 when ``member_months`` is 0; ``died`` a boolean; ``risk_score`` (if present) a
    number >= 0; then across rows: no duplicate ``(bene_id, year)``, no row after a beneficiary's death,
    and at least two calendar years.
    """
    cols = [str(c) for c in df.columns]
    for name in REQUIRED:
        if name not in cols:
            near = difflib.get_close_matches(name, [c for c in cols if c not in REQUIRED], n=1, cutoff=0.6)
            near = near or [c for c in cols if c.strip().lower() == name and c != name]
            hint = f" (found '{near[0]}': rename it to '{name}')" if near else \
                f" (columns found: {', '.join(cols) or 'none'})"
            raise PanelError(f"{source}: column '{name}': missing{hint}")
    if len(df) == 0:
        raise PanelError(f"{source}: column 'bene_id': no data rows")
    ids = _as_text(df["bene_id"])
    empty = ids == ""
    if empty.any():
        raise _fail(source, "bene_id", "missing value", empty)
    year = _numeric(df, "year", source, integer=True)
    out = (year < 2000) | (year > 2100)
    if out.any():
        raise _fail(source, "year", "outside 2000-2100", out)
    pop_text = _as_text(df["population"])
    codes = np.full(pop_text.shape[0], -1, dtype=np.int8)
    for j, name in enumerate(POPULATIONS):
        codes[pop_text == name] = j
    unknown = codes < 0
    if unknown.any():
        first = pop_text[np.flatnonzero(unknown)[0]]
        raise _fail(source, "population", f"unknown population {first!r} (expected one of "
                    f"{', '.join(POPULATIONS)})", unknown)
    mm = _numeric(df, "member_months", source)
    out = (mm < 0) | (mm > 12)
    if out.any():
        raise _fail(source, "member_months", "outside 0-12", out)
    spend = _numeric(df, "spending", source)
    if (spend < 0).any():
        raise _fail(source, "spending", "negative", spend < 0)
    ghost = (mm == 0) & (spend > 0)
    if ghost.any():
        raise _fail(source, "spending", "positive with member_months = 0", ghost)
    died = _boolean(df, "died", source)
    risk = None
    if "risk_score" in cols:
        risk = _numeric(df, "risk_score", source)
        if (risk < 0).any():
            raise _fail(source, "risk_score", "negative", risk < 0)
    # cross-row checks on (bene_id, year)
    codes_b, _ = pd.factorize(pd.Series(ids), sort=True)
    bene = codes_b.astype(np.int64)
    yr = year.astype(np.int64)
    order = np.lexsort((yr, bene))
    b_s, y_s = bene[order], yr[order]
    same = b_s[1:] == b_s[:-1]
    dup = same & (y_s[1:] == y_s[:-1])
    if dup.any():
        mask = np.zeros(bene.size, dtype=bool)
        mask[order[1:][dup]] = True
        raise _fail(source, "bene_id", "duplicate (bene_id, year)", mask)
    after_death = same & died[order][:-1]
    if after_death.any():
        mask = np.zeros(bene.size, dtype=bool)
        mask[order[1:][after_death]] = True
        raise _fail(source, "died", "row after the beneficiary's death", mask)
    if np.unique(yr).size < 2:
        raise PanelError(f"{source}: column 'year': one calendar year only ({int(yr[0])}); "
                         "persistence, deaths and exits need at least two")
    return Panel(bene=b_s, year=y_s, population=codes[order], member_months=mm[order], spending=spend[order],
                 died=died[order], risk_score=None if risk is None else risk[order], source=source)


def read_panel(path: str | os.PathLike[str]) -> Panel:
    """Read a panel from CSV (``.csv``, ``.csv.gz``) or Parquet (``.parquet``, needs pyarrow) and validate it.

    Raises
    ------
    PanelError
        The file cannot be read, or any check of :func:`validate_frame` fails (one line).
    """
    p = Path(path)
    name = p.name
    if not p.is_file():
        raise PanelError(f"{p}: no such panel file")
    lower = name.lower()
    try:
        if lower.endswith(".parquet") or lower.endswith(".pq"):
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise PanelError(f"{name}: reading Parquet needs pyarrow (pip install pyarrow); "
                                 "or give the panel as CSV") from None
            df = pd.read_parquet(p)
        elif lower.endswith((".csv", ".csv.gz", ".txt")):
            df = pd.read_csv(p, dtype=str, keep_default_na=False, skipinitialspace=True)
        else:
            raise PanelError(f"{name}: unknown panel format (expected .csv, .csv.gz or .parquet)")
    except PanelError:
        raise
    except (ValueError, OSError, pd.errors.ParserError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PanelError(f"{name}: cannot read the panel: {first}") from None
    df.columns = [str(c).strip() if str(c).strip() in REQUIRED + OPTIONAL else str(c) for c in df.columns]
    return validate_frame(df, source=name)
