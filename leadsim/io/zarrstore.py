"""Resumable Zarr runs: each chunk of draws written as it completes, with a manifest of the chunks done.

Layout of a run store ``run.zarr`` (Zarr v3, a folder)::

    run.zarr/zarr.json, <variable>/...   the leadsim Dataset, chunked along ``draw`` by simulation.chunk_draws
    run.zarr/leadsim_run.json            the run manifest (see :class:`Manifest`)

Life of a run (:class:`ZarrSink`, driven by :func:`leadsim.run`):

1. When the first chunk completes, the store is created in a hidden temporary folder next to the target: the
   dataset's metadata, coordinates and attrs from a lazy template (``to_zarr(compute=False)``) and a manifest
   with no chunk done. The folder is then renamed into place, so a store is never half-initialised.
2. Each chunk ``[start, stop)`` is written into its own region (``to_zarr(region={"draw": slice(start,
   stop)})``); chunk boundaries are Zarr chunk boundaries, so no two writes touch the same Zarr chunk.
3. Only after a chunk's data is written is it added to the manifest, which is replaced atomically (temporary
   file, fsync, rename). A crash at any point therefore leaves a manifest that lists only fully written
   chunks; a chunk being written when the process died is simply computed and written again on resume.
4. ``resume=True`` reopens the store, refuses if the config changed (naming each changed key) or the store was
   written by other code (``leadsim_version``, ``model_hash``), and computes only the chunks not in the
   manifest. The finished store equals an uninterrupted run, because every draw's numbers are keyed by its index.

Integrity: a run holds an exclusive lock (:mod:`leadsim.io.lock`) from :meth:`ZarrSink.open` to the end, and
re-reads the manifest's ``run_id`` before each region write, so two writers never mix in one store. Each chunk's
files are fsynced and their SHA-256 (``chunk_sums``) recorded before the manifest lists the chunk;
:func:`open_store` refuses a store whose chunk files no longer match, and a resume recomputes those chunks.

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
import uuid
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from leadsim._version import __version__
from leadsim.atomic import atomic_path
from leadsim.config import Config, chunk_bounds
from leadsim.errors import LeadsimWarning, ResultError, ResumeMismatchError, StoreError
from leadsim.io.lock import StoreLock
from leadsim.io.schema import SCHEMA, RunHeader, build_dataset, config_of, encode

__all__ = [
    "MANIFEST_NAME",
    "Manifest",
    "ZarrSink",
    "config_hash",
    "open_store",
    "read_manifest",
    "save_zarr",
]

MANIFEST_NAME = "leadsim_run.json"
MANIFEST_FORMAT = "leadsim-zarr-run/1"
# keys that change speed, never results: a resume may change them freely
RESULT_NEUTRAL_KEYS = ("simulation.threads",)


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


# the modules whose source determines a run's numbers (hashed into the manifest: a resume needs the same code)
MODEL_SOURCES = ("model", "ledger", "config", "engine.py", "schedules.py", "io/schema.py")


@lru_cache(maxsize=1)
def model_hash() -> str:
    """SHA-256 of the source of the modules that compute a run's numbers (:data:`MODEL_SOURCES`).

    Stored in the run manifest: ``--resume`` refuses a store written by different model code, even under the
    same version number (an edited checkout).
    """
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for entry in MODEL_SOURCES:
        p = root / entry
        files = sorted(p.rglob("*.py")) if p.is_dir() else [p] if p.is_file() else []
        for f in files:
            h.update(f.relative_to(root).as_posix().encode() + b"\0")
            h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


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
    run_id: str = ""
    model_hash: str = ""
    chunk_vars: list[str] = field(default_factory=list)
    chunk_sums: dict[str, str] = field(default_factory=dict)

    @classmethod
    def for_config(cls, cfg: Config) -> Manifest:
        sim = cfg.simulation
        now = _now()
        return cls(config_hash=config_hash(cfg), seed=int(sim.seed), draws=int(sim.draws),
                   chunk_draws=int(sim.chunk_draws), n_chunks=len(chunk_bounds(sim.draws, sim.chunk_draws)),
                   config=config_identity(cfg), created=now, updated=now, run_id=uuid.uuid4().hex,
                   model_hash=model_hash())

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

    def mark_undone(self, indices: Sequence[int]) -> None:
        """Forget chunks (they failed their checksum): a resume computes them again."""
        keep = self.done_set() - set(indices)
        self.chunks_done = []
        for i in sorted(keep):
            self.mark_done(i)
        if not keep:
            self.complete = self.n_chunks == 0
        for i in indices:
            self.chunk_sums.pop(str(i), None)
        self.updated = _now()


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def write_manifest(store: Path, manifest: Manifest) -> None:
    """Replace the manifest atomically: write a temporary file, fsync it, rename it over the old one."""
    with atomic_path(store / MANIFEST_NAME) as tmp:
        tmp.write_text(json.dumps(asdict(manifest), indent=1), encoding="utf-8")
    _fsync_dir(store)


def _fsync_dir(folder: Path) -> None:
    """Make a rename or new files in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _chunk_files(store: Path, index: int, names: Sequence[str]) -> list[Path]:
    """The files holding chunk ``index`` (along ``draw``) of the variables ``names``, sorted."""
    files: list[Path] = []
    for name in sorted(names):
        root = store / name / "c" / str(index)
        if root.is_file():
            files.append(root)
        elif root.is_dir():
            files += sorted(p for p in root.rglob("*") if p.is_file())
    return files


