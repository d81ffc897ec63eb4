"""The two entry points that run the model: :func:`simulate` (a Dataset) and :func:`trajectories` (a panel)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from leadsim.config import POPULATIONS, Config, load_config
from leadsim.engine import cohort_model, kernel_args, realised_means, run_draws
from leadsim.io.schema import build_dataset
from leadsim.model import _kernel
from leadsim.model.drivers import macro_paths

__all__ = ["simulate", "trajectories"]


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
        Dims ``draw, year, population, track``; variables and attrs per design.md.

    Examples
    --------
    >>> import leadsim
    >>> cfg = leadsim.load_config(overrides={"simulation.draws": 20, "aco.beneficiaries": 500})
    >>> ds = leadsim.simulate(cfg, progress=False)
    >>> ds.sizes["draw"], ds.sizes["year"]
    (20, 10)
    """
    cfg = _as_config(cfg)
    arrays = run_draws(cfg, progress=progress)
    return build_dataset(cfg, arrays)


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
    model = cohort_model(cfg)
    draws = np.array([draw], dtype=np.int64)
    mean, scale = realised_means(model, macro_paths(cfg, draws))
    n_years = cfg.simulation.years
    n_slots = model.n_slots
    out = np.zeros((n_years, 3, len(_kernel.OUT_FIELDS)))
    rec_pop = np.full((n_slots, n_years), -1, dtype=np.int8)
    rec_mm = np.zeros((n_slots, n_years))
    rec_spend = np.zeros((n_slots, n_years))
    rec_died = np.zeros((n_slots, n_years), dtype=np.bool_)
    _kernel.simulate_draw(model.seed, np.int64(draw), *kernel_args(model), mean[0], scale[0], model.attach,
                         model.sl_share, model.sl_mode, model.trunc_cap, model.outlier_thr, out, True,
                         rec_pop, rec_mm, rec_spend, rec_died)
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
