"""A terminal session as both sides of the host's socket see it: what a client may ask of a new
one (:class:`TerminalSpec`), its state (:class:`TerminalInfo`), and what a viewer receives
(output with its offset, and small typed events)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "Event",
    "Exited",
    "Missed",
    "Output",
    "Refused",
    "ReplayDone",
    "Resized",
    "TerminalInfo",
    "TerminalSocket",
    "TerminalSpec",
    "TerminalStatus",
    "ViewerCount",
    "valid_session_id",
]

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def valid_session_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class TerminalSocket:
    """What a terminal websocket's query string asks (SPEC §3.4), validated."""

    reconnect: bool = False  # True: attach only, never create
    since: int | None = None  # the exact byte to resume from
    screen: bool = False  # start from the screen (restore=screen, and no since)
    rows: int | None = None
    cols: int | None = None


@dataclass(frozen=True, slots=True)
class TerminalSpec:
    """What a client may ask of a new terminal session (all optional)."""

    id: str | None = None
    name: str | None = None
    command: list[str] | None = None
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    rows: int = 24
    cols: int = 80
    connection_id: str | None = None  # a saved connection's machine (SPEC §11), else this one


class TerminalStatus(StrEnum):
    ACTIVE = "active"
    DISCONNECTED = "disconnected"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class TerminalInfo:
    """A snapshot of a session's state, as the API shows it (SPEC §3.1)."""

    id: str
    name: str
    user: str
    protocol: str
    status: TerminalStatus
    alive: bool
    exit_code: int | None
    created_at: float
    last_activity: float
    expires_at: float | None
    rows: int
    cols: int
    viewers: int
    output_start: int
    output_end: int
    command: list[str] = field(default_factory=list)
    closed_reason: str | None = None
    connection_id: str | None = None
    exit_reason: str | None = None  # why it ended, beyond its status ("connection lost: …")


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


@dataclass(frozen=True, slots=True)
class Refused:
    """The viewer's input or resize was refused (too large, the session exited): what to do."""

    message: str


Event = Output | ReplayDone | Missed | Resized | ViewerCount | Exited | Refused
