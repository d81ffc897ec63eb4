"""Resumable Zarr runs: each chunk of draws written as it completes, with a manifest of the chunks done.

Layout of a run store ``run.zarr`` (Zarr v3, a folder)::

    run.zarr/zarr.json, <variable>/...   the leadsim Dataset, chunked along ``draw`` by simulation.chunk_draws
    run.zarr/leadsim_run.json            the run manifest (see :class:`Manifest`)

Life of a run (:func:`run_zarr`):

1. When the first chunk completes, the store is created in a hidden temporary folder next to the target: the
   dataset's metadata, coordinates and attrs from a lazy template (``to_zarr(compute=False)``) and a manifest
   with no chunk done. The folder is then renamed into place, so a store is never half-initialised.
2. Each chunk ``[start, stop)`` is written into its own region (``to_zarr(region={"draw": slice(start,
   stop)})``); chunk boundaries are Zarr chunk boundaries, so no two writes touch the same Zarr chunk.
3. Only after a chunk's data is written is it added to the manifest, which is replaced atomically (temporary
   file, fsync, rename). A crash at any point therefore leaves a manifest that lists only fully written
   chunks; a chunk being written when the process died is simply computed and written again on resume.
4. ``resume=True`` reopens the store, refuses if the config changed (naming each changed key), and computes
   only the chunks not in the manifest. The finished store equals an uninterrupted run, because every draw's
   numbers are keyed by its index.

:func:`open_store` refuses an incomplete store unless asked; :func:`leadsim.open` reads Zarr and netCDF
alike, and ``leadsim.save(leadsim.open("run.zarr"), "run.nc")`` (or ``leadsim export run.zarr run.nc``)
exports a finished run to netCDF. The Zarr backend needs the ``dask`` extra (``pip install 'leadsim[dask]'``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
import tomllib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xarray as xr

from leadsim import __version__
from leadsim.config import Config, ConfigError, load_config
from leadsim.engine import ChunkResult, chunk_bounds
from leadsim.io.schema import SCHEMA, _encode, build_dataset

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client

__all__ = [
    "MANIFEST_NAME",
    "Manifest",
    "ResumeMismatchError",
    "StoreError",
    "config_hash",
    "open_store",
    "read_manifest",
    "run_zarr",
    "save_zarr",
]

MANIFEST_NAME = "leadsim_run.json"
MANIFEST_FORMAT = "leadsim-zarr-run/1"
# keys that change speed, never results: a resume may change them freely
RESULT_NEUTRAL_KEYS = ("simulation.threads",)


class StoreError(ValueError):
    """A Zarr store that cannot be used as asked (exists without --resume, incomplete, not a leadsim run)."""


class ResumeMismatchError(ConfigError):
    """``--resume`` with a config that differs from the store's; one line per changed key."""


# --------------------------------------------------------------------------------------------------------
# Config identity
# --------------------------------------------------------------------------------------------------------
def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def config_identity(cfg: Config) -> dict[str, Any]:
    """The resolved config as flat dotted keys, without the keys that never change results (threads)."""
    flat = _flatten(cfg.to_dict())
    return {k: v for k, v in sorted(flat.items()) if k not in RESULT_NEUTRAL_KEYS}


