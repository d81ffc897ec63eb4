"""One atomic-write helper for every file and folder leadsim writes: a hidden temporary sibling, then a rename.

A reader never sees a half-written result: the temporary file (or folder) lives in the target's own folder
(so the rename stays on one filesystem and is atomic), gets the permissions a plain ``open`` would give, is
fsynced, and is removed on any error, interrupt included.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "clean_stale_temporaries", "tmp_prefix"]


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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, folder: bool = False, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it into place, on any error remove it.

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
    """
    path = Path(path)
    parent = path.resolve().parent
    if not parent.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {parent}")
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
