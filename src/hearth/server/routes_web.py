"""The web workspace (SPEC §5): the built front end from ``hearth/static``, served at ``/`` with
no token — the page asks for one and sends it on every API call itself."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.staticfiles import StaticFiles

__all__ = ["STATIC_DIR", "router"]

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

_NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>Hearth</title>
<body style="font:15px system-ui;background:#0a0d13;color:#d6deeb;padding:3em">
<h1>The web workspace is not built</h1>
<p>Build it with <code>make web</code> (Node.js and npm needed), or use the API: see
<a style="color:#f5a524" href="/docs">/docs</a>.</p>"""

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> Response:
    page = STATIC_DIR / "index.html"
    if not page.is_file():
        return HTMLResponse(_NOT_BUILT, status_code=503)
    # The page names its hashed assets: always revalidate it, cache the assets.
    return FileResponse(page, headers={"Cache-Control": "no-cache"})


router.mount(
    "/assets",
    StaticFiles(directory=STATIC_DIR / "assets", check_dir=False),
    name="assets",
)
