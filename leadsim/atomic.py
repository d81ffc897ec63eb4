"""One atomic-write helper for every file and folder leadsim writes: a hidden temporary sibling, then a rename.

A reader never sees a half-written result: the temporary file (or folder) lives in the target's own folder
(so the rename stays on one filesystem and is atomic), gets the permissions a plain ``open`` would give, is
fsynced, and is removed on any error, interrupt included.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from leadsim.errors import OutputError

__all__ = ["atomic_path", "check_target", "clean_stale_temporaries", "same_path", "tmp_prefix"]


def tmp_prefix(path: Path) -> str:
    """The name prefix of the temporary siblings of ``path`` (``.<name>.``)."""
    return f".{path.name}."


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _fsync(path: Path) -> None:
    if path.is_dir():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _refuse_special(path: Path) -> None:
    """Raise :class:`OutputError` if ``path`` exists and is neither a regular file nor a folder."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise OutputError(f"{path} is {_kind(mode)}, not a regular file; refusing to replace it")


def same_path(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name the same file or folder (hard links and symlinks included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def check_target(path: str | os.PathLike[str], *, inputs: Iterable[str | os.PathLike[str]] = (),
                 overwrite: bool = False, folder: bool = False, flag: str = "-o") -> Path:
    """Check an output path before any work: refuse anything leadsim must not replace.

    Parameters
    ----------
    path : path
        The output file (or folder, with ``folder=True``).
    inputs : paths
        The files the command reads; the output may be none of them.
    overwrite : bool
        Allow replacing an existing result (a regular file, or a folder when ``folder``).
    folder : bool
        The output is a folder (a Zarr store).
    flag : str
        How the output was given on the command line, for the message.

    Returns
    -------
    Path
        ``path`` as a :class:`~pathlib.Path`.

    Raises
    ------
    OutputError
        The path is empty, one of the inputs, a device/FIFO/socket, a folder where a file is expected, or an
        existing result without ``overwrite``.
    """
    if not os.fspath(path):
        raise OutputError(f"{flag} '': the output path is empty")
    p = Path(path)
    for src in inputs:
        if same_path(p, src):
            raise OutputError(f"{flag} {p}: is also an input ({src}); refusing to overwrite it, choose another path")
    _refuse_special(p)
    if folder and p.is_dir() and not p.is_symlink() and not any(p.iterdir()):
        return p  # an empty folder: nothing to replace
    if p.exists() or p.is_symlink():
        if p.is_dir() and not folder:
            raise OutputError(f"{flag} {p}: is a directory")
        if not p.is_dir() and folder:
            raise OutputError(f"{flag} {p}: exists and is not a folder (a Zarr store)")
        if not overwrite:
            raise OutputError(f"{flag} {p}: already exists; add --overwrite to replace it")
    return p


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, folder: bool = False, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it into place, on any error remove it.

    Temporaries of ``path`` left by dead processes are removed first (:func:`clean_stale_temporaries`).

    Parameters
    ----------
    path : path
        The final file (or folder, with ``folder=True``).
    folder : bool
        Create a temporary folder instead of a file name.
    replace : bool
        Replace an existing ``path`` (a folder is swapped in only once the new one is complete).

    Raises
    ------
    FileNotFoundError
        The parent folder does not exist.
    OutputError
        ``path`` is a device, FIFO or socket (only regular files and folders are ever replaced).
    """
    path = Path(path)
    _refuse_special(path)
    parent = path.resolve().parent
    if not parent.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {parent}")
    clean_stale_temporaries(path)  # what an earlier writer killed mid-save (SIGKILL) left next to it
    tag = f"{os.getpid()}-{os.urandom(3).hex()}"
    if folder:
        tmp = parent / f"{tmp_prefix(path)}tmp-{tag}"
    else:
        fd, name = tempfile.mkstemp(prefix=tmp_prefix(path), suffix=f".{tag}.tmp", dir=parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if not folder:
            os.chmod(tmp, 0o666 & ~_umask())
            _fsync(tmp)
        _install(tmp, path, replace)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise


def _install(tmp: Path, path: Path, replace: bool) -> None:
    """Move ``tmp`` to ``path``; an existing folder is moved aside first and removed only at the end."""
    if not replace and (path.exists() or path.is_symlink()):
        raise FileExistsError(f"{path} exists")
    _refuse_special(path)
    if tmp.is_dir() and path.is_dir():
        old = path.parent / f"{tmp_prefix(path)}old-{os.getpid()}-{os.urandom(3).hex()}"
        os.rename(path, old)
        try:
            os.rename(tmp, path)
        except BaseException:
            os.rename(old, path)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary siblings of ``path`` left by processes that no longer exist (a killed save).

    Returns the paths removed.
    """
    path = Path(path)
    removed = []
    for p in path.parent.glob(f"{tmp_prefix(path)}*"):
        pid = _pid_of(p.name[len(tmp_prefix(path)):])
        if pid is None or pid == os.getpid() or _alive(pid):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        removed.append(p)
    return removed


def _pid_of(rest: str) -> int | None:
    """The writer's pid in a temporary name: ``tmp-<pid>-<hex>``, ``old-<pid>-<hex>`` or ``<rand>.<pid>-<hex>.tmp``."""
    name = rest[:-4] if rest.endswith(".tmp") else rest
    parts = name.rsplit(".", 1)[-1].split("-")
    return int(parts[-2]) if len(parts) >= 2 and parts[-2].isdigit() else None
