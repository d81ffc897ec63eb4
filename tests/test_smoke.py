"""End-to-end smoke test: the default pipeline runs and fills the schema."""

from __future__ import annotations

import tomllib

import numpy as np

import leadsim
from leadsim.io.schema import OPTIONAL, SCHEMA
from tests.helpers import small_config


def test_simulate_fills_schema(tmp_path):
    cfg = small_config()
    ds = leadsim.simulate(cfg, progress=False)
    for name, (dims, units, _) in SCHEMA.items():
        if name in OPTIONAL or name == "replicate":  # QMC runs only (tests/test_sampling.py)
            assert name not in ds, name
            continue
        assert ds[name].dims == dims, name
        assert ds[name].attrs["units"] == units
        assert np.isfinite(ds[name].values).all(), name
    assert list(ds.track.values) == ["global", "professional"]
    assert ds.draw.attrs["standard_name"] == "realization"
    out = leadsim.save(ds, tmp_path / "r.nc")
    back = leadsim.open(out)
    np.testing.assert_array_equal(back.net_settlement.values, ds.net_settlement.values)
    assert leadsim.load_config(tomllib.loads(back.attrs["config_toml"])) == cfg
