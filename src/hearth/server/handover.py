"""The web tier's side of handing a terminal websocket to the session host (see
:mod:`hearth.host.handover`): the descriptor goes on the host's ``handover.sock``, the call on
its link. This process keeps a duplicate of the descriptor until the socket ends, to close it
with 1012 ("service restart": the client comes back and resumes) should the host be lost.

A socket that can't be handed over (TLS, a host elsewhere, a client that spoke before the
handshake) is served here, relayed through the host's link, as before.
"""

from __future__ import annotations

import array
import contextlib
import logging
import secrets
import socket as sockets
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any

from starlette.websockets import WebSocket
from websockets.frames import Close, Frame, Opcode

from hearth.contract.place import HostPlace
from hearth.contract.terminals import TerminalSocket
from hearth.errors import HearthError, HostUnavailable
from hearth.server.host_client import HostClient
from hearth.tasks import TaskSet
from hearth.websocket.protocol import HAND_OVER

__all__ = ["HandOver"]

log = logging.getLogger("hearth.server.ws")


class HandOver:
    """``async with HandOver(client, place, heartbeat)``; closing it lets go of the sockets
    handed over (they stay with the host)."""

    def __init__(self, client: HostClient, place: HostPlace, heartbeat: float) -> None:
        self.client, self.place, self.heartbeat = client, place, heartbeat
        self._guards = TaskSet("the terminal websockets handed to the host")
        self._sock = sockets.socket(sockets.AF_UNIX, sockets.SOCK_DGRAM | sockets.SOCK_CLOEXEC)
        self._sock.setblocking(False)

    async def __aenter__(self) -> HandOver:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._guards.aclose()
        self._sock.close()

    async def terminal(self, ws: WebSocket, user: str, id: str, params: TerminalSocket) -> bool:
        """Hand a checked, not yet accepted terminal websocket to the host: False if it can't
        be, and the socket is still the caller's to serve."""
        take = ws.scope.get("extensions", {}).get(HAND_OVER, {}).get("take")
        if take is None or not self.client.connected:
            return False
        ticket = secrets.randbits(63)
        request: list[bytes] = []

        def send(fd: int, opening: bytes) -> None:
            with self.place.socket_address(self.place.handover) as address:
                # not socket.send_fds: before Python 3.12 it drops the address
                rights = [(sockets.SOL_SOCKET, sockets.SCM_RIGHTS, array.array("i", [fd]))]
                self._sock.sendmsg([ticket.to_bytes(8, "big")], rights, 0, address)
            request.append(opening)

        kept: sockets.socket | None = take(send)
        if kept is None:
            return False
        try:
            ended = await self.client.sockets.terminal(
                user, id, ticket, request[0].decode("latin-1"), params, self.heartbeat
            )
        except BaseException as exc:
            _refuse(kept, exc)
            kept.close()
            if not isinstance(exc, Exception):
                raise
            return True
        self._guards.spawn(self._guard(kept, ended))
        return True

    async def _guard(self, kept: sockets.socket, ended: AsyncIterator[dict[str, Any]]) -> None:
        try:
            async for _ in ended:
                pass
        except HostUnavailable as lost:
            _send(kept, close_frame(HostUnavailable.close_code, str(lost)))
        except Exception as exc:
            log.warning("a handed-over socket's stream failed", extra={"error": repr(exc)})
        finally:
            kept.close()  # no shutdown: a host still serving the socket keeps it open


def close_frame(code: int, reason: str) -> bytes:
    """A server's close frame (unmasked), to write where no protocol object is left."""
    payload = Close(code, reason.encode()[:120].decode(errors="ignore")).serialize()
    return Frame(Opcode.CLOSE, payload).serialize(mask=False)


def _refuse(kept: sockets.socket, exc: BaseException) -> None:
    """The host did not take the socket, and nothing was said on it yet: an HTTP answer."""
    status, message = 503, "The session host is unavailable; retry."
    if isinstance(exc, HearthError):
        status, message = exc.status_code, exc.message
    else:
        log.error("a terminal websocket could not be handed to the session host", exc_info=exc)
    body = message.encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    _send(kept, head.encode() + body)


def _send(kept: sockets.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        kept.setblocking(False)
        kept.send(data)