def config_hash(cfg: Config) -> str:
    """SHA-256 of :func:`config_identity` (canonical JSON); ``chunk_draws`` is included (it shapes the store)."""
    blob = json.dumps(config_identity(cfg), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def _short(v: Any) -> str:
    s = json.dumps(v) if not isinstance(v, str) else repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for every dotted key that differs (added or removed keys included)."""
    missing = object()
    lines = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, missing), new.get(k, missing)
        if a != b:
            sa = "(unset)" if a is missing else _short(a)
            sb = "(unset)" if b is missing else _short(b)
            lines.append(f"{k}: {sa} in the store, {sb} now")
    return lines


# --------------------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------------------
@dataclass
class Manifest:
    """The run manifest kept in ``<store>/leadsim_run.json``.

    ``chunks_done`` holds half-open intervals ``[first, end)`` of chunk indices (chunk ``i`` covers draws
    ``[i * chunk_draws, min((i + 1) * chunk_draws, draws))``), merged, so the file stays small however many
    chunks a run has.
    """

    config_hash: str
    seed: int
    draws: int
    chunk_draws: int
    n_chunks: int
    chunks_done: list[list[int]] = field(default_factory=list)
    complete: bool = False
    format: str = MANIFEST_FORMAT
    leadsim_version: str = __version__
    created: str = ""
    updated: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_config(cls, cfg: Config) -> Manifest:
        sim = cfg.simulation
        now = _now()
        return cls(config_hash=config_hash(cfg), seed=int(sim.seed), draws=int(sim.draws),
                   chunk_draws=int(sim.chunk_draws), n_chunks=len(chunk_bounds(sim.draws, sim.chunk_draws)),
                   config=config_identity(cfg), created=now, updated=now)

    @property
    def n_done(self) -> int:
        return sum(b - a for a, b in self.chunks_done)

    def done_set(self) -> set[int]:
        return {i for a, b in self.chunks_done for i in range(a, b)}

    def missing_bounds(self) -> list[tuple[int, int]]:
        """``[start, stop)`` draw bounds of the chunks not yet written, in draw order."""
        done = self.done_set()
        bounds = chunk_bounds(self.draws, self.chunk_draws)
        return [b for i, b in enumerate(bounds) if i not in done]

    def mark_done(self, index: int) -> None:
        done = self.done_set() | {index}
        runs: list[list[int]] = []
        for i in sorted(done):
            if runs and runs[-1][1] == i:
                runs[-1][1] = i + 1
            else:
                runs.append([i, i + 1])
        self.chunks_done = runs
        self.complete = self.n_done == self.n_chunks
        self.updated = _now()


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def write_manifest(store: Path, manifest: Manifest) -> None:
    """Replace the manifest atomically: write a temporary file, fsync it, rename it over the old one."""
    target = store / MANIFEST_NAME
    tmp = store / f".{MANIFEST_NAME}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(asdict(manifest), fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_manifest(store: str | os.PathLike[str]) -> Manifest | None:
    """The manifest of a run store, or None if the folder has none (not written by :func:`run_zarr`)."""
    path = Path(store) / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise StoreError(f"{store}: unreadable run manifest {MANIFEST_NAME}: {err}") from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise StoreError(f"{store}: {MANIFEST_NAME} is not a {MANIFEST_FORMAT} manifest")
    known = set(Manifest.__dataclass_fields__)
    return Manifest(**{k: v for k, v in data.items() if k in known})


# --------------------------------------------------------------------------------------------------------
# Zarr helpers
# --------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_zarr() -> Iterator[None]:
    """Silence zarr's notices about v3 string dtypes and consolidated metadata (informational only)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*does not have a Zarr V3 specification.*")
        warnings.filterwarnings("ignore", message=r".*Consolidated metadata is currently not part.*")
        yield


def _require_zarr() -> None:
    try:
        import dask.array  # noqa: F401
        import zarr  # noqa: F401
    except ImportError as err:
        raise StoreError(f"Zarr output needs zarr and dask, which are not installed ({err}); install them "
                         "with: pip install 'leadsim[dask]'") from None


def _draw_encoding(ds: xr.Dataset, chunk_draws: int) -> dict[str, dict[str, Any]]:
    enc = {}
    for name, var in ds.data_vars.items():
        if "draw" in var.dims:
            enc[name] = {"chunks": tuple(min(chunk_draws, s) if d == "draw" else s
                                         for d, s in zip(var.dims, var.shape, strict=True))}
    return enc


def _tmp_sibling(path: Path, tag: str) -> Path:
    return path.parent / f".{path.name}.{tag}-{os.getpid()}-{os.urandom(3).hex()}"


def _clean_stale(path: Path) -> None:
    """Remove hidden temporary folders left next to ``path`` by processes that no longer exist."""
    for p in path.parent.glob(f".{path.name}.*-*-*"):
        try:
            pid = int(p.name.rsplit("-", 2)[-2])
        except ValueError:
            continue
        if pid == os.getpid() or not _alive(pid):
            shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _install(tmp: Path, path: Path) -> None:
    """Move a fully initialised store from ``tmp`` to ``path``, replacing an old store only at the end."""
    old = None
    if path.exists():
        old = _tmp_sibling(path, "old")
        os.rename(path, old)
    try:
        os.rename(tmp, path)
    except BaseException:
        if old is not None:
            os.rename(old, path)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _template(cfg: Config, first: ChunkResult) -> xr.Dataset:
    """A lazy full-size dataset whose arrays have the shapes and dtypes of a computed chunk."""
    import dask.array as da

    n, c = cfg.simulation.draws, cfg.simulation.chunk_draws
    arrays = {k: da.zeros((n, *v.shape[1:]), dtype=v.dtype, chunks=(min(c, n), *v.shape[1:]))
              for k, v in first.arrays.items()}
    return _encode(build_dataset(cfg, arrays))


def _chunk_dataset(res: ChunkResult) -> xr.Dataset:
    """The draw-dimensioned variables of one chunk, ready for a region write (no coordinates)."""
    return xr.Dataset({name: (dims, res.arrays[name]) for name, (dims, _, _) in SCHEMA.items()
                       if name in res.arrays and dims[0] == "draw"})


# --------------------------------------------------------------------------------------------------------
# A run written chunk by chunk
# --------------------------------------------------------------------------------------------------------
class ZarrRun:
    """Writer of one run store; use through :func:`run_zarr`.

    Parameters
    ----------
    path : Path
        The store folder (``*.zarr``).
    cfg : Config
        The run's config.
    manifest : Manifest
        The store's manifest (fresh, or read back for a resume).
    exists : bool
        Whether the store is already on disk (a resume); otherwise it is created at the first chunk.
    """

    def __init__(self, path: Path, cfg: Config, manifest: Manifest, exists: bool):
        self.path = path
        self.cfg = cfg
        self.manifest = manifest
        self.exists = exists

    def _create(self, first: ChunkResult) -> None:
        _clean_stale(self.path)
        tmp = _tmp_sibling(self.path, "tmp")
        try:
            tmpl = _template(self.cfg, first)
            with _quiet_zarr():
                tmpl.to_zarr(tmp, mode="w-", compute=False,
                             encoding=_draw_encoding(tmpl, self.cfg.simulation.chunk_draws))
            write_manifest(tmp, self.manifest)
            _install(tmp, self.path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.exists = True

    def write_chunk(self, lo: int, hi: int, res: ChunkResult) -> None:
        """Write one chunk's region, then record it in the manifest (in that order)."""
        c = self.cfg.simulation.chunk_draws
        if lo % c or (hi - lo != c and hi != self.cfg.simulation.draws):
            raise ValueError(f"chunk [{lo}, {hi}) is not aligned to chunk_draws = {c}")
        if not self.exists:
            self._create(res)
        with _quiet_zarr():
            _chunk_dataset(res).to_zarr(self.path, region={"draw": slice(lo, hi)}, mode="r+")
        self.manifest.mark_done(lo // c)
        write_manifest(self.path, self.manifest)


def _prepare(path: Path, cfg: Config, resume: bool, overwrite: bool) -> ZarrRun:
    fresh = Manifest.for_config(cfg)
    if not path.exists():
        return ZarrRun(path, cfg, fresh, exists=False)
    if not path.is_dir():
        raise StoreError(f"{path} exists and is not a Zarr store (a folder)")
    old = read_manifest(path)
    if overwrite:
        if old is None and any(path.iterdir()):
            raise StoreError(f"{path} is not a leadsim run store (no {MANIFEST_NAME}); refusing to overwrite it")
        return ZarrRun(path, cfg, fresh, exists=False)
    if not resume:
        state = (f"complete, {old.n_chunks} chunks" if old and old.complete else
                 f"{old.n_done} of {old.n_chunks} chunks done" if old else "not a leadsim run")
        raise StoreError(f"{path} already exists ({state}): add --resume to finish it, or --overwrite to start "
                         "again")
    if old is None:
        raise StoreError(f"{path} has no run manifest ({MANIFEST_NAME}); it was not written by `leadsim run` "
                         "and cannot be resumed")
    if old.config_hash != fresh.config_hash:
        changes = config_changes(old.config, fresh.config) or ["(the config hash differs)"]
        raise ResumeMismatchError([f"cannot resume {path}: the config differs from the store's "
                                   f"({len(changes)} change{'s' if len(changes) != 1 else ''}); use the same "
                                   "config, or --overwrite to start again", *changes])
    return ZarrRun(path, cfg, old, exists=True)


def run_zarr(cfg: Config, path: str | os.PathLike[str], *, resume: bool = False, overwrite: bool = False,
             client: Client | None = None, threads: int | None = None, progress: bool | None = None,
             on_chunk: Callable[[int, int, ChunkResult], None] | None = None) -> Manifest:
    """Run a config into a resumable Zarr store, one region write per chunk of draws.

    Parameters
    ----------
    cfg : Config
        A validated config; ``simulation.chunk_draws`` is the Zarr chunk size along ``draw``.
    path : path
        The store folder, e.g. ``run.zarr``.
    resume : bool
        Continue an interrupted store (same config required; threads may differ). A store that does not
        exist yet is simply started.
    overwrite : bool
        Replace an existing run store (the old one is removed only once the new one is initialised).
    client : distributed.Client, optional
        Run the chunks on a dask cluster (see :mod:`leadsim.distributed`); results are identical.
    threads : int, optional
        numba threads per dask task (default ``simulation.threads`` or 1); ignored without ``client``.
    progress : bool, optional
        Show a progress bar.
    on_chunk : callable, optional
        Called as ``on_chunk(start, stop, result)`` after each chunk is written and recorded.

    Returns
    -------
    Manifest
        The final manifest (``complete`` is True).

    Raises
    ------
    StoreError
        The store exists without ``resume``/``overwrite``, or is not a leadsim run store.
    ResumeMismatchError
        ``resume`` with a different config; the message names each changed key.
    """
    _require_zarr()
    path = Path(path)
    run = _prepare(path, cfg, resume, overwrite)
    todo = run.manifest.missing_bounds()

    def write(lo: int, hi: int, res: ChunkResult) -> None:
        run.write_chunk(lo, hi, res)
        if on_chunk is not None:
            on_chunk(lo, hi, res)

    if todo:
        if client is None:
            from leadsim.engine import run_draws

            run_draws(cfg, chunks=todo, progress=progress, on_chunk=write, gather=False)
        else:
            from leadsim.distributed import run_draws_distributed

            run_draws_distributed(cfg, client, chunks=todo, threads=threads, on_chunk=write, gather=False,
                                  progress=progress)
    return run.manifest


def open_store(path: str | os.PathLike[str], *, allow_incomplete: bool = False, load: bool = True) -> xr.Dataset:
    """Open a Zarr result store (a finished run, or any store written by :func:`save_zarr`).

    Parameters
    ----------
    path : path
        The store folder.
    allow_incomplete : bool
        Open an interrupted run anyway (unwritten draws read as NaN, or 0 for counts).
    load : bool
        Load everything into memory (default); ``False`` returns a lazy, dask-backed dataset.

    Raises
    ------
    StoreError
        The run is incomplete and ``allow_incomplete`` is False.
    """
    path = Path(path)
    manifest = read_manifest(path)
    if manifest is not None and not manifest.complete and not allow_incomplete:
        raise StoreError(f"{path} is an incomplete run ({manifest.n_done} of {manifest.n_chunks} chunks written); "
                         f"finish it with `leadsim run CONFIG -o {path} --resume`")
    with _quiet_zarr():
        ds = xr.open_zarr(path)
    if not load:
        return ds
    with ds:
        return ds.load()


def save_zarr(ds: xr.Dataset, path: str | os.PathLike[str], chunk_draws: int | None = None) -> Path:
    """Write a whole in-memory result as a Zarr store atomically (temporary folder, then a rename).

    The store gets a manifest marked complete, so it opens with :func:`leadsim.open` and a ``--resume``
    onto it has nothing left to do. ``chunk_draws`` defaults to the run's ``simulation.chunk_draws``.
    """
    _require_zarr()
    path = Path(path)
    parent = path.resolve().parent
    if not parent.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {parent}")
    if path.exists() and not path.is_dir():
        raise StoreError(f"{path} exists and is not a Zarr store (a folder)")
    if path.exists() and any(path.iterdir()) and read_manifest(path) is None:
        raise StoreError(f"{path} is not a leadsim store (no {MANIFEST_NAME}); refusing to overwrite it")
    cfg = _config_of(ds)
    n = ds.sizes["draw"]
    chunk = chunk_draws or (cfg.simulation.chunk_draws if cfg is not None else n)
    manifest = None
    if cfg is not None and cfg.simulation.draws == n and chunk == cfg.simulation.chunk_draws:
        manifest = Manifest.for_config(cfg)
        manifest.chunks_done = [[0, manifest.n_chunks]] if manifest.n_chunks else []
        manifest.complete = True
    _clean_stale(path)
    tmp = _tmp_sibling(path, "tmp")
    try:
        enc = _encode(ds)
        with _quiet_zarr():
            enc.to_zarr(tmp, mode="w-", encoding=_draw_encoding(enc, max(1, chunk)))
        if manifest is not None:
            write_manifest(tmp, manifest)
        _install(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _config_of(ds: xr.Dataset) -> Config | None:
    text = ds.attrs.get("config_toml")
    if not text:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load_config(tomllib.loads(text))
    except (ConfigError, tomllib.TOMLDecodeError):
        return None

