"""``/api/sessions`` (SPEC §10) as Jupyter Server serves it: a notebook, console or file bound to
a kernel. Here a Jupyter session is a name on one kernel session of the caller (its id, path,
name and type), so it lives and ends with that kernel; deleting it deletes the kernel.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse, Response

from hearth.contract.api import KernelsAPI
from hearth.errors import BadRequest, NotFound
from hearth.protocol.kernels import JupyterSession, KernelState, SessionChange, SessionStart
from hearth.server.auth import CurrentUser
from hearth.server.validation import ValidatedRoute

__all__ = ["router"]

router = APIRouter(prefix="/api/sessions", tags=["jupyter"], route_class=ValidatedRoute)


async def _kernels(request: Request) -> KernelsAPI:
    service: KernelsAPI = request.app.state.kernels
    return service


Kernels = Annotated[KernelsAPI, Depends(_kernels)]


async def _named(kernels: KernelsAPI, user: str) -> list[KernelState]:
    return [i for i in await kernels.sessions(user) if i.jupyter is not None]


async def _find(kernels: KernelsAPI, user: str, session_id: str) -> KernelState:
    for info in await _named(kernels, user):
        if info.jupyter is not None and info.jupyter.id == session_id:
            return info
    raise NotFound(f"No session {session_id[:80]!r}; GET /api/sessions lists yours.")


@router.get("")
async def list_sessions(user: CurrentUser, kernels: Kernels) -> list[JupyterSession]:
    return [JupyterSession.of(i) for i in await _named(kernels, user)]


@router.post("", status_code=201)
async def start_session(
    body: Annotated[SessionStart, Body()], user: CurrentUser, kernels: Kernels
) -> JSONResponse:
    """A session for ``path``: the one that has it already, or a new one on the kernel named
    (by id: one of the caller's; by kernelspec name, or none: a new one from the pool)."""
    for info in await _named(kernels, user):
        if info.jupyter is not None and info.jupyter.path == body.path:
            return _created(JupyterSession.of(info))
    if body.kernel.id is not None:
        info = await kernels.get(user, body.kernel.id)
        if info.jupyter is not None:
            raise BadRequest(f"Kernel {body.kernel.id!r} has a session already: PATCH that one.")
    else:
        info, _ = await kernels.create(user, str(uuid.uuid4()), None, body.kernel.name)
    jupyter = {
        "id": str(uuid.uuid4()),
        "path": body.path,
        "name": body.name or "",
        "type": body.type,
    }
    return _created(JupyterSession.of(await kernels.annotate(user, info.session_id, jupyter)))


def _created(model: JupyterSession) -> JSONResponse:
    headers = {"Location": f"/api/sessions/{model.id}"}
    return JSONResponse(model.model_dump(), status_code=201, headers=headers)


@router.get("/{session_id}")
async def get_session(session_id: str, user: CurrentUser, kernels: Kernels) -> JupyterSession:
    return JupyterSession.of(await _find(kernels, user, session_id))


@router.patch("/{session_id}")
async def change_session(
    session_id: str, body: Annotated[SessionChange, Body()], user: CurrentUser, kernels: Kernels
) -> JupyterSession:
    """Rename or retype it, or move it to another kernel (an existing one of the caller's by
    id, or a new one by kernelspec name); the kernel it leaves is deleted, as in Jupyter."""
    before = await _find(kernels, user, session_id)
    assert before.jupyter is not None
    jupyter = before.jupyter.model_dump()
    for field in ("path", "name", "type"):
        if (value := getattr(body, field)) is not None:
            jupyter[field] = value
    target = before.session_id
    if body.kernel is not None and body.kernel.id is not None:
        target = (await kernels.get(user, body.kernel.id)).session_id
    elif body.kernel is not None and body.kernel.name is not None:
        created, _ = await kernels.create(user, str(uuid.uuid4()), None, body.kernel.name)
        target = created.session_id
    info = await kernels.annotate(user, target, jupyter)
    if target != before.session_id:
        await kernels.terminate(user, before.session_id)
    return JupyterSession.of(info)


@router.delete("/{session_id}", status_code=204)
async def delete_session(session_id: str, user: CurrentUser, kernels: Kernels) -> Response:
    info = await _find(kernels, user, session_id)
    await kernels.terminate(user, info.session_id)
    return Response(status_code=204)