def _fsync_files(files: Sequence[Path]) -> None:
    """fsync each file and the folders that hold them, so the data is on disk before the manifest says so."""
    folders = set()
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        folders.add(f.parent)
    for d in folders:
        _fsync_dir(d)


def chunk_checksum(store: Path, index: int, names: Sequence[str]) -> str:
    """SHA-256 over the files of chunk ``index`` of ``names`` (paths and contents; a variable with no file --
    an all-fill chunk Zarr did not write -- counts as absent, so deleting a file changes the sum)."""
    h = hashlib.sha256()
    for name in sorted(names):
        files = _chunk_files(store, index, [name])
        if not files:
            h.update(f"{name}:absent\0".encode())
        for f in files:
            h.update(f.relative_to(store).as_posix().encode() + b"\0")
            h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def bad_chunks(store: str | os.PathLike[str], manifest: Manifest) -> list[int]:
    """The done chunks whose files no longer match their checksum in the manifest (missing, changed)."""
    store = Path(store)
    if not manifest.chunk_vars:
        return []
    return [i for i in sorted(manifest.done_set())
            if str(i) in manifest.chunk_sums
            and chunk_checksum(store, i, manifest.chunk_vars) != manifest.chunk_sums[str(i)]]


def _describe(manifest: Manifest, chunks: Sequence[int]) -> str:
    bounds = chunk_bounds(manifest.draws, manifest.chunk_draws)
    parts = [f"{i} (draws {bounds[i][0]}-{bounds[i][1] - 1})" for i in chunks[:5]]
    more = f" and {len(chunks) - 5} more" if len(chunks) > 5 else ""
    return f"chunk{'s' if len(chunks) != 1 else ''} {', '.join(parts)}{more}"


def read_manifest(store: str | os.PathLike[str]) -> Manifest | None:
    """The manifest of a run store, or None if the folder has none (not written by a leadsim run)."""
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
    fields = {k: v for k, v in data.items() if k in known}
    problem = _manifest_problem(fields)
    if problem:
        raise StoreError(f"{store}: {MANIFEST_NAME} is damaged or hand-edited: {problem}")
    return Manifest(**fields)


