"""The application: the web tier (auth, routes, framing); its lifespan connects to the session
host that holds the sessions."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from hearth import __version__
from hearth.cluster.membership import join, leave
from hearth.cluster.middleware import Cluster, ClusterMiddleware
from hearth.config import Settings
from hearth.contract.place import HostPlace
from hearth.diskspace import data_dir_state
from hearth.errors import HearthError
from hearth.server import (
    routes_connections,
    routes_jupyter,
    routes_jupyter_sessions,
    routes_kernels,
    routes_terminals,
    routes_web,
    ws_jupyter,
    ws_terminals,
)
from hearth.server.auth import COOKIE_NAME, Authenticator, load_or_create_token
from hearth.server.handover import HandOver
from hearth.server.host_client import HostClient
from hearth.server.host_starter import HostStarter
from hearth.server.metrics import Metrics
from hearth.server.routes_jupyter import is_jupyter_path

__all__ = ["create_app", "warm_routes"]

log = logging.getLogger("hearth.server")


def create_app(
    settings: Settings, *, config_file: Path | None = None, host: HostClient | None = None
) -> FastAPI:
    """The ASGI app for ``settings``. Its sessions live in the data directory's session host,
    which the lifespan connects to (starting it when none runs) and leaves running."""
    data_dir = settings.data_dir.expanduser()
    tokens = settings.tokens or load_or_create_token(data_dir)
    if host is None:
        users = len(set(tokens.values()))
        config_files = [config_file] if config_file is not None else []
        host = HostClient(HostStarter(settings, config_files, users=users))
    client = host

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started = time.monotonic()
        warm_routes(app)
        await client.link()
        app.state.terminals, app.state.kernels = client.terminals, client.kernels
        place, heartbeat = HostPlace(data_dir), settings.heartbeat_interval
        async with HandOver(client, place, heartbeat) as handover:
            app.state.handover = handover if settings.websocket_handover else None
            cluster = None
            if settings.cluster_redis_url:
                users = app.state.authenticator.users()
                cluster = await join(app, settings, client.metrics, users)
            app.state.ready = True
            log.info(
                "ready",
                extra={
                    "seconds": round(time.monotonic() - started, 3),
                    "host": client.hello["pid"],
                },
            )
            try:
                yield
            finally:
                app.state.ready = False
                log.info("shutting down; the sessions stay in the session host")
                if cluster is not None:
                    await leave(cluster)
        await client.aclose()

    app = FastAPI(
        title="Hearth",
        version=__version__,
        summary="Execution sessions that are ready at once and outlive their connection.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.host = client
    app.state.authenticator = Authenticator(tokens)
    app.state.metrics = Metrics()
    app.state.ready = False
    app.state.handover = None
    app.state.cluster = None
    if settings.cluster_redis_url:
        app.add_middleware(ClusterMiddleware)
    _install_error_handlers(app)
    _install_public_routes(app)
    app.include_router(routes_terminals.router)
    app.include_router(routes_connections.router)
    app.include_router(routes_terminals.legacy_router)
    app.include_router(ws_terminals.router)
    app.include_router(routes_kernels.router)
    app.include_router(routes_jupyter.router)
    app.include_router(routes_jupyter_sessions.router)
    app.include_router(ws_jupyter.router)
    app.include_router(routes_web.router)
    return app


def warm_routes(app: FastAPI) -> None:
    """Have FastAPI build what it builds for its routes on the first request that looks them
    up (their contexts, models and dependencies: ~60 ms here), before the server is ready, so
    that no client waits for it."""
    for kind in ("http", "websocket"):
        scope = {"type": kind, "path": "/-/nothing/", "method": "GET", "root_path": "", "app": app}
        for route in app.router.routes:
            route.matches(dict(scope, headers=[]))


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HearthError)
    async def _hearth_error(request: Request, exc: HearthError) -> JSONResponse:
        body = {"detail": exc.message}
        if is_jupyter_path(request.url.path):  # Jupyter clients show "message" (SPEC §10)
            body.update(message=exc.message, reason=type(exc).__name__)
        return JSONResponse(body, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug of ours: answer in JSON like every other error (Starlette then re-raises it, so
        # the server logs its traceback once).
        detail = "Internal error in Hearth; the server log has the details. Please report it."
        return JSONResponse({"detail": detail}, status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"No route {request.url.path}; see /docs for the API."
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}; see /docs."
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)


def _install_public_routes(app: FastAPI) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz(request: Request) -> JSONResponse:
        if not request.app.state.ready:
            return JSONResponse({"status": "starting"}, status_code=503)
        host: HostClient = request.app.state.host
        if not host.connected:  # being reconnected (or a new host started) in the background
            detail = "The session host is unavailable; Hearth is reconnecting to it."
            return JSONResponse({"status": "unavailable", "detail": detail}, status_code=503)
        disk = data_dir_state(request.app.state.settings.data_dir.expanduser())
        answer = {"status": "ok", **host.hello.get("sandbox", {}), "disk": disk}
        cluster: Cluster | None = request.app.state.cluster
        if cluster is not None:
            answer.update(cluster.node.health())
        return JSONResponse(answer)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> PlainTextResponse:
        host: HostClient = request.app.state.host
        body = request.app.state.metrics.render(await host.metrics())
        return PlainTextResponse(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/login", include_in_schema=False)
    async def login(request: Request, token: str = "", next: str = "/") -> Response:
        auth: Authenticator = request.app.state.authenticator
        if auth.user_for(token) is None:
            return JSONResponse(
                {"detail": "Wrong token: open the URL that 'hearth serve' printed."},
                status_code=401,
            )
        target = next if next.startswith("/") and not next.startswith("//") else "/"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE_NAME, token, httponly=True, samesite="strict")
        return response
