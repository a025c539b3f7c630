"""``/api/sessions`` on a real server: a Jupyter session is a name on a kernel session of its
caller, living and ending with it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from tests.conftest import RunningServer

ALICE = "tok-alice-1"
BOB = "tok-bob-22"


@pytest.fixture
def kernel_server(make_server: Callable[..., RunningServer]) -> RunningServer:
    return make_server(session_pool_size=1)


def _client(server: RunningServer, token: str) -> httpx.AsyncClient:
    headers = {"Authorization": f"token {token}"}
    return httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60)


@pytest.fixture
async def alice(kernel_server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(kernel_server, ALICE) as client:
        yield client


@pytest.fixture
async def bob(kernel_server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(kernel_server, BOB) as client:
        yield client


async def _kernel_ids(client: httpx.AsyncClient) -> set[str]:
    return {k["id"] for k in (await client.get("/api/kernels")).json()}


async def test_a_notebook_session_from_start_to_end(
    alice: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    body = {"path": "work/a.ipynb", "type": "notebook", "name": "a", "kernel": {"name": "python3"}}
    created = await alice.post("/api/sessions", json=body)
    assert created.status_code == 201, created.text
    model = created.json()
    sid, kid = model["id"], model["kernel"]["id"]
    assert created.headers["location"] == f"/api/sessions/{sid}"
    assert model["path"] == "work/a.ipynb" and model["type"] == "notebook"
    assert model["notebook"] == {"path": "work/a.ipynb", "name": "a"}
    assert await _kernel_ids(alice) == {kid}

    again = await alice.post("/api/sessions", json=body)  # the same path: the same session
    assert again.json()["id"] == sid and await _kernel_ids(alice) == {kid}
    assert [s["id"] for s in (await alice.get("/api/sessions")).json()] == [sid]
    assert (await alice.get(f"/api/sessions/{sid}")).json()["kernel"]["id"] == kid

    assert (await bob.get("/api/sessions")).json() == []
    assert (await bob.get(f"/api/sessions/{sid}")).status_code == 404
    assert (await bob.delete(f"/api/sessions/{sid}")).status_code == 404

    renamed = await alice.patch(f"/api/sessions/{sid}", json={"path": "work/b.ipynb"})
    assert renamed.json()["path"] == "work/b.ipynb" and renamed.json()["kernel"]["id"] == kid

    moved = await alice.patch(f"/api/sessions/{sid}", json={"kernel": {"name": "python3"}})
    new_kid = moved.json()["kernel"]["id"]
    assert new_kid != kid and moved.json()["id"] == sid
    assert await _kernel_ids(alice) == {new_kid}  # the kernel it left is deleted

    assert (await alice.delete(f"/api/sessions/{sid}")).status_code == 204
    assert (await alice.get("/api/sessions")).json() == []
    assert await _kernel_ids(alice) == set()


async def test_a_session_on_an_existing_kernel(alice: httpx.AsyncClient) -> None:
    kid = (await alice.post("/api/kernels")).json()["id"]
    body = {"path": "console-1", "type": "console", "kernel": {"id": kid}}
    created = await alice.post("/api/sessions", json=body)
    assert created.status_code == 201 and created.json()["kernel"]["id"] == kid
    assert "notebook" not in created.json()
    other = await alice.post("/api/sessions", json={**body, "path": "console-2"})
    assert other.status_code == 400 and "PATCH" in other.json()["message"]


async def test_bad_bodies_are_clear_errors(alice: httpx.AsyncClient) -> None:
    assert (await alice.post("/api/sessions", json={"type": "notebook"})).status_code == 422
    missing = await alice.post(
        "/api/sessions", json={"path": "x", "type": "notebook", "kernel": {"id": "nope"}}
    )
    assert missing.status_code == 404
    assert (await alice.patch("/api/sessions/nope", json={})).status_code == 404
