"""A beneficiary-year panel in the input layout of ``leadsim fit``, made by the simulator itself.

``leadsim synth-panel CONFIG -o panel.csv --years 3`` takes the beneficiary-level trajectories of one draw
(:func:`leadsim.simulate.trajectories`) and writes one row per beneficiary and year. A slot of the kernel
holds a sequence of beneficiaries; a new ``bene_id`` starts when a slot is filled after a vacancy or when
its occupant is an entrant. Under the kernel's rules (``leadsim/model/_kernel.py``) an entrant is exactly a
row with six member-months that is not a death (a continuing member has twelve months, or six when dying),
so the identities of the panel are those of the simulation.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from leadsim.atomic import atomic_path
from leadsim.config import Config, load_config

__all__ = ["panel_frame", "synth_panel", "write_panel"]


def panel_frame(cfg: Config, years: int | None = None, draw: int = 0) -> pd.DataFrame:
    """The panel of one draw as a table in the input layout (``docs/fit.md``).

    Parameters
    ----------
    cfg : Config
        The generating config; ``simulation.start_year`` is the first panel year.
    years : int, optional
        Panel years (default ``simulation.years``).
    draw : int
        Which draw's trajectories.

    Returns
    -------
    pandas.DataFrame
        Columns ``bene_id, year, population, member_months, spending, died``, sorted by beneficiary and year.
    """
    from leadsim.simulate import trajectories

    if years is not None and years != cfg.simulation.years:
        cfg = load_config(cfg, overrides={"simulation.years": int(years)})
    tr = trajectories(cfg, draw=draw)
    pop = tr["population"].values.astype(str)
    mm = tr["member_months"].values
    spend = tr["spending"].values
    died = tr["died"].values
    occupied = pop != ""
    entrant = occupied & (mm == 6.0) & ~died
    prev_occupied = np.zeros_like(occupied)
    prev_occupied[:, 1:] = occupied[:, :-1]
    prev_died = np.zeros_like(died)
    prev_died[:, 1:] = died[:, :-1]
    new = occupied & (entrant | ~prev_occupied | prev_died)
    # a new identity at every start; ids count up slot by slot (row-major order)
    ident = np.cumsum(new.ravel()).reshape(new.shape) - 1
    slot_idx, year_idx = np.nonzero(occupied)
    df = pd.DataFrame({
        "bene_id": ident[slot_idx, year_idx],
        "year": np.asarray(cfg.years)[year_idx],
        "population": pop[slot_idx, year_idx],
        "member_months": mm[slot_idx, year_idx],
        "spending": np.round(spend[slot_idx, year_idx], 2),
        "died": died[slot_idx, year_idx],
    })
    return df.sort_values(["bene_id", "year"], kind="stable").reset_index(drop=True)


def write_panel(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a panel atomically as CSV (``.csv``, ``.csv.gz``) or Parquet (``.parquet``, needs pyarrow)."""
    p = Path(path)
    lower = p.name.lower()
    with atomic_path(p) as tmp:
        if lower.endswith((".parquet", ".pq")):
            df.to_parquet(tmp, index=False)
        elif lower.endswith(".csv.gz"):
            df.to_csv(tmp, index=False, compression="gzip")
        else:
            df.to_csv(tmp, index=False)
    return p


def synth_panel(cfg: Config | str, path: str | os.PathLike[str], years: int = 3, draw: int = 0) -> pd.DataFrame:
    """Make and write the panel of ``cfg`` (see :func:`panel_frame`); returns the table written."""
    cfg = cfg if isinstance(cfg, Config) else load_config(cfg)
    df = panel_frame(cfg, years=years, draw=draw)
    write_panel(df, path)
    return df
