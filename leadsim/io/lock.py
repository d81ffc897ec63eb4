"""An exclusive writer lock for a Zarr run store: one process writes a store at a time.

The lock is a hidden sibling file ``.<store name>.lock`` (a sibling, not a file inside the store, because
``--overwrite`` swaps the whole store folder). It holds the writer's pid and host name, and is held with an
exclusive ``flock``: the kernel releases that lock when the process dies, however it dies, so a lock file left
by a killed run is stale and is simply taken over. A second writer meets a held lock and is refused at once,
naming the holder's pid.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path

from leadsim.errors import StoreLockedError

__all__ = ["StoreLock", "lock_path"]


def lock_path(store: str | os.PathLike[str]) -> Path:
    """The lock file of a store: ``.<name>.lock`` in the store's folder."""
    store = Path(store)
    return store.resolve().parent / f".{store.name}.lock"


class StoreLock:
    """An exclusive, non-blocking writer lock on a store (see the module docstring).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with StoreLock(d / "run.zarr"):
    ...     StoreLock(d / "run.zarr").acquire()
    Traceback (most recent call last):
    ...
    leadsim.errors.StoreLockedError: ...
    """

    def __init__(self, store: str | os.PathLike[str]) -> None:
        self.store = Path(store)
        self.path = lock_path(store)
        self.fd: int | None = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self) -> StoreLock:
        """Take the lock, or raise :class:`~leadsim.errors.StoreLockedError` naming the live holder."""
        if self.fd is not None:
            return self
        for _ in range(100):  # retried only when the file was replaced between open and flock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise StoreLockedError(f"{self.store} is being written by another leadsim process ({holder}; "
                                       f"lock file {self.path}); wait for it to finish, then use --resume "
                                       "or --overwrite") from None
            except BaseException:
                os.close(fd)
                raise
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous holder removed the file after we opened it: take the new one
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
            os.fsync(fd)
            self.fd = fd
            return self
        raise StoreLockedError(f"{self.store}: could not take the lock file {self.path}")

    def release(self) -> None:
        """Remove the lock file and release the lock (idempotent)."""
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            with contextlib.suppress(FileNotFoundError):
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    os.unlink(self.path)
        finally:
            os.close(fd)

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").split()
    except OSError:
        text = []
    if text and text[0].isdigit():
        host = f" on {text[1]}" if len(text) > 1 else ""
        return f"pid {text[0]}{host}"
    return "pid unknown"
