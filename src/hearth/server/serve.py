"""Run the app under uvicorn with the transport settings terminals need."""

from __future__ import annotations

from pathlib import Path

import uvicorn

from hearth.config import Settings
from hearth.server.app import create_app
from hearth.server.host_client import HostClient
from hearth.websocket.protocol import NoDelayWebSocketProtocol, ws_max_size

__all__ = ["NoDelayWebSocketProtocol", "server_config", "ws_max_size"]


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
