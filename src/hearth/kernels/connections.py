"""Jupyter clients' connections to kernel sessions, kept by name for their client's return.

A client that names its Jupyter session gets back the connection it left, if it comes back
within ``keep_for`` seconds (``KEEP_FOR``: see :mod:`hearth.kernels.channels`), or takes over the
one it still holds (its old websocket's end may not have reached the host yet). ``async with``:
the connections still kept end with the block.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Protocol, Self

from hearth.kernels.channels import KEEP_FOR, ChannelRelay
from hearth.kernels.session import HostedKernelSession

__all__ = ["Connections"]

log = logging.getLogger("hearth.kernels.channels")

Key = tuple[str, str, str]  # (user, session id, the client's Jupyter session)


class Timer(Protocol):
    def cancel(self) -> None: ...


CallLater = Callable[[float, Callable[[], None]], Timer]


def _call_later(delay: float, callback: Callable[[], None]) -> Timer:
    return asyncio.get_running_loop().call_later(delay, callback)


class Connections:
    """``call_later``: sets the timer of a kept connection (the event loop's, unless a test
    drives the time)."""

    def __init__(self, *, keep_for: float = KEEP_FOR, call_later: CallLater = _call_later) -> None:
        self.keep_for = keep_for
        self._call_later = call_later
        self._named: dict[Key, ChannelRelay] = {}  # attached or kept
        self._timers: dict[Key, Timer] = {}  # of those kept
        self._tasks: asyncio.TaskGroup | None = None  # relays closing

    async def __aenter__(self) -> Self:
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for timer in self._timers.values():
            timer.cancel()
        for relay in self._named.values():
            self._close_later(relay)
        self._named.clear()
        self._timers.clear()
        assert self._tasks is not None
        await self._tasks.__aexit__(exc_type, exc, tb)

    @property
    def kept(self) -> int:
        """Named connections whose websocket is gone, waiting for their client."""
        return len(self._timers)

    def connect(self, session: HostedKernelSession, key: Key | None) -> ChannelRelay:
        """A connection to ``session``'s channels: the one kept under ``key`` if it still follows
        this session, else a new one (kept under ``key``, if given, once its websocket goes)."""
        if key is None:
            return ChannelRelay(session)
        relay = self._named.pop(key, None)
        if (timer := self._timers.pop(key, None)) is not None:
            timer.cancel()
        if relay is not None and relay.session is session and relay.following:
            self._named[key] = relay
            return relay
        if relay is not None:
            self._close_later(relay)
        relay = self._named[key] = ChannelRelay(session, lambda r: self._detached(key, r))
        return relay

    def _detached(self, key: Key, relay: ChannelRelay) -> None:
        """Its websocket gone, a named connection is kept ``keep_for`` seconds, if it lives."""
        if self._named.get(key) is not relay:
            return
        if not relay.following:
            del self._named[key]
            return
        self._timers[key] = self._call_later(self.keep_for, lambda: self._expire(key, relay))

    def _expire(self, key: Key, relay: ChannelRelay) -> None:
        if self._named.get(key) is relay:
            del self._named[key]
            self._timers.pop(key, None)
        self._close_later(relay)

    def _close_later(self, relay: ChannelRelay) -> None:
        assert self._tasks is not None, "Connections are used inside their `async with` only."
        self._tasks.create_task(self._close(relay))

    @staticmethod
    async def _close(relay: ChannelRelay) -> None:
        try:
            await relay.close()
        except Exception:  # its follower's error: the connection is over all the same
            log.exception("a kept connection ended with an error")
