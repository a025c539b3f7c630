"""``WS /api/kernels/{id}/channels`` (SPEC §10): the Jupyter messaging protocol, relayed to the
kernel session's connection in the session host.

A client that offers the ``v1.kernel.websocket.jupyter.org`` subprotocol gets it, and its frames
pass through as they are (the host speaks v1); any other gets Jupyter's legacy JSON form,
converted here. A message that can't be understood is not sent: the client gets a ``stream``
message on stderr saying why, as Jupyter Server reports what it refuses.
"""

from __future__ import annotations

import contextlib
import logging

from fastapi import APIRouter, WebSocket

from hearth.contract.api import Channels, KernelsAPI
from hearth.contract.streams import StreamClosed
from hearth.errors import BadRequest, HearthError
from hearth.protocol import FrameError
from hearth.protocol.jupyter import (
    V1_PROTOCOL,
    decode_legacy,
    decode_v1,
    encode_legacy,
    encode_v1,
    own_message,
)
from hearth.server.auth import websocket_user
from hearth.server.metrics import Metrics
from hearth.websocket.socket import Socket

__all__ = ["router"]

log = logging.getLogger("hearth.server.jupyter")
router = APIRouter()


@router.websocket("/api/kernels/{kernel_id}/channels")
async def channels(ws: WebSocket, kernel_id: str) -> None:
    kernels: KernelsAPI = ws.app.state.kernels
    metrics: Metrics = ws.app.state.metrics
    v1 = V1_PROTOCOL in ws.scope.get("subprotocols", [])
    socket = Socket(ws, "jupyter", metrics.websockets_open.labels("jupyter"))
    try:
        await socket.accept(subprotocol=V1_PROTOCOL if v1 else None)
        user = websocket_user(ws)
        client_session = ws.query_params.get("session_id") or None
        if client_session is not None and len(client_session) > 256:
            raise BadRequest("session_id is a Jupyter client's session id: at most 256 characters")
        relay = await kernels.channels(user, kernel_id, client_session)
    except HearthError as exc:
        await socket.refuse(exc)
        return
    async with contextlib.aclosing(relay), socket:
        await _Relay(socket, relay, v1, metrics).serve()


class _Relay:
    def __init__(self, socket: Socket, relay: Channels, v1: bool, metrics: Metrics) -> None:
        self.socket, self.relay, self.v1 = socket, relay, v1
        self.streamed = metrics.bytes_streamed.labels("jupyter")

    async def serve(self) -> None:
        await self.socket.run(
            self._to_client,
            self._to_kernel,
            end=(1000, "kernel session ended"),
            quiet=(StreamClosed,),  # the relay's stream closed under a send: the kernel stays
        )

    async def _to_client(self) -> None:
        while (message := await self.relay.next()) is not None:
            if self.v1:
                if await self.socket.send_bytes(message):
                    self.streamed.inc(len(message))
                continue
            try:
                frame = encode_legacy(*decode_v1(message))
            except (FrameError, ValueError):
                log.info("dropped a kernel message that is not JSON")
                continue
            sent = await (
                self.socket.send_text(frame)
                if isinstance(frame, str)
                else self.socket.send_bytes(frame)
            )
            if sent:
                self.streamed.inc(len(frame))

    async def _to_kernel(self) -> None:
        while True:
            message = await self.socket.receive()
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
        if self.v1:
            await self.socket.send_bytes(encode_v1("iopub", parts))
        else:
            frame = encode_legacy("iopub", parts)
            assert isinstance(frame, str)
            await self.socket.send_text(frame)
