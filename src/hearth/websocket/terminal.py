"""A terminal websocket once accepted (SPEC §3.4): the session attached, a hello, then two
pumps — session → client and client → session — run by :class:`Socket`. The web tier runs it
over the host's remote viewer; the session host over its own, for a socket handed to it."""

from __future__ import annotations

import logging
from collections.abc import Callable

from hearth.contract.api import TerminalsAPI, Viewer
from hearth.contract.terminals import (
    Exited,
    Missed,
    Output,
    Refused,
    ReplayDone,
    Resized,
    TerminalInfo,
    TerminalSocket,
    TerminalSpec,
    ViewerCount,
)
from hearth.errors import HearthError, HostUnavailable, NotFound, ScreenUnavailable
from hearth.protocol import (
    FrameError,
    InputFrame,
    PingFrame,
    ResizeFrame,
    TerminalState,
    decode_client_text,
    encode_output,
)
from hearth.websocket.socket import Socket

__all__ = ["serve_terminal", "state_of"]

log = logging.getLogger("hearth.websocket")


def state_of(info: TerminalInfo) -> TerminalState:
    return TerminalState.model_validate(info, from_attributes=True)


async def serve_terminal(
    socket: Socket,
    terminals: TerminalsAPI,
    user: str,
    id: str,
    params: TerminalSocket,
    streamed: Callable[[int], None],
) -> None:
    """Serve an accepted socket until either side ends; ``streamed(n)``: n bytes sent."""
    try:
        if not params.reconnect:
            await terminals.ensure(
                user, TerminalSpec(id=id, rows=params.rows or 24, cols=params.cols or 80)
            )
        # one call: this viewer's window wins, as on any resize; the session as it is then
        size = (params.rows, params.cols) if params.rows and params.cols else None
        attachment = await _attach(terminals, user, id, params, size)
    except HearthError as exc:
        await socket.refuse(exc, "session not found" if isinstance(exc, NotFound) else None)
        return
    async with socket, attachment:
        await _serve(socket, attachment, streamed)


async def _attach(
    terminals: TerminalsAPI,
    user: str,
    id: str,
    params: TerminalSocket,
    size: tuple[int, int] | None,
) -> Viewer:
    if params.screen:
        try:
            return await terminals.attach_screen(user, id, size)
        except ScreenUnavailable as exc:  # no model: the output is replayed, as before SPEC §9
            log.info("no screen to restore", extra={"session": id, "reason": exc.message})
    return await terminals.attach(user, id, params.since, size)


async def _serve(socket: Socket, attachment: Viewer, streamed: Callable[[int], None]) -> None:
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

    async def session_to_client() -> None:
        async for event in attachment:
            if isinstance(event, Output):
                if await socket.send_bytes(encode_output(event.offset, event.data)):
                    streamed(len(event.data))
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
