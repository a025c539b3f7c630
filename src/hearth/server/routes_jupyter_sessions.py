"""``/api/sessions`` (SPEC §10) as Jupyter Server serves it: a notebook, console or file bound to
a kernel. Here a Jupyter session is a name on one kernel session of the caller (its id, path,
name and type), so it lives and ends with that kernel; deleting it deletes the kernel.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from hearth.errors import BadRequest, NotFound
from hearth.host.client import RemoteKernels
from hearth.protocol import KERNEL_NAME
from hearth.server.auth import CurrentUser
from hearth.server.routes_jupyter import jupyter_model
from hearth.server.validation import ValidatedRoute

__all__ = ["router"]

router = APIRouter(prefix="/api/sessions", tags=["jupyter"], route_class=ValidatedRoute)


async def _kernels(request: Request) -> RemoteKernels:
    service: RemoteKernels = request.app.state.kernels
    return service


Kernels = Annotated[RemoteKernels, Depends(_kernels)]


class KernelChoice(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str | None = None
    name: str | None = Field(default=None, pattern=KERNEL_NAME)


class SessionStart(BaseModel):
    model_config = ConfigDict(extra="allow")

    path: str = Field(max_length=4096)
    type: str = Field(max_length=64)
    name: str | None = Field(None, max_length=4096)
    kernel: KernelChoice = Field(default_factory=lambda: KernelChoice())


class SessionChange(BaseModel):
    model_config = ConfigDict(extra="allow")

    path: str | None = Field(None, max_length=4096)
    type: str | None = Field(None, max_length=64)
    name: str | None = Field(None, max_length=4096)
    kernel: KernelChoice | None = None


def _model(info: dict[str, Any]) -> dict[str, Any]:
    jupyter = info["jupyter"]
    model = {
        "id": jupyter["id"],
        "path": jupyter["path"],
        "name": jupyter["name"],
        "type": jupyter["type"],
        "kernel": jupyter_model(info),
    }
    if jupyter["type"] == "notebook":  # as Jupyter Server adds it, for older clients
        model["notebook"] = {"path": jupyter["path"], "name": jupyter["name"]}
    return model


async def _named(kernels: RemoteKernels, user: str) -> list[dict[str, Any]]:
    return [i for i in await kernels.sessions(user) if i.get("jupyter")]


async def _find(kernels: RemoteKernels, user: str, session_id: str) -> dict[str, Any]:
    for info in await _named(kernels, user):
        if info["jupyter"]["id"] == session_id:
            return info
    raise NotFound(f"No session {session_id[:80]!r}; GET /api/sessions lists yours.")


@router.get("")
async def list_sessions(user: CurrentUser, kernels: Kernels) -> list[dict[str, Any]]:
    return [_model(i) for i in await _named(kernels, user)]


@router.post("", status_code=201)
async def start_session(
    body: Annotated[SessionStart, Body()], user: CurrentUser, kernels: Kernels
) -> JSONResponse:
    """A session for ``path``: the one that has it already, or a new one on the kernel named
    (by id: one of the caller's; by kernelspec name, or none: a new one from the pool)."""
    for info in await _named(kernels, user):
        if info["jupyter"]["path"] == body.path:
            return _created(_model(info))
    if body.kernel.id is not None:
        info = await kernels.get(user, body.kernel.id)
        if info.get("jupyter"):
            raise BadRequest(f"Kernel {body.kernel.id!r} has a session already: PATCH that one.")
    else:
        info, _ = await kernels.create(user, str(uuid.uuid4()), None, body.kernel.name)
    jupyter = {
        "id": str(uuid.uuid4()),
        "path": body.path,
        "name": body.name or "",
        "type": body.type,
    }
    return _created(_model(await kernels.annotate(user, info["session_id"], jupyter)))


def _created(model: dict[str, Any]) -> JSONResponse:
    headers = {"Location": f"/api/sessions/{model['id']}"}
    return JSONResponse(model, status_code=201, headers=headers)


@router.get("/{session_id}")
async def get_session(session_id: str, user: CurrentUser, kernels: Kernels) -> dict[str, Any]:
    return _model(await _find(kernels, user, session_id))


@router.patch("/{session_id}")
async def change_session(
    session_id: str, body: Annotated[SessionChange, Body()], user: CurrentUser, kernels: Kernels
) -> dict[str, Any]:
    """Rename or retype it, or move it to another kernel (an existing one of the caller's by
    id, or a new one by kernelspec name); the kernel it leaves is deleted, as in Jupyter."""
    before = await _find(kernels, user, session_id)
    jupyter = dict(before["jupyter"])
    for field in ("path", "name", "type"):
        if (value := getattr(body, field)) is not None:
            jupyter[field] = value
    target = before["session_id"]
    if body.kernel is not None and body.kernel.id is not None:
        target = (await kernels.get(user, body.kernel.id))["session_id"]
    elif body.kernel is not None and body.kernel.name is not None:
        target = (await kernels.create(user, str(uuid.uuid4()), None, body.kernel.name))[0][
            "session_id"
        ]
    info = await kernels.annotate(user, target, jupyter)
    if target != before["session_id"]:
        await kernels.terminate(user, before["session_id"])
    return _model(info)


@router.delete("/{session_id}", status_code=204)
async def delete_session(session_id: str, user: CurrentUser, kernels: Kernels) -> Response:
    info = await _find(kernels, user, session_id)
    await kernels.terminate(user, info["session_id"])
    return Response(status_code=204)
