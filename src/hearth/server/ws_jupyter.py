"""``WS /api/kernels/{id}/channels`` (SPEC §10): the Jupyter messaging protocol, relayed to the
kernel session's connection in the session host.

A client that offers the ``v1.kernel.websocket.jupyter.org`` subprotocol gets it, and its frames
pass through as they are (the host speaks v1); any other gets Jupyter's legacy JSON form,
converted here. A message that can't be understood is not sent: the client gets a ``stream``
message on stderr saying why, as Jupyter Server reports what it refuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from hearth.contract.streams import StreamClosed
from hearth.errors import BadRequest, HearthError, HostUnavailable
from hearth.protocol import FrameError
from hearth.protocol.jupyter import (
    V1_PROTOCOL,
    decode_legacy,
    decode_v1,
    encode_legacy,
    encode_v1,
    own_message,
)
from hearth.server.auth import check_origin, current_user
from hearth.server.host_client import RemoteChannels, RemoteKernels
from hearth.server.metrics import Metrics

__all__ = ["router"]

log = logging.getLogger("hearth.server.jupyter")
router = APIRouter()


@router.websocket("/api/kernels/{kernel_id}/channels")
async def channels(ws: WebSocket, kernel_id: str) -> None:
    kernels: RemoteKernels = ws.app.state.kernels
    metrics: Metrics = ws.app.state.metrics
    v1 = V1_PROTOCOL in ws.scope.get("subprotocols", [])
    await ws.accept(subprotocol=V1_PROTOCOL if v1 else None)
    try:
        check_origin(ws, ws.app.state.settings.allowed_origins)
        user = current_user(ws)
        client_session = ws.query_params.get("session_id") or None
        if client_session is not None and len(client_session) > 256:
            raise BadRequest("session_id is a Jupyter client's session id: at most 256 characters")
        relay = await kernels.channels(user, kernel_id, client_session)
    except HearthError as exc:
        await ws.close(exc.close_code, exc.message[:120])
        return
    metrics.websockets_open.labels("jupyter").inc()
    try:
        await _Relay(ws, relay, v1, metrics).serve()
    finally:
        metrics.websockets_open.labels("jupyter").dec()
        await relay.aclose()


class _Relay:
    def __init__(self, ws: WebSocket, relay: RemoteChannels, v1: bool, metrics: Metrics) -> None:
        self.ws, self.relay, self.v1 = ws, relay, v1
        self.streamed = metrics.bytes_streamed.labels("jupyter")
        self.lock = asyncio.Lock()  # the two pumps share one socket

    async def serve(self) -> None:
        close_code, reason = 1000, "kernel session ended"
        try:
            async with asyncio.TaskGroup() as tg:
                pumps = [tg.create_task(self._to_client()), tg.create_task(self._to_kernel())]
                for pump in pumps:
                    pump.add_done_callback(lambda _: [p.cancel() for p in pumps])
        except* HostUnavailable as lost:
            close_code, reason = 1012, lost.exceptions[0].args[0][:120]
        except* (WebSocketDisconnect, StreamClosed, RuntimeError, OSError):
            pass  # the client went away; the kernel stays
        if self.ws.application_state != WebSocketState.DISCONNECTED:
            with contextlib.suppress(Exception):
                await self.ws.close(close_code, reason)

    async def _to_client(self) -> None:
        while (message := await self.relay.next()) is not None:
            if self.v1:
                async with self.lock:
                    await self.ws.send_bytes(message)
                self.streamed.inc(len(message))
                continue
            try:
                frame = encode_legacy(*decode_v1(message))
            except (FrameError, ValueError):
                log.info("dropped a kernel message that is not JSON")
                continue
            async with self.lock:
                if isinstance(frame, str):
                    await self.ws.send_text(frame)
                else:
                    await self.ws.send_bytes(frame)
            self.streamed.inc(len(frame))

    async def _to_kernel(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("bytes") if message.get("bytes") is not None else message.get("text")
            try:
                if self.v1:
                    if not isinstance(raw, bytes):
                        raise FrameError(
                            f"this connection speaks {V1_PROTOCOL}: send binary frames"
                        )
                    channel, _ = decode_v1(raw)
                    frame = raw
                else:
                    channel, parts = decode_legacy(raw or "")
                    frame = encode_v1(channel, parts)
                if channel == "iopub":
                    raise FrameError("iopub carries the kernel's messages; send on shell")
            except FrameError as exc:
                await self._refused(str(exc))
                continue
            await self.relay.send(frame)

    async def _refused(self, why: str) -> None:
        """Tell the client on IOPub's stderr, as Jupyter Server tells of what it won't send."""
        content = {"name": "stderr", "text": f"Hearth did not send a message: {why}.\n"}
        parts = own_message("stream", content)
        async with self.lock:
            if self.v1:
                await self.ws.send_bytes(encode_v1("iopub", parts))
            else:
                frame = encode_legacy("iopub", parts)
                assert isinstance(frame, str)
                await self.ws.send_text(frame)
