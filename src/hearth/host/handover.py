"""Terminal websockets handed to the session host by a web tier on the same machine.

The web tier checks a terminal websocket's Origin and token, then, before the handshake, sends
a duplicate of the connection's descriptor on the data directory's ``handover.sock`` (a datagram
socket, 0600) under a random ticket, and calls ``sockets.terminal`` with that ticket and the
request that opened it. The host answers the handshake and serves the socket itself, with the
same uvicorn protocol and the same code as the web tier (:mod:`hearth.websocket.terminal`):
keystrokes and output no longer cross the web process, and the socket outlives a web tier's
restart. The call's stream ends when the socket does; the web tier keeps its own duplicate until
then, to close the socket with 1012 should this host be lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket as sockets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from uvicorn.server import ServerState

from hearth.contract.api import SocketsAPI, TerminalsAPI
from hearth.contract.place import HostPlace
from hearth.contract.terminals import TerminalSocket
from hearth.websocket.protocol import NoDelayWebSocketProtocol, ws_max_size
from hearth.websocket.socket import Socket
from hearth.websocket.terminal import serve_terminal

__all__ = ["Handovers"]

log = logging.getLogger("hearth.host")

TAKE_TIMEOUT = 10.0  # seconds a call waits for its descriptor
UNCLAIMED = 30.0  # seconds a descriptor waits for its call (its web tier may have died)
_TICKET = "hearth.ticket"


@dataclass(frozen=True)
class _Ticket:
    user: str
    id: str
    socket: TerminalSocket


class _Protocol(NoDelayWebSocketProtocol):
    """A handed-over connection: its request is replayed to it, its app learns the ticket."""

    def __init__(
        self, handovers: Handovers, ticket: _Ticket, heartbeat: float, shut: sockets.socket
    ) -> None:
        super().__init__(config=handovers.config, server_state=handovers.state, app_state={})
        self.ticket = ticket
        self.shut = shut
        self.ping_interval, self.ping_timeout = heartbeat, 2 * heartbeat
        self.closed: asyncio.Future[None] = self.loop.create_future()

    def handle_connect(self, event: object) -> None:
        super().handle_connect(event)
        if not self.handshake_complete:
            self.scope["extensions"][_TICKET] = {"ticket": self.ticket}

    def connection_lost(self, exc: Exception | None) -> None:
        # The web tier holds a duplicate of the descriptor: without a shutdown, closing ours
        # would leave the connection open. (Through a duplicate of our own: the event loop's
        # may be closed by now.)
        with contextlib.suppress(OSError):
            self.shut.shutdown(sockets.SHUT_RDWR)
        self.shut.close()
        super().connection_lost(exc)
        if not self.closed.done():
            self.closed.set_result(None)


class _Count:
    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> None:
        self.value += 1

    def dec(self) -> None:
        self.value -= 1


class Handovers:
    """``async with Handovers(place, terminals, max_input_bytes)``: takes descriptors on the
    place's handover socket and serves their websockets (the contract's ``SocketsAPI``)."""

    def __init__(self, place: HostPlace, terminals: TerminalsAPI, max_input_bytes: int) -> None:
        self.place = place
        self.terminals = terminals
        self.config = uvicorn.Config(
            self._app,
            interface="asgi3",
            ws=_Protocol,
            ws_per_message_deflate=False,
            ws_max_size=ws_max_size(max_input_bytes),
            proxy_headers=False,
            lifespan="off",
            access_log=False,
            log_config=None,
        )
        self.config.load()
        self.state = ServerState()
        self.open = _Count()
        self.streamed = 0
        self._arrived: dict[int, tuple[int, float]] = {}  # ticket → (descriptor, when)
        self._waiting: dict[int, asyncio.Future[int]] = {}
        self._sock: sockets.socket | None = None

    async def __aenter__(self) -> Handovers:
        sock = sockets.socket(sockets.AF_UNIX, sockets.SOCK_DGRAM | sockets.SOCK_CLOEXEC)
        sock.setblocking(False)
        self.place.handover.unlink(missing_ok=True)
        old = os.umask(0o177)
        try:
            with self.place.socket_address(self.place.handover) as address:
                sock.bind(address)
        finally:
            os.umask(old)
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._receive)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self.place.handover.unlink(missing_ok=True)
        for fd, _ in self._arrived.values():
            os.close(fd)
        self._arrived.clear()
        for connection in list(self.state.connections):
            connection.shutdown()  # 1012: the clients come back and resume
        if self.state.tasks:
            _, pending = await asyncio.wait(self.state.tasks, timeout=5)
            for task in pending:
                task.cancel()

    async def terminal(
        self,
        user: str,
        id: str,
        ticket: int,
        request: str,
        socket: TerminalSocket,
        heartbeat: float,
    ) -> AsyncIterator[dict[str, Any]]:
        sock = sockets.socket(fileno=await self._take(ticket))
        sock.setblocking(False)
        protocol = _Protocol(self, _Ticket(user, id, socket), heartbeat, sock.dup())
        try:
            await asyncio.get_running_loop().connect_accepted_socket(lambda: protocol, sock)
        except BaseException:
            sock.close()
            protocol.shut.close()
            raise
        protocol.data_received(request.encode("latin-1"))
        return _until(protocol.closed)

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        ticket: _Ticket = scope["extensions"][_TICKET]["ticket"]
        ws = WebSocket(scope, receive, send)
        socket = Socket(ws, "terminal", self.open)
        await socket.accept()
        await serve_terminal(
            socket, self.terminals, ticket.user, ticket.id, ticket.socket, self._sent
        )

    def _sent(self, n: int) -> None:
        self.streamed += n

    def _receive(self) -> None:
        assert self._sock is not None
        now = asyncio.get_running_loop().time()
        while True:
            try:
                data, fds, flags, _ = sockets.recv_fds(self._sock, 64, 4)
            except (BlockingIOError, InterruptedError):
                break
            if len(data) != 8 or len(fds) != 1 or flags & sockets.MSG_CTRUNC:
                for fd in fds:
                    os.close(fd)
                log.warning("dropped a malformed hand-over", extra={"bytes": len(data)})
                continue
            ticket = int.from_bytes(data, "big")
            waiter = self._waiting.pop(ticket, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(fds[0])
            else:
                self._arrived[ticket] = (fds[0], now)
        for ticket, (fd, when) in list(self._arrived.items()):
            if now - when > UNCLAIMED:
                del self._arrived[ticket]
                os.close(fd)

    async def _take(self, ticket: int) -> int:
        if (arrived := self._arrived.pop(ticket, None)) is not None:
            return arrived[0]
        waiter = self._waiting[ticket] = asyncio.get_running_loop().create_future()
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), TAKE_TIMEOUT)
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                os.close(waiter.result())
            raise
        finally:
            self._waiting.pop(ticket, None)


async def _until(closed: asyncio.Future[None]) -> AsyncIterator[dict[str, Any]]:
    """An events stream with no events: its end is the socket's. Cancelled (the web tier went
    away), it leaves the socket served."""
    await asyncio.shield(closed)
    nothing: tuple[dict[str, Any], ...] = ()
    for event in nothing:
        yield event


def _satisfies(handovers: Handovers) -> SocketsAPI:
    return handovers  # mypy checks here that the host keeps the contract
