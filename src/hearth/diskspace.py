"""How full the data directory's disk is, for ``/healthz`` (SPEC §7.1), and the room the server
keeps there for its own writes (a disk image of sessions never takes it). The web tier asks this
without importing the sandbox."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["FULL", "MIN_RESERVE", "data_dir_state", "disk_state", "reserve"]

MIN_RESERVE = 256 << 20
FULL = 16 << 20  # below this, a write of the server's may fail any moment


def reserve(total: int) -> int:
    """What the server keeps free on a file system of ``total`` bytes: 5%, 256 MiB at least."""
    return max(MIN_RESERVE, total // 20)


def disk_state(free: int, total: int) -> str:
    """``/healthz``'s ``disk``: ``"full"`` (the server's own writes may fail), ``"low"`` (less
    left than half the reserve an image keeps) or ``"ok"`` (pure)."""
    if free < FULL:
        return "full"
    return "low" if free < reserve(total) // 2 else "ok"


def data_dir_state(data_dir: Path) -> str:
    """:func:`disk_state` of the file system ``data_dir`` is on."""
    try:
        stat = os.statvfs(data_dir)
    except OSError:
        return "full"  # gone, or unreadable: nothing can be written there either
    return disk_state(stat.f_bavail * stat.f_frsize, stat.f_blocks * stat.f_frsize)
