"""The terminal websocket (SPEC §3.4): a hello, then two pumps — session → client and
client → session — run by :class:`hearth.server.ws_socket.Socket`."""

from __future__ import annotations

import logging

from fastapi import APIRouter, WebSocket

from hearth.contract.api import TerminalsAPI, Viewer
from hearth.contract.terminals import (
    Exited,
    Missed,
    Output,
    Refused,
    ReplayDone,
    Resized,
    TerminalSpec,
    ViewerCount,
    valid_session_id,
)
from hearth.errors import BadRequest, HearthError, HostUnavailable, NotFound, ScreenUnavailable
from hearth.protocol import (
    FrameError,
    InputFrame,
    PingFrame,
    ResizeFrame,
    decode_client_text,
    encode_output,
)
from hearth.server.metrics import Metrics
from hearth.server.routes_terminals import state_of
from hearth.server.ws_socket import Socket

__all__ = ["router"]

log = logging.getLogger("hearth.server.ws")
router = APIRouter()


class _Params:
    """The query string of a terminal websocket, validated."""

    def __init__(self, ws: WebSocket) -> None:
        q = ws.query_params
        flag = q.get("reconnect", q.get("resume", "false")).lower()
        if flag not in ("true", "false", "1", "0"):
            raise BadRequest("reconnect must be true or false")
        self.reconnect = flag in ("true", "1")
        self.since = _int(q.get("since"), "since", 0, 2**63 - 1)
        restore = q.get("restore", "")
        if restore not in ("", "screen", "replay"):
            raise BadRequest("restore must be screen or replay")
        # since means exact bytes, and wins (SPEC §9)
        self.screen = restore == "screen" and self.since is None
        self.rows = _int(q.get("rows"), "rows", 1, 1000)
        self.cols = _int(q.get("cols"), "cols", 1, 1000)


def _int(value: str | None, name: str, lo: int, hi: int) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number, got {value!r}") from None
    if not lo <= number <= hi:
        raise BadRequest(f"{name} must be between {lo} and {hi}, got {number}")
    return number


@router.websocket("/api/v1/terminal/ws/{id}")
@router.websocket("/ws/terminal/{id}")
async def terminal_ws(ws: WebSocket, id: str) -> None:
    manager: TerminalsAPI = ws.app.state.terminals
    metrics: Metrics = ws.app.state.metrics
    socket = Socket(ws, "terminal", metrics)
    try:
        user = await socket.accept()
        if not valid_session_id(id):
            raise BadRequest(f"Invalid session id {id!r}: use 1–64 characters of A-Z a-z 0-9 _ -.")
        params = _Params(ws)
        if not params.reconnect:
            await manager.ensure(
                user, TerminalSpec(id=id, rows=params.rows or 24, cols=params.cols or 80)
            )
        # one call: this viewer's window wins, as on any resize; the session as it is then
        size = (params.rows, params.cols) if params.rows and params.cols else None
        attachment = await _attach(manager, user, id, params, size)
    except HearthError as exc:
        await socket.refuse(exc, "session not found" if isinstance(exc, NotFound) else None)
        return
    async with socket, attachment:
        await _serve(socket, attachment, metrics)


async def _attach(
    manager: TerminalsAPI,
    user: str,
    id: str,
    params: _Params,
    size: tuple[int, int] | None,
) -> Viewer:
    if params.screen:
        try:
            return await manager.attach_screen(user, id, size)
        except ScreenUnavailable as exc:  # no model: the output is replayed, as before SPEC §9
            log.info("no screen to restore", extra={"session": id, "reason": exc.message})
    return await manager.attach(user, id, params.since, size)


async def _serve(socket: Socket, attachment: Viewer, metrics: Metrics) -> None:
    await socket.send_json(
        {
            "type": "hello",
            "session": state_of(attachment.session).model_dump(),
            "replay_from": attachment.replay_from,
            "replay_bytes": attachment.replay_bytes,
            "missed_bytes": attachment.missed_bytes,
        }
    )
    if attachment.screen is not None:
        screen = attachment.screen
        await socket.send_json(
            {
                "type": "screen",
                "offset": screen["offset"],
                "rows": screen["rows"],
                "cols": screen["cols"],
                "alternate": screen["alternate"],
                "data": screen["data"],
            }
        )
    streamed = metrics.bytes_streamed.labels("terminal")

    async def session_to_client() -> None:
        async for event in attachment:
            if isinstance(event, Output):
                if await socket.send_bytes(encode_output(event.offset, event.data)):
                    streamed.inc(len(event.data))
                attachment.ack(event.offset + len(event.data))  # dropped or delivered: done
            elif isinstance(event, ReplayDone):
                await socket.send_json({"type": "replay_done", "offset": event.offset})
            elif isinstance(event, Missed):
                await socket.send_json(
                    {"type": "missed", "missed_bytes": event.missed_bytes, "offset": event.offset}
                )
            elif isinstance(event, Resized):
                await socket.send_json({"type": "resize", "rows": event.rows, "cols": event.cols})
            elif isinstance(event, ViewerCount):
                await socket.send_json({"type": "viewers", "count": event.count})
            elif isinstance(event, Refused):
                await socket.send_json({"type": "error", "message": event.message})
            elif isinstance(event, Exited):
                frame: dict[str, object] = {"type": "exit", "exit_code": event.exit_code}
                if event.reason:
                    frame["reason"] = event.reason
                await socket.send_json(frame)

    async def client_to_session() -> None:
        while True:
            message = await socket.receive()
            if message["type"] == "websocket.disconnect":
                return
            try:
                # input and resizes are not answered: a refusal comes as a Refused event
                if message.get("bytes") is not None:
                    await attachment.write(message["bytes"])
                elif message.get("text") is not None:
                    frame = decode_client_text(message["text"])
                    if isinstance(frame, InputFrame):
                        await attachment.write(frame.data.encode())
                    elif isinstance(frame, ResizeFrame):
                        await attachment.resize(frame.rows, frame.cols)
                    elif isinstance(frame, PingFrame):
                        await socket.send_json({"type": "pong"})
            except FrameError as exc:
                await socket.send_json({"type": "error", "message": str(exc)})
            except HostUnavailable:
                raise  # the connection ends (1012): the client comes back and resumes
            except HearthError as exc:
                await socket.send_json({"type": "error", "message": exc.message})

    await socket.run(session_to_client, client_to_session, end=(1000, "session exited"))
