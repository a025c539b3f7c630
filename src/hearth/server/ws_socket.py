"""What every websocket of Hearth does around its own protocol: accept, check the Origin and
the token, count itself open, run its two pumps, send under one lock, and close.

The two pumps (client → session host, session host → client) run in one task group: the
first to end cancels the other, and both are awaited before the socket closes. A lost session
host closes the socket with 1012 (the client comes back and resumes); a client that went away
ends it quietly. Any other error, a ``RuntimeError`` included, is a bug and propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from hearth.errors import HearthError, HostUnavailable
from hearth.server.auth import check_origin, current_user
from hearth.server.metrics import Metrics

__all__ = ["Socket"]

Pump = Callable[[], Awaitable[None]]
T = TypeVar("T")
_GONE = (WebSocketDisconnect, OSError)  # the client went away: not an error of ours


class Socket:
    """One websocket's lifetime: ``accept()``, then ``async with socket:`` (counted in
    ``websockets_open`` by ``kind``) around ``run(to_client, to_host)``."""

    def __init__(self, ws: WebSocket, kind: str, metrics: Metrics) -> None:
        self.ws, self.kind = ws, kind
        self._gauge = metrics.websockets_open.labels(kind)
        self._lock = asyncio.Lock()  # the two pumps share one socket
        self._tasks: set[asyncio.Task[None]] = set()
        self._group: asyncio.TaskGroup | None = None

    def __repr__(self) -> str:
        return f"<Socket {self.kind} {self.ws.application_state.name.lower()}>"

    async def accept(self, subprotocol: str | None = None) -> str:
        """Accept, then check the Origin and the token: the user's name, or a ``HearthError``
        to close with (see :meth:`refuse`)."""
        await self.ws.accept(subprotocol=subprotocol)
        check_origin(self.ws, self.ws.app.state.settings.allowed_origins)
        return current_user(self.ws)

    async def refuse(self, exc: HearthError, reason: str | None = None) -> None:
        await self.ws.close(exc.close_code, (reason or exc.message)[:120])

    async def __aenter__(self) -> Socket:
        self._gauge.inc()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._gauge.dec()

    @property
    def closed(self) -> bool:
        """Whether either side has closed: sending can no longer reach the client."""
        disconnected = WebSocketState.DISCONNECTED
        return disconnected in (self.ws.application_state, self.ws.client_state)

    async def receive(self) -> Message:
        return await self._closing(self.ws.receive())

    async def send_text(self, text: str) -> None:
        async with self._lock:
            await self._closing(self.ws.send_text(text))

    async def send_bytes(self, data: bytes) -> None:
        async with self._lock:
            await self._closing(self.ws.send_bytes(data))

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.send_text(json.dumps(message))

    async def close(self, code: int, reason: str = "") -> None:
        async with self._lock:
            await self._closing(self.ws.close(code, reason))

    async def _closing(self, call: Coroutine[Any, Any, T]) -> T:
        """Starlette raises ``RuntimeError`` on a socket already closed: that one alone means
        the client went away (``WebSocketDisconnect``); any other is raised as it is."""
        try:
            return await call
        except RuntimeError:
            if not self.closed:
                raise
            raise WebSocketDisconnect(1006) from None

    def start(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` beside the pumps (only while they run): cancelled when they end."""
        if self._group is None:
            coro.close()
            raise RuntimeError(f"Cannot start a task on {self!r}: its pumps are not running.")
        task = self._group.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(
        self,
        to_client: Pump,
        to_host: Pump,
        *,
        end: tuple[int, str] = (1000, ""),
        quiet: tuple[type[Exception], ...] = (),
    ) -> None:
        """Run both pumps until one ends, then close with ``end`` (1012 if the session host was
        lost), unless either side has closed already. A pump that raises one of ``quiet`` ends
        as if the client had gone."""
        code, reason = end
        gone: tuple[type[Exception], ...] = (*_GONE, *quiet)
        try:
            async with asyncio.TaskGroup() as self._group:
                self.start(self._pump(to_client))
                self.start(self._pump(to_host))
        except* HostUnavailable as lost:
            code, reason = HostUnavailable.close_code, lost.exceptions[0].args[0][:120]
        except* gone:
            pass
        finally:
            self._group = None
        if not self.closed:
            with contextlib.suppress(*_GONE):
                await self.close(code, reason)

    async def _pump(self, body: Pump) -> None:
        try:
            await body()
        finally:
            me = asyncio.current_task()
            for task in list(self._tasks):
                if task is not me:
                    task.cancel()
