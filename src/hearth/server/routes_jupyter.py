"""The Jupyter Server kernel API (SPEC §10), as a Kernel Gateway serves it: Jupyter clients get
kernels from the warm pool. A kernel here is a kernel session of the caller (its id is the
session id), so the owner rules, limits, sandbox and idle timeout of SPEC §4 hold.
"""

from __future__ import annotations

import mimetypes
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from hearth import __version__
from hearth.contract.api import KernelsAPI
from hearth.errors import NotFound
from hearth.protocol.kernels import JupyterKernel, KernelStart
from hearth.server.auth import CurrentUser
from hearth.server.validation import ValidatedRoute

__all__ = ["is_jupyter_path", "router"]

router = APIRouter(tags=["jupyter"], route_class=ValidatedRoute)


async def _kernels(request: Request) -> KernelsAPI:
    service: KernelsAPI = request.app.state.kernels
    return service


Kernels = Annotated[KernelsAPI, Depends(_kernels)]


def is_jupyter_path(path: str) -> bool:
    """A path of the Jupyter API (its errors also carry Jupyter's ``message``)."""
    return path.startswith(("/api/kernels", "/api/kernelspecs", "/api/sessions", "/kernelspecs/"))


@router.get("/api")
async def api_version() -> dict[str, str]:
    return {"version": __version__}


@router.get("/api/kernelspecs")
async def kernelspecs(user: CurrentUser, kernels: Kernels) -> dict[str, Any]:
    return await kernels.kernelspecs()


@router.get("/api/kernelspecs/{name}")
async def kernelspec(name: str, user: CurrentUser, kernels: Kernels) -> dict[str, Any]:
    specs = await kernels.kernelspecs()
    found: dict[str, Any] | None = specs["kernelspecs"].get(name)
    if found is None:
        raise NotFound(f"No kernelspec {name[:80]!r}; GET /api/kernelspecs lists them.")
    return found


@router.get("/kernelspecs/{name}/{path:path}")
async def kernelspec_file(name: str, path: str, user: CurrentUser, kernels: Kernels) -> Response:
    file = await kernels.open_kernelspec_file(name, path)
    kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    return StreamingResponse(
        file.chunks, media_type=kind, headers={"Content-Length": str(file.size)}
    )


@router.get("/api/kernels")
async def list_kernels(user: CurrentUser, kernels: Kernels) -> list[JupyterKernel]:
    return [JupyterKernel.of(i) for i in await kernels.sessions(user)]


@router.post("/api/kernels", status_code=201)
async def start_kernel(
    user: CurrentUser, kernels: Kernels, body: Annotated[KernelStart | None, Body()] = None
) -> JSONResponse:
    name = body.name if body is not None else None
    info, _ = await kernels.create(user, str(uuid.uuid4()), None, name)
    headers = {"Location": f"/api/kernels/{info.session_id}"}
    return JSONResponse(JupyterKernel.of(info).model_dump(), status_code=201, headers=headers)


@router.get("/api/kernels/{kernel_id}")
async def get_kernel(kernel_id: str, user: CurrentUser, kernels: Kernels) -> JupyterKernel:
    return JupyterKernel.of(await kernels.get(user, kernel_id))


@router.delete("/api/kernels/{kernel_id}", status_code=204)
async def delete_kernel(kernel_id: str, user: CurrentUser, kernels: Kernels) -> Response:
    await kernels.terminate(user, kernel_id)
    return Response(status_code=204)


@router.post("/api/kernels/{kernel_id}/interrupt", status_code=204)
async def interrupt_kernel(kernel_id: str, user: CurrentUser, kernels: Kernels) -> Response:
    await kernels.interrupt(user, kernel_id)
    return Response(status_code=204)


@router.post("/api/kernels/{kernel_id}/restart")
async def restart_kernel(kernel_id: str, user: CurrentUser, kernels: Kernels) -> JupyterKernel:
    return JupyterKernel.of(await kernels.restart(user, kernel_id))
