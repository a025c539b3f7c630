"""The message history of a terminal session: input, output, system and error entries.

Pure. Output entries don't copy bytes: they point into the output stream (offset, length) and
are dropped once the buffer has dropped their bytes. Bounded by ``max_entries`` too.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Entry", "EntryType", "History"]


class EntryType(StrEnum):
    INPUT = "input"
    OUTPUT = "output"
    SYSTEM = "system"
    ERROR = "error"


@dataclass(slots=True)
class Entry:
    seq: int
    type: EntryType
    offset: int  # the output stream's position when the entry happened
    timestamp: float
    data: bytes | str  # output: empty, read from the buffer by (offset, length)
    length: int = 0  # output entries only


class History:
    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: deque[Entry] = deque()
        self._seq = 0

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, type: EntryType, offset: int, timestamp: float, data: bytes | str) -> None:
        self._push(Entry(self._seq, type, offset, timestamp, data))

    def add_output(self, offset: int, length: int, timestamp: float) -> None:
        last = self._entries[-1] if self._entries else None
        if (
            last is not None
            and last.type is EntryType.OUTPUT
            and last.offset + last.length == offset
            and timestamp - last.timestamp < 0.01
        ):
            last.length += length  # one burst of reads is one entry
            return
        self._push(Entry(self._seq, EntryType.OUTPUT, offset, timestamp, b"", length))

    def forget_before(self, offset: int) -> None:
        """Drop entries that happened before ``offset`` was the oldest buffered byte."""
        entries = self._entries
        while entries and (
            entries[0].offset + entries[0].length <= offset
            if entries[0].type is EntryType.OUTPUT
            else entries[0].offset < offset
        ):
            entries.popleft()

    def select(self, since: int = 0, limit: int | None = None) -> list[Entry]:
        """Entries oldest first, from the first whose ``offset`` >= ``since``."""
        out: list[Entry] = []
        for entry in self._entries:
            if entry.offset < since:
                continue
            out.append(entry)
            if limit is not None and len(out) >= limit:
                break
        return out

    def _push(self, entry: Entry) -> None:
        self._seq += 1
        self._entries.append(entry)
        while len(self._entries) > self.max_entries:
            self._entries.popleft()
