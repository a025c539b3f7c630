"""FastAPI builds each route's context (models, dependencies) on the first request that looks it
up: 60-80 ms for the first request after a start. The server has it built before it is ready."""

from __future__ import annotations

import httpx
import pytest
from fastapi import routing

from tests.conftest import ALICE, RunningServer


def test_no_request_after_the_start_waits_for_fastapi_to_build_its_routes(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[object] = []
    build = routing._EffectiveRouteContext.from_api_route

    def counted(*args: object, **kwargs: object) -> object:
        built.append(kwargs.get("original_route"))
        return build(*args, **kwargs)

    monkeypatch.setattr(routing._EffectiveRouteContext, "from_api_route", counted)
    auth = {"Authorization": f"Bearer {ALICE}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=30) as http:
        assert http.get("/api/v1/sessions").status_code == 200
        assert http.get("/api/v1/terminal/sessions").status_code == 200
        assert http.get("/api/kernels").status_code == 200
    assert built == []
