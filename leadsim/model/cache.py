"""A small on-disk cache for the draw-independent tables (lookup tables, stationary cohort).

Building the tables of a config (quantile, prospective and concurrent score tables, and the stationary
cohort) takes seconds of numpy work, more than a 100-draw run of the kernel. They depend on a handful of
population parameters only, so :func:`memoize` keeps them in memory and in ``.npz`` files:

- the key is a SHA-256 of the function's name, its arguments (exact bytes of every float and array), the
  source of the modules that compute the tables, and the numpy and scipy versions; a code change or an
  upgrade therefore never reuses stale tables;
- the cached arrays are the exact float64 bytes that were computed, so results are bit-identical with or
  without the cache;
- files are written atomically (temp file, then rename) and read with ``allow_pickle=False``; an unreadable
  file is recomputed and rewritten.

The directory is ``$LEADSIM_CACHE_DIR`` if set (an empty value turns the disk cache off), else
``$XDG_CACHE_HOME/leadsim`` or ``~/.cache/leadsim``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy

from leadsim.atomic import atomic_path

__all__ = ["cache_dir", "memoize"]

_MEMORY: dict[str, Any] = {}


def cache_dir() -> Path | None:
    """The disk-cache directory, or None when ``LEADSIM_CACHE_DIR`` is set to an empty value."""
    env = os.environ.get("LEADSIM_CACHE_DIR")
    if env is not None:
        return Path(env) if env else None
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "leadsim"


def _feed(h: Any, x: Any) -> None:
    """Hash ``x`` exactly (type, shape and bytes of arrays; ``repr`` of exact scalars)."""
    if isinstance(x, np.ndarray):
        h.update(f"nd{x.dtype.str}{x.shape}".encode())
        h.update(np.ascontiguousarray(x).tobytes())
    elif isinstance(x, tuple | list):
        h.update(f"seq{len(x)}".encode())
        for v in x:
            _feed(h, v)
    elif isinstance(x, bool | int | float | str | np.floating | np.integer | type(None)):
        h.update(f"{type(x).__name__}:{x!r};".encode())
    else:
        raise TypeError(f"cannot key a table cache on {type(x).__name__}")


@functools.cache
def _sources(modules: tuple[str, ...]) -> bytes:
    h = hashlib.sha256()
    for name in modules:
        h.update(Path(sys.modules[name].__file__).read_bytes())
    h.update(f"numpy {np.__version__} scipy {scipy.__version__}".encode())
    return h.digest()


def _flatten(result: tuple) -> dict[str, np.ndarray]:
    flat = {}
    for i, item in enumerate(result):
        if dataclasses.is_dataclass(item):
            for f in dataclasses.fields(item):
                flat[f"{i}.{f.name}"] = np.asarray(getattr(item, f.name))
        else:
            flat[f"{i}"] = np.asarray(item)
    return flat


def _unflatten(flat: dict[str, np.ndarray], like: tuple) -> tuple:
    out = []
    for i, item in enumerate(like):
        if isinstance(item, type) and dataclasses.is_dataclass(item):
            out.append(item(**{f.name: flat[f"{i}.{f.name}"] for f in dataclasses.fields(item)}))
        else:
            out.append(flat[f"{i}"])
    return tuple(out)


def memoize(modules: tuple[str, ...], kinds: tuple) -> Callable[[Callable[..., tuple]], Callable[..., tuple]]:
    """Decorate a pure table builder whose result is a tuple of arrays and dataclasses of arrays.

    Parameters
    ----------
    modules : tuple of str
        Modules whose source the result depends on (part of the key).
    kinds : tuple
        For each element of the result, ``np.ndarray`` or the dataclass type (to rebuild it from disk).
    """

    def deco(fn: Callable[..., tuple]) -> Callable[..., tuple]:
        @functools.wraps(fn)
        def wrapper(*args: Any) -> tuple:
            h = hashlib.sha256()
            h.update(f"{fn.__module__}.{fn.__qualname__}".encode())
            h.update(_sources((*modules, fn.__module__)))
            _feed(h, args)
            key = h.hexdigest()
            if key in _MEMORY:
                return _MEMORY[key]
            d = cache_dir()
            path = d / f"tables-{key[:32]}.npz" if d is not None else None
            result = None
            if path is not None and path.exists():
                try:
                    with np.load(path, allow_pickle=False) as z:
                        result = _unflatten({k: z[k] for k in z.files}, kinds)
                except Exception:  # a torn or foreign file: recompute and rewrite
                    result = None
            if result is None:
                result = fn(*args)
                if path is not None:
                    try:
                        path.parent.mkdir(parents=True, exist_ok=True)
                        with atomic_path(path) as tmp, open(tmp, "wb") as f:
                            np.savez(f, **_flatten(result))
                    except OSError:
                        pass  # read-only or full disk: the cache is an optimisation only (no temporary is left)
            _MEMORY[key] = result
            return result

        return wrapper

    return deco
