"""The output digest of a fixed configuration: one SHA-256 over every variable's bytes (refactors keep it)."""

from __future__ import annotations

import hashlib

import numpy as np
import xarray as xr

import leadsim

DIGEST_OVERRIDES = {"simulation.draws": 64, "simulation.chunk_draws": 16, "aco.beneficiaries": 2000}
VOLATILE_ATTRS = ("created", "leadsim_version", "numba_version", "numpy_version")


def dataset_digest(ds: xr.Dataset) -> dict[str, str]:
    """Per-variable SHA-256 of the raw values (dtype, shape and bytes) and of the non-volatile attrs."""
    out = {}
    for name in sorted(ds.variables):
        v = ds[name].values
        if v.dtype == object:
            v = v.astype(str)
        h = hashlib.sha256(f"{v.dtype.str}{v.shape}{ds[name].dims}".encode())
        h.update(np.ascontiguousarray(v).tobytes())
        out[str(name)] = h.hexdigest()
    for k in sorted(ds.attrs):
        if k not in VOLATILE_ATTRS:
            out[f"attr:{k}"] = hashlib.sha256(str(ds.attrs[k]).encode()).hexdigest()
    return out


def default_digest(overrides: dict | None = None) -> dict[str, str]:
    cfg = leadsim.load_config("configs/default.toml", overrides={**DIGEST_OVERRIDES, **(overrides or {})})
    return dataset_digest(leadsim.simulate(cfg, progress=False))


def combined(d: dict[str, str]) -> str:
    return hashlib.sha256("".join(f"{k}={v}\n" for k, v in sorted(d.items())).encode()).hexdigest()


if __name__ == "__main__":  # regenerate the fixture: python tests/digest_tool.py > tests/data/output_digest.json
    import json
    import sys
    import warnings

    warnings.simplefilter("ignore", leadsim.LeadsimWarning)

    digests = {"default": default_digest(),
               "stop_loss": default_digest({"policy.stop_loss.enabled": True}),
               "mssp": default_digest({"policy.preset": "mssp_enhanced"})}
    json.dump({k: {"combined": combined(v), "variables": v} for k, v in digests.items()}, sys.stdout, indent=1)