_MANIFEST_TYPES: dict[str, type | tuple[type, ...]] = {
    "config_hash": str, "seed": int, "draws": int, "chunk_draws": int, "n_chunks": int, "chunks_done": list,
    "complete": bool, "format": str, "leadsim_version": str, "created": str, "updated": str, "config": dict,
    "run_id": str, "model_hash": str, "chunk_vars": list, "chunk_sums": dict,
}


def _manifest_problem(fields: Mapping[str, Any]) -> str:
    """What is wrong with a manifest's fields (wrong type, missing, inconsistent), or ''."""
    for name in ("config_hash", "seed", "draws", "chunk_draws", "n_chunks"):
        if name not in fields:
            return f"it has no {name!r}"
    for name, value in fields.items():
        want = _MANIFEST_TYPES[name]
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            expected = want.__name__ if isinstance(want, type) else "/".join(t.__name__ for t in want)
            return f"{name} = {_short(value)} is not a{'n' if expected[0] in 'aeiou' else ''} {expected}"
    if fields["draws"] < 1 or fields["chunk_draws"] < 1 or fields["n_chunks"] != len(
            chunk_bounds(fields["draws"], fields["chunk_draws"])):
        return "draws, chunk_draws and n_chunks do not agree"
    for pair in fields.get("chunks_done", []):
        if (not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(i, int) and not isinstance(i, bool)
                                                                     for i in pair)
                or not 0 <= pair[0] < pair[1] <= fields["n_chunks"]):
            return f"chunks_done entry {_short(pair)} is not a [first, end) pair of chunk indices"
    return ""


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


def _template(cfg: Config, header: RunHeader, first: Mapping[str, np.ndarray]) -> xr.Dataset:
    """A lazy full-size dataset whose arrays have the shapes and dtypes of a computed chunk.

    Each array is one dask chunk: the template is only written with ``compute=False`` (metadata and
    coordinates), and the Zarr chunking comes from :func:`_draw_encoding`. Dask chunks of ``chunk_draws``
    would give a graph of draws / chunk_draws tasks per variable that ``to_zarr`` builds and optimises
    even though it never computes it (about 75 MiB and 5 s at 100,000 draws of 128).
    """
    import dask.array as da

    n = cfg.simulation.draws
    arrays = {k: da.zeros((n, *v.shape[1:]), dtype=v.dtype, chunks=-1) for k, v in first.items()}
    return encode(build_dataset(cfg, arrays, header.constants, header.attrs))


def _chunk_dataset(arrays: Mapping[str, np.ndarray]) -> xr.Dataset:
    """The draw-dimensioned variables of one chunk, ready for a region write (no coordinates)."""
    return xr.Dataset({name: (dims, arrays[name]) for name, (dims, _, _) in SCHEMA.items()
                       if name in arrays and dims[0] == "draw"})


