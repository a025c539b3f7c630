"""Where a data directory's session host lives: its socket, its lock and its log.

A Unix socket's path must fit in 108 bytes; a deeper data directory is reached through a
descriptor of it (``/proc/self/fd/N/host.sock``), which ``bind`` and ``connect`` both accept.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["HostPlace"]

_SUN_PATH_MAX = 107


class HostPlace:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.socket = self.data_dir / "host.sock"
        self.lock = self.data_dir / "host.lock"
        self.log = self.data_dir / "host.log"

    @contextlib.contextmanager
    def socket_address(self) -> Iterator[str]:
        """A path to the socket short enough for ``bind``/``connect``, valid inside the block."""
        path = str(self.socket)
        if len(path.encode()) <= _SUN_PATH_MAX:
            yield path
            return
        fd = os.open(self.data_dir, os.O_PATH | os.O_DIRECTORY)
        try:
            yield f"/proc/self/fd/{fd}/{self.socket.name}"
        finally:
            os.close(fd)
