"""Where a data directory's session host lives: its socket, its lock and its log.

A Unix socket's path must fit in 108 bytes; a deeper data directory is reached through a
descriptor of it (``/proc/self/fd/N/host.sock``), which ``bind`` and ``connect`` both accept.
A data directory removed or replaced under a running host takes its socket along: nobody can
reach that host again, so it ends (:meth:`HostPlace.gone` tells it when).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

__all__ = ["ALREADY_RUNNING", "HostLock", "HostPlace", "lock_free"]

ALREADY_RUNNING = 3  # exit status of a host that found another one holding the lock

_SUN_PATH_MAX = 107
_Identity = tuple[int, int] | None  # (st_dev, st_ino); None: nothing there


class HostPlace:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.socket = self.data_dir / "host.sock"
        self.handover = self.data_dir / "handover.sock"  # descriptors of handed-over sockets
        self.lock = self.data_dir / "host.lock"
        self.log = self.data_dir / "host.log"

    def identity(self, path: Path | None = None) -> tuple[int, int] | None:
        """The data directory's (or ``path``'s) (st_dev, st_ino); None once nothing is there."""
        try:
            st = os.stat(path or self.data_dir, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return st.st_dev, st.st_ino

    def gone(self, interval: float) -> Coroutine[Any, Any, str]:
        """Returns once the data directory found now (when this is called) is ``"removed"``
        from its path or ``"replaced"`` there by another, or its socket is (``rm -r`` of a data
        directory that holds a mount point removes the socket, not the directory); looked at
        every ``interval`` seconds."""
        return self._until_gone(interval, self._look())

    def _look(self) -> tuple[_Identity, _Identity] | None:
        """The directory's and the socket's identities; None while unreadable (a parent's
        mode?), which is not gone."""
        try:
            return self.identity(), self.identity(self.socket)
        except OSError:
            return None

    async def _until_gone(self, interval: float, first: tuple[_Identity, _Identity] | None) -> str:
        while True:
            await asyncio.sleep(interval)
            now = self._look()
            if now is None or first is None:
                first = first or now
                continue
            (directory, socket), (directory_now, socket_now) = first, now
            if directory_now is None:
                return "removed"
            if directory_now != directory:
                return "replaced"
            if socket is not None and socket_now != socket:
                return "its socket removed" if socket_now is None else "its socket replaced"

    @contextlib.contextmanager
    def socket_address(self, socket: Path | None = None) -> Iterator[str]:
        """A path to the socket (or to ``socket``, in the data directory) short enough for
        ``bind``/``connect``, valid inside the block."""
        socket = socket or self.socket
        path = str(socket)
        if len(path.encode()) <= _SUN_PATH_MAX:
            yield path
            return
        fd = os.open(self.data_dir, os.O_PATH | os.O_DIRECTORY)
        try:
            yield f"/proc/self/fd/{fd}/{socket.name}"
        finally:
            os.close(fd)


class HostLock:
    """``host.lock``, held for the host's life; a second host for the same directory can't
    take it. The descriptor is close-on-exec: a session's process must never inherit it."""

    def __init__(self, place: HostPlace) -> None:
        place.data_dir.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(place.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def lock_free(place: HostPlace) -> bool:
    try:
        lock = HostLock(place)
    except BlockingIOError:
        return False
    lock.release()
    return True
