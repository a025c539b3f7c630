"""The workspace is served at / without a token, its assets under /assets, offline."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from hearth.server import routes_web
from tests.conftest import RunningServer
from tests.e2e.conftest import STATIC


def test_the_page_and_its_assets_need_no_token(server: RunningServer) -> None:
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache"
    assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', page.text)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    for asset in assets:
        assert httpx.get(f"{server.url}{asset}").status_code == 200, asset
    # Nothing is fetched from elsewhere: it works offline.
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page.text)
    assert STATIC.is_file()


def test_the_api_still_needs_a_token(server: RunningServer) -> None:
    assert httpx.get(f"{server.url}/api/v1/terminal/sessions").status_code == 401
    missing = httpx.get(f"{server.url}/assets/nope.js")
    assert missing.status_code == 404


def test_an_unbuilt_workspace_says_how_to_build_it(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(routes_web, "STATIC_DIR", tmp_path)
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 503
    assert "make web" in page.text
