"""What every websocket of Hearth does around its own protocol: accept, count itself open, run
its two pumps, send under one lock, and close. (The web tier checks the Origin and the token.)

The two pumps, and any task either starts beside them, run in one task group the socket owns:

- ``to_host`` (client → session host) ends at the client's close: everything the client sent
  before it is forwarded. Only a failure cancels it, never the other pump's end.
- ``to_client`` (session host → client) ends when the host side has no more to say (a session
  exited): the socket is closed with ``end``, and ``to_host`` drains to the disconnect that
  follows. When ``to_host`` ends, everything else in the group is cancelled.
- Once the client has gone, what is sent to it is dropped, not raised: ``to_client`` keeps
  consuming while ``to_host`` drains, so neither pump can wait forever on the other.
- A lost session host closes with 1012 (the client comes back and resumes). Any other error is
  a bug and propagates: a ``RuntimeError`` is never taken for a client gone.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from hearth.errors import HearthError, HostUnavailable

__all__ = ["Gauge", "Socket"]

Pump = Callable[[], Awaitable[None]]


class Gauge(Protocol):
    """Where a socket counts itself while open (a Prometheus gauge's child, or the host's)."""

    def inc(self) -> None: ...

    def dec(self) -> None: ...


class Socket:
    """One websocket's lifetime: ``accept()`` (or ``refuse(exc)``), then ``async with socket:``
    (counted in ``gauge``) around ``run(to_client, to_host)``."""

    def __init__(self, ws: WebSocket, kind: str, gauge: Gauge) -> None:
        self.ws, self.kind = ws, kind
        self._gauge = gauge
        self._lock = asyncio.Lock()  # the pumps share one socket
        self._group: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"<Socket {self.kind} {'gone' if self.gone else 'open'}>"

    async def accept(self, subprotocol: str | None = None) -> None:
        await self.ws.accept(subprotocol=subprotocol)

    async def refuse(self, exc: HearthError, reason: str | None = None) -> None:
        await self.close(exc.close_code, reason or exc.message)

    async def __aenter__(self) -> Socket:
        self._gauge.inc()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._gauge.dec()

    @property
    def gone(self) -> bool:
        """Whether nothing sent can reach the client any more: either side closed, or the
        connection broke."""
        disconnected = WebSocketState.DISCONNECTED
        return disconnected in (self.ws.application_state, self.ws.client_state)

    async def receive(self) -> Message:
        return await self.ws.receive()

    async def send_text(self, text: str) -> bool:
        """Whether it was sent: False once the client has gone."""
        return await self._send({"type": "websocket.send", "text": text})

    async def send_bytes(self, data: bytes) -> bool:
        return await self._send({"type": "websocket.send", "bytes": data})

    async def send_json(self, message: dict[str, Any]) -> bool:
        return await self.send_text(json.dumps(message))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self._send({"type": "websocket.close", "code": code, "reason": reason[:120]})

    async def _send(self, message: Message) -> bool:
        async with self._lock:
            # Checked under the lock, so Starlette's "already closed" RuntimeError
            # (WebSocketDisconnected) can't arise: any RuntimeError from here is a bug.
            if self.gone:
                return False
            try:
                await self.ws.send(message)
            except WebSocketDisconnect:
                # Starlette's word for the server's send failing with OSError (uvicorn's
                # ClientDisconnected): the client's close came first, or the connection broke.
                # Its disconnect is queued for the receiving pump, which ends there.
                return False
            return True

    def start(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` beside the pumps, in their task group: cancelled when ``to_host`` ends,
        or when anything in the group fails."""
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
        """Run both pumps until the client has closed and all it sent is forwarded, then close
        (with ``end`` once ``to_client`` ended, 1012 if the session host was lost) unless the
        socket is gone already. A pump raising one of ``quiet`` ends the socket as with ``end``."""
        code, reason = end
        try:
            async with asyncio.TaskGroup() as self._group:
                self.start(self._to_client(to_client, end))
                self.start(self._to_host(to_host))
        except* HostUnavailable as lost:
            code, reason = HostUnavailable.close_code, lost.exceptions[0].args[0]
        except* quiet:
            pass
        finally:
            self._group = None
        await self.close(code, reason)

    async def _to_client(self, pump: Pump, end: tuple[int, str]) -> None:
        await pump()
        await self.close(*end)  # the server queues a disconnect for to_host to end at

    async def _to_host(self, pump: Pump) -> None:
        await pump()
        # The client has closed and what it sent is forwarded: the rest can reach no one.
        me = asyncio.current_task()
        for task in list(self._tasks):
            if task is not me:
                task.cancel()
