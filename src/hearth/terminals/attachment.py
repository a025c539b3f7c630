"""A viewer of a terminal session: a reader at its own offset in the output stream.

Each attachment is sent from its own offset as fast as its consumer pulls, so a slow viewer
never stalls the shell or the other viewers. Its small event queue is bounded: resize and viewer
count events replace an older one of their kind instead of piling up. It sees its session only
as a :class:`Source`, defined here: the session imports its viewers, not the reverse.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncIterator
from typing import Protocol

from hearth.contract.terminals import (
    Event,
    Exited,
    Missed,
    Output,
    ReplayDone,
    Resized,
    ViewerCount,
)
from hearth.terminals.buffer import OutputBuffer
from hearth.terminals.flow import FlowControl

__all__ = ["Attachment", "Source"]

FRAME_BYTES = 256 * 1024  # the most output one Output event carries
# Bulk output (a PTY read of 2 KiB or more) waits LINGER seconds to gather into one frame of up to
# BATCH_BYTES: a PTY hands over at most 4 KiB a read, and a frame per read costs the server and the
# client more than the bytes do. Keystroke echoes are small and go out at once.
BATCH_BYTES = 32 * 1024
LINGER = 0.001
# Output is handed out at most WINDOW bytes past what the viewer's side acknowledged having sent
# (``ack``): flow control counts a viewer by what it delivered, not by what it was handed, which
# is what lets a socket sit between the session and the websocket (the session host).
WINDOW = 512 * 1024
_viewer_ids = itertools.count(1)


class Source(Protocol):
    """What an attachment views (a terminal session implements it): the output, who holds the
    reader back, and how the process ended; told when its viewer delivered output or left."""

    @property
    def buffer(self) -> OutputBuffer: ...
    @property
    def flow(self) -> FlowControl[Attachment]: ...
    @property
    def bulk(self) -> bool: ...  # output is streaming: worth gathering into bigger frames
    @property
    def alive(self) -> bool: ...
    @property
    def drained(self) -> bool: ...  # every byte the process wrote is in the buffer
    @property
    def exit_code(self) -> int | None: ...
    @property
    def exit_reason(self) -> str | None: ...
    @property
    def closed_reason(self) -> str | None: ...

    def flush_log(self) -> None:
        """Write gathered output to the session's log (a viewer is about to see it)."""

    def on_progress(self, attachment: Attachment) -> None:
        """``attachment`` acked output, or skipped what it missed."""

    def detach(self, attachment: Attachment) -> None:
        """``attachment`` is closed."""


class Attachment:
    def __init__(self, session: Source, since: int | None) -> None:
        buffer = session.buffer
        if since is not None and since > buffer.end:
            raise ValueError(f"since={since} is beyond the end of the output ({buffer.end})")
        start = buffer.start if since is None else since
        self.session = session
        self.viewer = next(_viewer_ids)  # names it across calls (a socket carries no objects)
        self.missed_bytes = max(0, buffer.start - start)
        self.replay_from = max(start, buffer.start)
        self.replay_bytes = buffer.end - self.replay_from
        self.offset = self.replay_from  # next byte to hand out
        self.acked = self.replay_from  # bytes before it were delivered (see ``ack``)
        self._replay_end = buffer.end
        self._replay_done = False
        self._exit_sent = False
        self._events: deque[Event] = deque()
        self._wake = asyncio.Event()
        self.closed = False

    @property
    def holding(self) -> bool:
        """It may hold the PTY reader back (see :mod:`hearth.terminals.flow`)."""
        return self.session.flow.holds(self)

    def ack(self, offset: int) -> None:
        """The viewer's side delivered the output before ``offset``: it counts as read."""
        if offset > self.acked:
            self.acked = min(offset, self.offset)
            self.session.on_progress(self)
            self._wake.set()

    def notify(self) -> None:
        self._wake.set()

    def push(self, event: Event) -> None:
        if isinstance(event, Resized | ViewerCount):
            for i, queued in enumerate(self._events):
                if type(queued) is type(event):
                    del self._events[i]
                    break
        self._events.append(event)
        self._wake.set()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._worth_lingering():
                await asyncio.sleep(LINGER)
            event = self.next_nowait()
            if event is not None:
                return event
            if self.closed or self._exit_sent:
                raise StopAsyncIteration
            self._wake.clear()
            await self._wake.wait()

    def _worth_lingering(self) -> bool:
        session = self.session
        pending = session.buffer.end - self.offset
        return (
            session.bulk
            and self._replay_done
            and not self._events
            and 0 < pending < BATCH_BYTES
            and session.alive
        )

    def next_nowait(self) -> Event | None:
        """The next event if one is ready (replay, then live output, then exit).

        The replay is exactly the output range ``hello`` announced, ``[replay_from,
        replay_end)``: what arrives meanwhile waits until after ``ReplayDone(replay_end)``, and a
        cut while replaying is reported in two parts, the replay's and the live output's."""
        if self._events:
            return self._events.popleft()
        session, buffer = self.session, self.session.buffer
        if not self._replay_done and self.offset >= self._replay_end:
            self._replay_done = True
            return ReplayDone(self._replay_end)
        if self.offset < buffer.start:
            resume = buffer.start if self._replay_done else min(buffer.start, self._replay_end)
            missed = resume - self.offset
            self.offset = self.acked = resume  # what was missed is not waited for
            session.on_progress(self)
            return Missed(missed, resume)
        if self.offset - self.acked >= WINDOW:
            return None  # an ack wakes it
        limit = (
            FRAME_BYTES if self._replay_done else min(FRAME_BYTES, self._replay_end - self.offset)
        )
        data = buffer.read(self.offset, limit)
        if data:
            session.flush_log()  # what a viewer has seen is in the log (SPEC §8)
            offset = self.offset
            self.offset += len(data)
            return Output(offset, data)
        if not session.alive and session.drained and not self._exit_sent:
            self._exit_sent = True
            return Exited(session.exit_code, session.exit_reason or session.closed_reason)
        return None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._wake.set()
            self.session.detach(self)

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> Attachment:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
