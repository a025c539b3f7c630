"""REST routes of terminal sessions (SPEC §3.2), under /api/v1/terminal and the first design's
/api/terminal."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.responses import PlainTextResponse

from hearth.contract.api import TerminalsAPI
from hearth.contract.terminals import TerminalSpec
from hearth.errors import NotFound
from hearth.protocol import (
    SESSION_ID,
    CleanupAnswer,
    HistoryEntry,
    ResumeAnswer,
    TerminalCreate,
    TerminalRename,
    TerminalScreen,
    TerminalState,
    TerminalStatusAnswer,
)
from hearth.server.auth import CurrentUser
from hearth.server.validation import ValidatedRoute
from hearth.websocket.terminal import state_of

__all__ = ["legacy_router", "router"]


async def terminals(request: Request) -> TerminalsAPI:
    manager: TerminalsAPI = request.app.state.terminals
    return manager


Terminals = Annotated[TerminalsAPI, Depends(terminals)]
SessionId = Annotated[str, Path(pattern=SESSION_ID, description="1–64 of [A-Za-z0-9_-]")]


class AsciicastResponse(PlainTextResponse):
    media_type = "application/x-asciicast"


def _build(prefix: str, ws_path: str, include_in_schema: bool) -> APIRouter:
    router = APIRouter(
        prefix=prefix,
        tags=["terminals"],
        include_in_schema=include_in_schema,
        route_class=ValidatedRoute,
    )

    @router.post("/sessions", status_code=201)
    async def create(
        user: CurrentUser,
        manager: Terminals,
        body: Annotated[TerminalCreate | None, Body()] = None,
    ) -> TerminalState:
        body = body or TerminalCreate.model_validate({})  # all optional, so is the body (§3.2)
        spec = TerminalSpec(
            id=body.id,
            name=body.name,
            command=body.command,
            cwd=body.cwd,
            env=body.env,
            rows=body.rows,
            cols=body.cols,
            connection_id=body.connection_id,
        )
        return state_of(await manager.create(user, spec))

    @router.get("/sessions", response_model=list[TerminalState])
    async def list_sessions(user: CurrentUser, manager: Terminals) -> Response:
        # made by the host, not parsed here: a user with thousands of sessions, and many
        # nodes merging their lists, would notice a model for each (SPEC §12)
        listed = await manager.list_json(user)
        body = b"".join([chunk async for chunk in listed.chunks])
        return Response(body, media_type="application/json")

    @router.get("/sessions/{id}")
    async def get(id: SessionId, user: CurrentUser, manager: Terminals) -> TerminalState:
        return state_of(await manager.get(user, id))

    async def status(id: str, user: CurrentUser, manager: Terminals) -> TerminalStatusAnswer:
        try:
            info = await manager.get(user, id)
        except NotFound:
            return TerminalStatusAnswer(exists=False, alive=False, last_activity=None)
        return TerminalStatusAnswer(exists=True, alive=info.alive, last_activity=info.last_activity)

    router.add_api_route("/session/{id}/status", status, methods=["GET"])
    router.add_api_route("/sessions/{id}/status", status, methods=["GET"])

    @router.put("/sessions/{id}/resume")
    async def resume(id: SessionId, user: CurrentUser, manager: Terminals) -> ResumeAnswer:
        info = await manager.touch(user, id)
        return ResumeAnswer(session=state_of(info), ws_url=ws_path.format(id=id))

    @router.patch("/sessions/{id}")
    async def rename(
        id: SessionId, body: TerminalRename, user: CurrentUser, manager: Terminals
    ) -> TerminalState:
        return state_of(await manager.rename(user, id, body.name))

    @router.delete("/sessions/{id}", status_code=204)
    async def close(id: SessionId, user: CurrentUser, manager: Terminals) -> Response:
        await manager.close(user, id)
        return Response(status_code=204)

    @router.get("/sessions/{id}/history")
    async def history(
        id: SessionId,
        user: CurrentUser,
        manager: Terminals,
        since: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    ) -> list[HistoryEntry]:
        return await manager.history(user, id, since, limit)

    @router.get("/sessions/{id}/recording.cast", response_class=AsciicastResponse)
    async def recording(id: SessionId, user: CurrentUser, manager: Terminals) -> AsciicastResponse:
        return AsciicastResponse(
            await manager.recording(user, id),
            headers={"Content-Disposition": f'attachment; filename="{id}.cast"'},
        )

    @router.get("/sessions/{id}/screen")
    async def screen(id: SessionId, user: CurrentUser, manager: Terminals) -> TerminalScreen:
        return TerminalScreen(**await manager.screen(user, id))

    @router.post("/cleanup")
    async def cleanup(user: CurrentUser, manager: Terminals) -> CleanupAnswer:
        return CleanupAnswer(closed=await manager.cleanup(user))

    return router


router = _build("/api/v1/terminal", "/api/v1/terminal/ws/{id}?reconnect=true", True)
legacy_router = _build("/api/terminal", "/ws/terminal/{id}?resume=true", False)
