"""uvicorn's websocket protocol with what terminals need: TCP_NODELAY, a shutdown that can't
crash, and a connection the app can hand to another process before its handshake.

A hand-over gives the session host a duplicate of the connection's descriptor and the request
that opened it; the host answers the handshake and serves the socket itself, so a keystroke's
echo crosses one process fewer, and a restart of the web server no longer cuts the connection.
"""

from __future__ import annotations

import os
import socket
from asyncio import BaseTransport
from collections.abc import Callable

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

__all__ = ["HAND_OVER", "NoDelayWebSocketProtocol", "SendSocket", "ws_max_size"]

HAND_OVER = (
    "hearth.hand_over"  # the scope's extension: {"take": NoDelayWebSocketProtocol.hand_over}
)

# sends a connection's descriptor and its request elsewhere; raises OSError if it can't
SendSocket = Callable[[int, bytes], None]


class NoDelayWebSocketProtocol(WebSocketsSansIOProtocol):
    """Websockets with TCP_NODELAY: without it every second small frame (a keystroke echo)
    waits for the peer's delayed ACK, ~40 ms."""

    def connection_made(self, transport: BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)

    def handle_connect(self, event: object) -> None:
        super().handle_connect(event)  # type: ignore[arg-type]
        if not self.handshake_complete:  # the app runs (it starts as a task: the scope is ours)
            self.scope["extensions"][HAND_OVER] = {"take": self.hand_over}

    def hand_over(self, send: SendSocket) -> socket.socket | None:
        """Before the handshake: send a duplicate of the connection (and its request) with
        ``send``, then let go of it here without a word. The connection's own duplicate, for
        the caller to keep or close; None if it can't be handed over (TLS, bytes past the
        request, or ``send`` failed), and the connection is still this protocol's."""
        raw = self.transport.get_extra_info("socket")
        if raw is None or self.scheme != "ws" or self.handshake_complete or self.conn.reader.buffer:
            return None
        self.transport.pause_reading()
        fd = os.dup(raw.fileno())
        try:
            send(fd, self.request.serialize())
        except OSError:
            os.close(fd)
            self.transport.resume_reading()
            return None
        kept = socket.socket(fileno=fd)
        # uvicorn must say nothing more on it: no 500 when the app returns without accepting
        self.handshake_complete = self.close_sent = True
        self.transport.abort()  # closes this process's descriptor only: no shutdown, no FIN
        return kept

    def shutdown(self) -> None:
        if self.handshake_complete and not self.close_sent and self.conn.state is not State.OPEN:
            # The peer began the closing handshake while the app was blocked sending to it:
            # nothing is left to say, hang up (uvicorn would raise InvalidState and crash the
            # server's shutdown).
            self.stop_keepalive()
            self.queue.put_nowait({"type": "websocket.disconnect", "code": 1012})
            self.transport.abort()  # close() would first wait to flush what the peer won't read
            return
        super().shutdown()


def ws_max_size(max_input_bytes: int) -> int:
    """The largest websocket message read: a text input frame of ``max_input_bytes`` with every
    byte escaped in its JSON (``\\u00XX``, 6 bytes), plus room for the frame around it. Input
    over ``max_input_bytes`` in a message under this bound gets an error frame (the connection
    stays); a larger message is closed with 1009, so one connection never makes the server hold
    more than this."""
    return 6 * max_input_bytes + 64 * 1024
