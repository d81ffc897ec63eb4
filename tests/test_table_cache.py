"""The draw-independent table cache: exact round trip, torn files recomputed, no temporary left on error."""

from __future__ import annotations

import numpy as np
import pytest

from leadsim.model import cache


def _builder(calls: list):
    @cache.memoize(("leadsim.model.cache",), (np.ndarray, np.ndarray))
    def tables(x: float, n: int) -> tuple:
        calls.append((x, n))
        rng = np.random.default_rng(n)
        return rng.standard_normal(n) * x, np.arange(n, dtype=np.int64)

    return tables


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LEADSIM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cache, "_MEMORY", {})
    return tmp_path


def test_disk_round_trip_is_bit_identical(cache_dir, monkeypatch):
    calls: list = []
    first = _builder(calls)(0.1, 7)
    assert len(calls) == 1 and len(list(cache_dir.glob("tables-*.npz"))) == 1
    monkeypatch.setattr(cache, "_MEMORY", {})  # a new process: only the disk copy is left
    again = _builder(calls)(0.1, 7)
    assert len(calls) == 1  # read from disk, not rebuilt
    for a, b in zip(first, again, strict=True):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    _builder(calls)(0.1 + 1e-18, 7)  # rounds to the same float: the same key
    _builder(calls)(np.nextafter(0.1, 1), 7)  # one ulp away: a new key
    assert len(calls) == 2


def test_torn_file_is_recomputed(cache_dir, monkeypatch):
    calls: list = []
    _builder(calls)(0.2, 5)
    (path,) = cache_dir.glob("tables-*.npz")
    path.write_bytes(path.read_bytes()[:40])
    monkeypatch.setattr(cache, "_MEMORY", {})
    out = _builder(calls)(0.2, 5)
    assert len(calls) == 2 and out[1].tolist() == [0, 1, 2, 3, 4]
    with np.load(path) as z:  # rewritten whole
        assert len(z.files) == 2


def test_failed_write_leaves_no_temporary(cache_dir, monkeypatch):
    def full_disk(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache.np, "savez", full_disk)
    out = _builder([])(0.3, 4)  # the result is still returned: the disk cache is an optimisation
    assert out[1].tolist() == [0, 1, 2, 3]
    assert sorted(p.name for p in cache_dir.iterdir()) == []
