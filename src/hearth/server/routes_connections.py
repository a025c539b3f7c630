"""Saved connections (SPEC §11): ``/api/v1/connections``. Owner-only like every session; their
secrets go in and never come out — not in an answer, and not in a 422 (which elsewhere echoes
the offending input)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.exceptions import RequestValidationError

from hearth.contract.api import ConnectionsAPI
from hearth.contract.connections import (
    ConnectionInfo,
    ConnectionPatch,
    ConnectionSpec,
    ConnectionTest,
)
from hearth.server.auth import CurrentUser
from hearth.server.validation import ValidatedRoute

__all__ = ["router"]


class _SecretsRoute(ValidatedRoute):
    """A route whose 422 names the bad field and never repeats what was sent."""

    def answerable(self, exc: RequestValidationError) -> RequestValidationError:
        errors = [{k: v for k, v in e.items() if k not in ("input", "ctx")} for e in exc.errors()]
        return RequestValidationError(errors, endpoint_ctx=exc.endpoint_ctx)


async def _connections(request: Request) -> ConnectionsAPI:
    connections: ConnectionsAPI = request.app.state.host.connections
    return connections


Connections = Annotated[ConnectionsAPI, Depends(_connections)]
ConnectionId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]

router = APIRouter(prefix="/api/v1/connections", tags=["connections"], route_class=_SecretsRoute)


@router.post("", status_code=201)
async def create(
    spec: ConnectionSpec, user: CurrentUser, connections: Connections
) -> ConnectionInfo:
    return await connections.create(user, spec)


@router.get("")
async def list_connections(user: CurrentUser, connections: Connections) -> list[ConnectionInfo]:
    return await connections.list_connections(user)


@router.get("/{id}")
async def get(id: ConnectionId, user: CurrentUser, connections: Connections) -> ConnectionInfo:
    return await connections.get(user, id)


@router.patch("/{id}")
async def change(
    id: ConnectionId, patch: ConnectionPatch, user: CurrentUser, connections: Connections
) -> ConnectionInfo:
    return await connections.change(user, id, patch)


@router.delete("/{id}", status_code=204)
async def delete(id: ConnectionId, user: CurrentUser, connections: Connections) -> Response:
    await connections.delete(user, id)
    return Response(status_code=204)


@router.post("/{id}/test")
async def test(id: ConnectionId, user: CurrentUser, connections: Connections) -> ConnectionTest:
    """Connect: the server's key, and whether the login works (a 502 if it can't be reached)."""
    return await connections.test(user, id)
