"""Run the app under uvicorn with the transport settings terminals need."""

from __future__ import annotations

import socket
from asyncio import BaseTransport
from pathlib import Path

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

from hearth.config import Settings
from hearth.server.app import create_app
from hearth.server.host_client import HostClient

__all__ = ["NoDelayWebSocketProtocol", "server_config", "ws_max_size"]


class NoDelayWebSocketProtocol(WebSocketsSansIOProtocol):
    """Websockets with TCP_NODELAY: without it every second small frame (a keystroke echo)
    waits for the peer's delayed ACK, ~40 ms."""

    def connection_made(self, transport: BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)

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


def server_config(
    settings: Settings, config_file: Path | None = None, host: HostClient | None = None
) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(settings, config_file=config_file, host=host),
        host=settings.host,
        port=settings.port,
        ws=NoDelayWebSocketProtocol,
        ws_ping_interval=settings.heartbeat_interval,
        ws_ping_timeout=2 * settings.heartbeat_interval,
        ws_per_message_deflate=False,  # terminal output is latency-bound; compression costs CPU
        ws_max_size=ws_max_size(settings.max_input_bytes),
        access_log=False,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
