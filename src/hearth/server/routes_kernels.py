"""Kernel sessions over HTTP and websockets (SPEC §4.2): a thin skin over ``KernelService``.

Execution answers come three ways from the same events: folded into one JSON answer, as
newline-delimited JSON (``?stream=true``), or as websocket frames tagged with a request id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import mimetypes
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, WebSocket
from fastapi.responses import JSONResponse, Response, StreamingResponse

from hearth.contract.api import KernelsAPI
from hearth.errors import HearthError
from hearth.protocol import FrameError
from hearth.protocol.kernels import (
    ExecuteFrame,
    InterruptFrame,
    KernelCreate,
    KernelExecute,
    KernelState,
    decode_kernel_frame,
)
from hearth.protocol.outputs import ExecutionEvent, Outputs, done_event
from hearth.server.auth import CurrentUser, websocket_user
from hearth.server.metrics import Metrics
from hearth.server.validation import ValidatedRoute
from hearth.websocket.socket import Socket

__all__ = ["router"]

log = logging.getLogger("hearth.server.kernels")
router = APIRouter(prefix="/api/v1", tags=["kernels"], route_class=ValidatedRoute)


async def _kernels(request: Request) -> KernelsAPI:
    service: KernelsAPI = request.app.state.kernels
    return service


Kernels = Annotated[KernelsAPI, Depends(_kernels)]


_EXECUTE = (
    "The execution's answer; with `?stream=true`, its events as newline-delimited JSON, "
    "ending with a `done` event."
)


@router.post("/sessions", status_code=201)
async def create(
    user: CurrentUser,
    kernels: Kernels,
    body: Annotated[KernelCreate | None, Body()] = None,
) -> JSONResponse:
    body = body or KernelCreate.model_validate({})  # all optional, so is the body (§4.1)
    files = [f.model_dump(exclude_none=True) for f in body.files]
    info, created = await kernels.create(user, body.session_id, files, body.kernel_name)
    return JSONResponse(_shown(info), status_code=201 if created else 200)


def _shown(state: KernelState) -> dict[str, Any]:
    return state.model_dump(mode="json", exclude_none=True)


@router.get("/sessions", response_model_exclude_none=True)
async def list_sessions(user: CurrentUser, kernels: Kernels) -> list[KernelState]:
    return await kernels.sessions(user)


@router.get("/sessions/{session_id}", response_model_exclude_none=True)
async def get(session_id: str, user: CurrentUser, kernels: Kernels) -> KernelState:
    return await kernels.get(user, session_id)


@router.delete("/sessions/{session_id}", status_code=204)
async def terminate(session_id: str, user: CurrentUser, kernels: Kernels) -> Response:
    await kernels.terminate(user, session_id)
    return Response(status_code=204)


@router.post(
    "/sessions/{session_id}/execute",
    response_model=None,
    responses={200: {"content": {"application/x-ndjson": {}}, "description": _EXECUTE}},
)
async def execute(
    session_id: str,
    body: KernelExecute,
    user: CurrentUser,
    kernels: Kernels,
    stream: Annotated[bool, Query()] = False,
) -> dict[str, Any] | StreamingResponse:
    events = await kernels.execute(user, session_id, body.code, body.timeout)
    if stream:
        return StreamingResponse(_ndjson(events), media_type="application/x-ndjson")
    outputs = Outputs()
    async with contextlib.aclosing(events):
        async for event in events:
            outputs.add(event)
    return outputs.result()


async def _guarded(
    events: AsyncGenerator[ExecutionEvent, None],
) -> AsyncGenerator[ExecutionEvent, None]:
    """The events, closed however the consumer stops; an error once streaming has begun
    becomes an error output and a final ``done`` (the status line is already sent)."""
    async with contextlib.aclosing(events):
        try:
            async for event in events:
                yield event
        except HearthError as exc:
            yield {
                "type": "error",
                "ename": type(exc).__name__,
                "evalue": exc.message,
                "traceback": [],
            }
            yield done_event("error", None, 0.0, False)


async def _ndjson(events: AsyncGenerator[ExecutionEvent, None]) -> AsyncIterator[bytes]:
    async with contextlib.aclosing(_guarded(events)) as guarded:
        async for event in guarded:
            yield json.dumps(event).encode() + b"\n"


@router.post("/sessions/{session_id}/interrupt", response_model_exclude_none=True)
async def interrupt(session_id: str, user: CurrentUser, kernels: Kernels) -> KernelState:
    return await kernels.interrupt(user, session_id)


@router.post("/sessions/{session_id}/restart", response_model_exclude_none=True)
async def restart(session_id: str, user: CurrentUser, kernels: Kernels) -> KernelState:
    return await kernels.restart(user, session_id)


@router.get("/sessions/{session_id}/files")
async def list_files(session_id: str, user: CurrentUser, kernels: Kernels) -> list[dict[str, Any]]:
    return await kernels.list_files(user, session_id)


@router.get("/sessions/{session_id}/files/{path:path}")
async def download(session_id: str, path: str, user: CurrentUser, kernels: Kernels) -> Response:
    file = await kernels.open_file(user, session_id, path)
    kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    return StreamingResponse(
        file.chunks, media_type=kind, headers={"Content-Length": str(file.size)}
    )


@router.put("/sessions/{session_id}/files/{path:path}")
async def upload(
    session_id: str, path: str, request: Request, user: CurrentUser, kernels: Kernels
) -> dict[str, Any]:
    return await kernels.write_file(user, session_id, path, request.stream())


@router.get("/pool")
async def pool(user: CurrentUser, kernels: Kernels) -> dict[str, int]:
    return await kernels.pool_state()


@router.websocket("/sessions/{session_id}/ws")
async def kernel_ws(ws: WebSocket, session_id: str) -> None:
    """``{"type":"execute","code","request_id"}`` → the events tagged with ``request_id``;
    ``{"type":"interrupt"}``; ``{"type":"ping"}`` → ``{"type":"pong"}``."""
    kernels: KernelsAPI = ws.app.state.kernels
    metrics: Metrics = ws.app.state.metrics
    socket = Socket(ws, "kernel", metrics.websockets_open.labels("kernel"))
    try:
        await socket.accept()
        user = websocket_user(ws)
        await kernels.get(user, session_id)
    except HearthError as exc:
        await socket.refuse(exc)
        return
    async with socket:
        await _KernelSocket(socket, kernels, user, session_id, metrics).serve()


class _KernelSocket:
    """Two pumps: frames in (each execute runs as a task beside them), events out through a
    bounded queue (a slow client slows the reading of its own executions, nothing else). The
    client's close cancels the executes — the kernel itself keeps running the code."""

    def __init__(
        self, socket: Socket, kernels: KernelsAPI, user: str, sid: str, metrics: Metrics
    ) -> None:
        self.socket, self.kernels, self.user, self.sid = socket, kernels, user, sid
        self.streamed = metrics.bytes_streamed.labels("kernel")
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=256)

    async def serve(self) -> None:
        await self.socket.run(self._send, self._receive)

    async def _send(self) -> None:
        while True:
            frame = await self.outbox.get()
            text = json.dumps(frame)
            if await self.socket.send_text(text):
                self.streamed.inc(len(text))

    async def _receive(self) -> None:
        while True:
            message = await self.socket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                await self.outbox.put({"type": "error", "message": _BINARY})
                continue
            try:
                frame = decode_kernel_frame(text)
            except FrameError as exc:
                tag = {} if exc.request_id is None else {"request_id": exc.request_id}
                await self.outbox.put({"type": "error", "message": str(exc), **tag})
                continue
            if isinstance(frame, ExecuteFrame):
                self.socket.start(self._execute(frame))
            elif isinstance(frame, InterruptFrame):
                await self.kernels.interrupt(self.user, self.sid)
            else:
                await self.outbox.put({"type": "pong"})

    async def _execute(self, frame: ExecuteFrame) -> None:
        """Run one execute; whatever goes wrong is an error frame for it, never the end of
        the connection and its other executes."""
        tag = {"request_id": frame.request_id}
        try:
            events = await self.kernels.execute(self.user, self.sid, frame.code, frame.timeout)
            async with contextlib.aclosing(_guarded(events)) as guarded:
                async for event in guarded:
                    await self.outbox.put({**event, **tag})
        except HearthError as exc:
            await self.outbox.put({"type": "error", "message": exc.message, **tag})
        except Exception:
            log.exception("execute failed", extra={"session": self.sid})
            message = "Internal error in Hearth running this code; the server log has the details."
            await self.outbox.put({"type": "error", "message": message, **tag})


_BINARY = (
    'Binary frames are not used here; send JSON text frames, e.g. {"type": "execute", '
    '"code": "1+1"}.'
)