# --------------------------------------------------------------------------------------------------------
# A run written chunk by chunk
# --------------------------------------------------------------------------------------------------------
class ZarrSink:
    """A resumable Zarr run store as a :class:`~leadsim.io.sink.Sink`: one region write per chunk of draws.

    Parameters
    ----------
    path : path
        The store folder (``*.zarr``).
    resume : bool
        Continue an interrupted store (same config required; threads may differ); :meth:`open` then returns
        only the chunks not yet written. A store that does not exist yet is simply started.
    overwrite : bool
        Replace an existing run store (the old one is removed only once the new one is initialised).

    Notes
    -----
    Raised by :meth:`open`, before any work: :class:`~leadsim.errors.StoreError` when the store exists
    without ``resume``/``overwrite`` or is not a leadsim run store; :class:`~leadsim.errors.ResumeMismatchError`
    when ``resume`` meets a different config, naming each changed key.
    """

    def __init__(self, path: str | os.PathLike[str], *, resume: bool = False, overwrite: bool = False):
        self.path = Path(path)
        self.resume = resume
        self.overwrite = overwrite
        self.cfg: Config | None = None
        self.header: RunHeader | None = None
        self.manifest: Manifest | None = None
        self.exists = False
        self.lock = StoreLock(self.path)

    def open(self, cfg: Config, header: RunHeader, chunks: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
        """Take the store's writer lock, check the store, and return the chunks still to compute."""
        _require_zarr()
        self.cfg, self.header = cfg, header
        self.lock.acquire()  # before looking at the store: a second writer is refused here, before any work
        try:
            self.manifest, self.exists = _prepare(self.path, cfg, self.resume, self.overwrite)
        except BaseException:
            self.lock.release()
            raise
        missing = set(self.manifest.missing_bounds())
        return [b for b in chunks if b in missing]

    def _check_identity(self) -> None:
        """Refuse to write into a store that is no longer this run's (replaced or rewritten by someone else)."""
        if self.manifest is None:
            raise RuntimeError("ZarrSink.open() must be called before saving")
        try:
            on_disk = read_manifest(self.path)
        except StoreError:
            on_disk = None
        if on_disk is None or (on_disk.run_id, on_disk.config_hash) != (self.manifest.run_id,
                                                                      self.manifest.config_hash):
            raise StoreError(f"{self.path} was replaced or changed by another process during this run; "
                             "stopping without writing into it")

    def _create(self, first: Mapping[str, np.ndarray]) -> None:
        if self.cfg is None or self.header is None or self.manifest is None:
            raise RuntimeError("ZarrSink.open() must be called before saving")
        with atomic_path(self.path, folder=True) as tmp:
            tmpl = _template(self.cfg, self.header, first)
            with _quiet_zarr():
                tmpl.to_zarr(tmp, mode="w-", compute=False,
                             encoding=_draw_encoding(tmpl, self.cfg.simulation.chunk_draws))
            write_manifest(tmp, self.manifest)
        self.exists = True

    def save_chunk(self, start: int, stop: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Write one chunk's region, then record it in the manifest (in that order)."""
        if self.cfg is None or self.manifest is None:
            raise RuntimeError("ZarrSink.save_chunk before open")
        c = self.cfg.simulation.chunk_draws
        if start % c or (stop - start != c and stop != self.cfg.simulation.draws):
            raise ValueError(f"chunk [{start}, {stop}) is not aligned to chunk_draws = {c}")
        if not self.exists:
            self._create(arrays)
        else:
            self._check_identity()
        chunk = _chunk_dataset(arrays)
        with _quiet_zarr():
            chunk.to_zarr(self.path, region={"draw": slice(start, stop)}, mode="r+")
        names = sorted(str(n) for n in chunk.data_vars)
        _fsync_files(_chunk_files(self.path, start // c, names))
        if not self.manifest.chunk_vars:
            self.manifest.chunk_vars = names
        self.manifest.chunk_sums[str(start // c)] = chunk_checksum(self.path, start // c, names)
        self.manifest.mark_done(start // c)
        write_manifest(self.path, self.manifest)

    def close(self) -> None:
        """Release the writer lock: every chunk is on disk and in the manifest as soon as it is saved."""
        self.lock.release()

    def abort(self) -> None:
        """Keep the chunks written so far (``--resume`` finishes the run) and release the writer lock."""
        self.lock.release()


def _prepare(path: Path, cfg: Config, resume: bool, overwrite: bool) -> tuple[Manifest, bool]:
    """The manifest to run under and whether the store is already on disk (a resume)."""
    fresh = Manifest.for_config(cfg)
    if not path.exists():
        return fresh, False
    if not path.is_dir():
        raise StoreError(f"{path} exists and is not a Zarr store (a folder)")
    if not any(path.iterdir()):  # an empty folder (e.g. made by hand): start the run in it
        return fresh, False
    old = read_manifest(path)
    if old is None:
        raise StoreError(f"{path} is a non-empty folder without a run manifest ({MANIFEST_NAME}): not a leadsim "
                         "run store; refusing to use it (choose another path)")
    if overwrite:
        return fresh, False
    if not resume:
        state = f"complete, {old.n_chunks} chunks" if old.complete else f"{old.n_done} of {old.n_chunks} chunks done"
        raise StoreError(f"{path} already exists ({state}): add --resume to finish it, or --overwrite to start "
                         "again")
    if (old.leadsim_version, old.model_hash) != (fresh.leadsim_version, fresh.model_hash):
        raise ResumeMismatchError([
            f"cannot resume {path}: it was written by other leadsim code (leadsim {old.leadsim_version}, model "
            f"source {old.model_hash[:12] or 'not recorded'}) than this one (leadsim {fresh.leadsim_version}, "
            f"model source {fresh.model_hash[:12]}); a resumed run would mix the two. Use --overwrite to start "
            "again"])
    if old.config_hash != fresh.config_hash:
        changes = config_changes(old.config, fresh.config) or ["(the config hash differs)"]
        raise ResumeMismatchError([f"cannot resume {path}: the config differs from the store's "
                                   f"({len(changes)} change{'s' if len(changes) != 1 else ''}); use the same "
                                   "config, or --overwrite to start again", *changes])
    bad = bad_chunks(path, old)
    if bad:
        warnings.warn(f"{path}: {_describe(old, bad)} failed the checksum (missing or changed files); "
                      "computing them again", LeadsimWarning, stacklevel=2)
        old.mark_undone(bad)
        write_manifest(path, old)
    return old, True


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
    if manifest is not None:
        bad = bad_chunks(path, manifest)
        if bad:
            raise StoreError(f"{path} is damaged: {_describe(manifest, bad)} failed the checksum (missing or "
                             f"changed files); recompute them with `leadsim run CONFIG -o {path} --resume`")
    try:
        with _quiet_zarr():
            ds = xr.open_zarr(path)
    except Exception as err:  # zarr raises several types for a folder that is not a store
        raise ResultError(f"{path}: not a readable Zarr result ({type(err).__name__}: {err})") from None
    if not load:
        return ds
    with ds:
        # a local read: the threaded scheduler, never a distributed client that happens to be the default
        return ds.load(scheduler="threads")


def save_zarr(ds: xr.Dataset, path: str | os.PathLike[str], chunk_draws: int | None = None) -> Path:
    """Write a whole in-memory result as a Zarr store atomically (temporary folder, then a rename).

    The store gets a manifest marked complete, so it opens with :func:`leadsim.open` and a ``--resume``
    onto it has nothing left to do. ``chunk_draws`` defaults to the run's ``simulation.chunk_draws``.
    """
    _require_zarr()
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise StoreError(f"{path} exists and is not a Zarr store (a folder)")
    if path.exists() and any(path.iterdir()) and read_manifest(path) is None:
        raise StoreError(f"{path} is not a leadsim store (no {MANIFEST_NAME}); refusing to overwrite it")
    try:
        cfg: Config | None = config_of(ds)
    except ResultError:
        cfg = None
    n = ds.sizes["draw"]
    chunk = chunk_draws or (cfg.simulation.chunk_draws if cfg is not None else n)
    manifest = None
    if cfg is not None and cfg.simulation.draws == n and chunk == cfg.simulation.chunk_draws:
        manifest = Manifest.for_config(cfg)
        manifest.chunks_done = [[0, manifest.n_chunks]] if manifest.n_chunks else []
        manifest.complete = True
    with StoreLock(path), atomic_path(path, folder=True) as tmp:
        enc = encode(ds)
        with _quiet_zarr():
            enc.to_zarr(tmp, mode="w-", encoding=_draw_encoding(enc, max(1, chunk)))
        if manifest is not None:
            names = sorted(str(k) for k, v in enc.data_vars.items() if v.dims and v.dims[0] == "draw")
            manifest.chunk_vars = names
            manifest.chunk_sums = {str(i): chunk_checksum(tmp, i, names) for i in range(manifest.n_chunks)}
            write_manifest(tmp, manifest)
    return path
