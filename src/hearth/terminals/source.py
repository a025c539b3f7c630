"""Where a terminal session's bytes come from and its input goes: a process on a local PTY
(:mod:`hearth.terminals.pty_source`) or a PTY channel on another machine
(:mod:`hearth.terminals.ssh_source`). The session (buffer, viewers, flow control, history,
screen) is the same over either."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

__all__ = ["Sink", "Source"]

# output as it arrives: (bytes, whether it is streaming rather than an echo)
Sink = Callable[[bytes, bool], None]


class Source(Protocol):
    exited: asyncio.Future[int]  # the exit status, once it ended
    exit_reason: str | None  # why it ended, when not by its own exit ("connection lost: …")

    def start(self, sink: Sink) -> None:
        """Deliver output to ``sink`` from now on (while reading is resumed)."""

    def pause_reading(self) -> None:
        """Stop taking output: the other side stalls once its window (PTY queue, SSH window)
        is full. Idempotent."""

    def resume_reading(self) -> None: ...

    def write(self, data: bytes) -> None:
        """Input, in order; what can't be written now is kept and written when it can."""

    @property
    def pending_input(self) -> int: ...

    def resize(self, rows: int, cols: int) -> None: ...

    def drain(self, sink: Sink) -> None:
        """At exit: what is still unread, to ``sink``; then hang up."""

    async def terminate(self, grace: float) -> int:
        """End it (politely, then after ``grace`` seconds by force); its exit status."""

    def oom_kills(self) -> int:
        """Processes its memory limit killed so far (0 where Hearth sets none)."""

    @property
    def memory_limit(self) -> int: ...

    def describe(self) -> str:
        """What the logs say of it: ``pid 1234``, ``ops@db:22``."""
