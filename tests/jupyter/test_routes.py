"""The Jupyter Server kernel API's REST side on a real server: kernels are kernel sessions of the
caller, from the pool; another user's kernel is missing on every route; kernelspecs."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import websockets

from tests.conftest import RunningServer

ALICE = "tok-alice-1"
BOB = "tok-bob-22"


@pytest.fixture
def kernel_server(make_server: Callable[..., RunningServer]) -> RunningServer:
    return make_server(session_pool_size=1)


@pytest.fixture
async def alice(kernel_server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"token {ALICE}"}
    async with httpx.AsyncClient(base_url=kernel_server.url, headers=headers, timeout=60) as c:
        yield c


@pytest.fixture
async def bob(kernel_server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"token {BOB}"}
    async with httpx.AsyncClient(base_url=kernel_server.url, headers=headers, timeout=60) as c:
        yield c


async def test_a_kernel_is_a_pooled_kernel_session_of_its_caller(
    alice: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    started = await alice.post("/api/kernels", json={"name": "python3", "env": {"KERNEL_X": "1"}})
    assert started.status_code == 201, started.text
    model = started.json()
    kid = model["id"]
    assert uuid.UUID(kid) and started.headers["location"] == f"/api/kernels/{kid}"
    assert model["name"] == "python3" and model["connections"] == 0
    assert model["execution_state"] in ("idle", "busy", "starting")
    # the exact form Jupyter Server's gateway client parses
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", model["last_activity"])

    session = (await alice.get(f"/api/v1/sessions/{kid}")).json()
    assert session["from_pool"] is True and session["status"] == "active"
    assert [k["id"] for k in (await alice.get("/api/kernels")).json()] == [kid]
    assert (await bob.get("/api/kernels")).json() == []
    assert (await alice.get(f"/api/kernels/{kid}")).json()["id"] == kid

    assert (await alice.delete(f"/api/kernels/{kid}")).status_code == 204
    assert (await alice.get(f"/api/kernels/{kid}")).status_code == 404
    assert (await alice.get("/api/v1/sessions")).json() == []


async def test_without_a_body_the_default_kernel_starts(alice: httpx.AsyncClient) -> None:
    started = await alice.post("/api/kernels")
    assert started.status_code == 201 and started.json()["name"] == "python3"


async def test_an_unknown_kernelspec_is_a_clear_400(alice: httpx.AsyncClient) -> None:
    answer = await alice.post("/api/kernels", json={"name": "cobol"})
    assert answer.status_code == 400 and "python3" in answer.json()["detail"]
    assert answer.json()["message"] == answer.json()["detail"]  # what Jupyter clients show


async def test_another_users_kernel_is_missing_on_every_route(
    kernel_server: RunningServer, alice: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    kid = (await alice.post("/api/kernels")).json()["id"]
    for method, path in [
        ("GET", f"/api/kernels/{kid}"),
        ("DELETE", f"/api/kernels/{kid}"),
        ("POST", f"/api/kernels/{kid}/interrupt"),
        ("POST", f"/api/kernels/{kid}/restart"),
    ]:
        answer = await bob.request(method, path)
        assert answer.status_code == 404, (method, path, answer.text)
        assert kid not in answer.text or "No kernel session" in answer.text
    url = f"{kernel_server.ws_url}/api/kernels/{kid}/channels?token={BOB}"
    async with websockets.connect(url) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404
    assert (await alice.get(f"/api/kernels/{kid}")).status_code == 200  # untouched


async def test_a_foreign_origin_and_a_missing_token_are_refused_on_the_channels(
    kernel_server: RunningServer, alice: httpx.AsyncClient
) -> None:
    kid = (await alice.post("/api/kernels")).json()["id"]
    url = f"{kernel_server.ws_url}/api/kernels/{kid}/channels"
    cases = [
        (f"{url}?token={ALICE}", {"Origin": "http://evil.example"}, 4403),
        (url, {}, 4401),
    ]
    for address, headers, code in cases:
        async with websockets.connect(address, additional_headers=headers) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == code
    assert (await alice.get(f"/api/kernels/{kid}")).json()["connections"] == 0


async def test_kernelspecs_and_their_resources(alice: httpx.AsyncClient) -> None:
    specs = (await alice.get("/api/kernelspecs")).json()
    assert specs["default"] == "python3"
    python = specs["kernelspecs"]["python3"]
    assert python["spec"]["language"] == "python" and python["name"] == "python3"
    logo = python["resources"]["logo-64x64"]
    assert logo == "/kernelspecs/python3/logo-64x64.png"
    image = await alice.get(logo)
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    assert image.headers["content-type"] == "image/png"
    assert (await alice.get("/api/kernelspecs/python3")).json() == python
    assert (await alice.get("/api/kernelspecs/cobol")).status_code == 404
    assert (await alice.get("/kernelspecs/cobol/logo-64x64.png")).status_code == 404
    escape = await alice.get("/kernelspecs/python3/..%2F..%2F..%2Fetc%2Fpasswd")
    assert escape.status_code == 400 and "root:" not in escape.text
    assert (await alice.get("/api")).json()["version"]


async def test_the_api_wants_a_token(kernel_server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=kernel_server.url) as anonymous:
        for path in ("/api/kernels", "/api/kernelspecs", "/kernelspecs/python3/logo-64x64.png"):
            assert (await anonymous.get(path)).status_code == 401
