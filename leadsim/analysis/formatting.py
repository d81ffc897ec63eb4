"""Money and probability as text: one formatter for the CLI summary, the HTML reports and the figures' axes.

Money is in USD, positive to the ACO. A scale (1, 1e3, 1e6, 1e9) and its unit ("", "k", "M", "B") are chosen
from the largest magnitude shown, so that a column or an axis reads in one unit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.ticker import FuncFormatter

__all__ = ["money", "money_formatter", "percent", "scale_for"]

_SCALES = ((1e9, "B"), (1e6, "M"), (1e3, "k"))


def scale_for(values: Iterable[float] | np.ndarray | float, smallest: float = 1.0) -> tuple[float, str]:
    """The scale and unit for the largest finite magnitude in ``values``.

    Parameters
    ----------
    values
        Amounts in USD (NaN ignored; empty means 0).
    smallest
        The smallest scale to return: ``1e3`` never goes below thousands.

    Returns
    -------
    tuple of float and str
        ``(1e9, "B")``, ``(1e6, "M")``, ``(1e3, "k")`` or ``(1.0, "")``.
    """
    arr = np.abs(np.asarray(values, dtype=float)).ravel()
    arr = arr[np.isfinite(arr)]
    big = float(arr.max()) if arr.size else 0.0
    for scale, unit in _SCALES:
        if big >= scale or scale <= smallest:
            return scale, unit
    return 1.0, ""


def money(x: float, scale: float | None = 1e6, unit: str = "M", digits: int = 2, minus: str = "−",
          plus: str = "") -> str:
    """``x`` USD as text, e.g. ``−$12.35M``; ``n/a`` when ``x`` is not finite.

    Parameters
    ----------
    x
        The amount in USD.
    scale, unit
        The divisor and its suffix; ``scale=None`` picks them from ``|x|`` with :func:`scale_for` (never below
        thousands), and then ``digits`` applies to millions and billions, 0 digits to thousands.
    digits
        Decimal places.
    minus, plus
        The sign written before negative and non-negative amounts (the CLI aligns columns with ``"-"``/``" "``;
        the reports use the typographic minus ``"−"``).
    """
    if not np.isfinite(x):
        return "n/a"
    if scale is None:
        scale, unit = scale_for(x, smallest=1e3)
        digits = 0 if scale == 1e3 else digits
    return f"{minus if x < 0 else plus}${abs(x) / scale:,.{digits}f}{unit}"


def money_formatter(scale: float, unit: str) -> FuncFormatter:
    """A matplotlib tick formatter for money at a fixed scale (0 digits in dollars, 1 otherwise)."""
    from matplotlib.ticker import FuncFormatter

    digits = 0 if scale == 1 else 1
    return FuncFormatter(lambda v, _pos: money(v, scale, unit, digits, minus="-"))


def percent(p: float, se: float | None = None, digits: int = 1) -> str:
    """A probability as a percentage, optionally with its standard error (``12.3% ± 0.4%``); ``n/a`` when ``p``
    is not finite, and no ``±`` part when ``se`` is not."""
    if not np.isfinite(p):
        return "n/a"
    out = f"{p:.{digits}%}"
    return out if se is None or not np.isfinite(se) else f"{out} ± {se:.{digits}%}"
