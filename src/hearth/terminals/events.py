"""What an attachment yields: output chunks with their offsets, and small typed events.

Plain frozen dataclasses, so they can cross a socket later (step 2 of the architecture).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Event", "Exited", "Missed", "Output", "ReplayDone", "Resized", "ViewerCount"]


@dataclass(frozen=True, slots=True)
class Output:
    offset: int  # absolute offset of data[0] in the session's output stream
    data: bytes


@dataclass(frozen=True, slots=True)
class ReplayDone:
    offset: int  # offset of the next live byte


@dataclass(frozen=True, slots=True)
class Missed:
    """The attachment fell behind the buffer: ``missed_bytes`` are gone, output goes on at
    ``offset``."""

    missed_bytes: int
    offset: int


@dataclass(frozen=True, slots=True)
class Resized:
    rows: int
    cols: int


@dataclass(frozen=True, slots=True)
class ViewerCount:
    count: int


@dataclass(frozen=True, slots=True)
class Exited:
    exit_code: int | None
    reason: str | None = None


Event = Output | ReplayDone | Missed | Resized | ViewerCount | Exited
