"""Streams on the host's socket, either way: the sender's credit and the receiver's inbox.

A stream is many frames under one id on a connection that all sessions share, so no stream may
fill the socket for the others: a sender has at most ``WINDOW`` bytes in flight past what its
receiver acknowledged having taken (``ack``), and a receiver holds at most that much.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["ACK_STEP", "WINDOW", "Credit", "Inbox", "StreamClosed"]

WINDOW = 1024 * 1024
# Acks go out every ACK_STEP bytes taken: then at most ACK_STEP < WINDOW are taken but not yet
# acked, so a sender never waits on them. (An ack each time the inbox ran dry cost a write, and
# a wake-up of the sender's process, per event of a small stream: two per execute.)
ACK_STEP = WINDOW // 8

T = TypeVar("T")


class StreamClosed(Exception):
    """The other side closed the stream (or the connection went)."""


class Credit:
    """The sender's side: ``spend`` waits while more than WINDOW bytes are unacknowledged."""

    def __init__(self) -> None:
        self.sent = 0
        self.acked = 0
        self._more = asyncio.Event()
        self.closed = False

    async def spend(self, size: int) -> None:
        while self.sent - self.acked >= WINDOW and not self.closed:
            self._more.clear()
            await self._more.wait()
        if self.closed:
            raise StreamClosed
        self.sent += size

    def ack(self, offset: int) -> None:
        if offset > self.acked:
            self.acked = min(offset, self.sent)
            self._more.set()

    def close(self) -> None:
        self.closed = True
        self._more.set()


class Inbox(Generic[T]):
    """The receiver's side: items in order, then the end (``None``) or the error that ended it.

    With ``send_ack``, what the reader takes is acknowledged by size (cumulative); without, the
    reader acknowledges by itself (a terminal viewer acks output once it reached the browser)."""

    def __init__(self, send_ack: Callable[[int], None] | None = None) -> None:
        self._items: deque[tuple[T, int]] = deque()
        self._wake = asyncio.Event()
        self._send_ack = send_ack
        self._taken = 0
        self._acked = 0
        self._end: BaseException | None = None
        self.ended = False

    def put(self, item: T, size: int) -> None:
        self._items.append((item, size))
        self._wake.set()

    def finish(self, error: BaseException | None = None) -> None:
        if not self.ended:
            self.ended = True
            self._end = error
            self._wake.set()

    @property
    def empty(self) -> bool:
        return not self._items

    async def get(self) -> T | None:
        while not self._items:
            if self.ended:
                if self._end is not None:
                    raise self._end
                return None
            self._wake.clear()
            await self._wake.wait()
        item, size = self._items.popleft()
        self._taken += size
        if self._send_ack is not None and self._taken - self._acked >= ACK_STEP:
            self._acked = self._taken
            self._send_ack(self._taken)
        return item
