"""The terminal websocket's route (SPEC §3.4): the Origin, the token and the query string are
checked here; the socket is then handed to the session host (:mod:`hearth.server.handover`), or
served here through the host's link when it can't be (:mod:`hearth.websocket.terminal`)."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from hearth.contract.api import TerminalsAPI
from hearth.contract.terminals import TerminalSocket, valid_session_id
from hearth.errors import BadRequest, HearthError
from hearth.server.auth import websocket_user
from hearth.server.handover import HandOver
from hearth.server.metrics import Metrics
from hearth.websocket.socket import Socket
from hearth.websocket.terminal import serve_terminal

__all__ = ["router"]

router = APIRouter()


def _params(ws: WebSocket) -> TerminalSocket:
    """The query string of a terminal websocket, validated."""
    q = ws.query_params
    flag = q.get("reconnect", q.get("resume", "false")).lower()
    if flag not in ("true", "false", "1", "0"):
        raise BadRequest("reconnect must be true or false")
    since = _int(q.get("since"), "since", 0, 2**63 - 1)
    restore = q.get("restore", "")
    if restore not in ("", "screen", "replay"):
        raise BadRequest("restore must be screen or replay")
    return TerminalSocket(
        reconnect=flag in ("true", "1"),
        since=since,
        screen=restore == "screen" and since is None,  # since means exact bytes, and wins (§9)
        rows=_int(q.get("rows"), "rows", 1, 1000),
        cols=_int(q.get("cols"), "cols", 1, 1000),
    )


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
    terminals: TerminalsAPI = ws.app.state.terminals
    metrics: Metrics = ws.app.state.metrics
    socket = Socket(ws, "terminal", metrics.websockets_open.labels("terminal"))
    try:
        user = websocket_user(ws)
        if not valid_session_id(id):
            raise BadRequest(f"Invalid session id {id!r}: use 1–64 characters of A-Z a-z 0-9 _ -.")
        params = _params(ws)
    except HearthError as exc:
        await socket.accept()
        await socket.refuse(exc)
        return
    handover: HandOver | None = ws.app.state.handover
    if handover is not None and await handover.terminal(ws, user, id, params):
        return
    await socket.accept()
    streamed = metrics.bytes_streamed.labels("terminal")
    await serve_terminal(socket, terminals, user, id, params, streamed.inc)
