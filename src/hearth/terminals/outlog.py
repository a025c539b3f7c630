"""A terminal's output on disk, so that it outlives the process that holds the session (SPEC §8).

The log is a folder of segments, each named by the offset of its first byte::

    <data-dir>/terminals/<user>/<id>/00000000000000000000.out
                                    00000000000001048576.out   (the one being written)

It keeps the segment being written and the one before it, each of up to ``max_bytes``: so it
always covers the last ``max_bytes`` of output, all the buffer can hold.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

__all__ = ["OutputLog", "read_log"]

SUFFIX = ".out"
FLUSH_BYTES = 64 * 1024


def _segments(folder: Path) -> list[tuple[int, Path]]:
    found = []
    with contextlib.suppress(OSError):
        for path in folder.iterdir():
            if path.suffix == SUFFIX and path.stem.isdigit():
                found.append((int(path.stem), path))
    return sorted(found)


def read_log(folder: Path) -> tuple[int, bytes]:
    """(offset of the first byte, the bytes) of what the log holds: its last contiguous run."""
    start, parts, size = 0, list[bytes](), 0
    for offset, path in _segments(folder):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if not parts or offset != start + size:
            start, parts, size = offset, [], 0  # a gap (a segment lost): only what follows counts
        parts.append(data)
        size += len(data)
    return start, b"".join(parts)


class OutputLog:
    """Appends a session's output from ``start`` on (the offset of the next byte).

    Appends are gathered and written in pieces of up to ``FLUSH_BYTES`` (not a write per PTY
    read); the session flushes before any byte reaches a viewer and soon after output stops, so
    what a viewer has seen is always in the log. No fsync: a killed host loses at most the few
    milliseconds nobody had seen; a machine that loses power may lose the last seconds.
    """

    def __init__(self, folder: Path, max_bytes: int, start: int = 0) -> None:
        self.folder = folder
        self.max_bytes = max(1, max_bytes)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._fd = -1
        self._pending = bytearray()
        self._open(start)

    def _open(self, start: int) -> None:
        path = self.folder / f"{start:020d}{SUFFIX}"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        self._segment_start = self._end = start

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def append(self, data: bytes) -> None:
        if self._fd < 0:
            return
        self._pending += data
        if len(self._pending) >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self._fd < 0 or not self._pending:
            return
        data, self._pending = bytes(self._pending), bytearray()
        try:
            os.write(self._fd, data)  # a regular file takes the whole write
        except OSError:
            self.close()  # a full disk: the session goes on, in memory only
            return
        self._end += len(data)
        if self._end - self._segment_start >= self.max_bytes:
            try:
                self._rotate()
            except OSError:
                self.close()  # no room for a new segment: the session goes on, in memory only

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = -1  # never a number another file may get meanwhile
        previous = self._segment_start
        self._open(self._end)
        for offset, path in _segments(self.folder):
            if offset < previous:
                path.unlink(missing_ok=True)

    def close(self) -> None:
        self.flush()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def remove(self) -> None:
        self._pending.clear()
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)
