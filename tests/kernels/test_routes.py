"""The kernel API through the real app and its lifespan (httpx's ASGI transport)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from hearth.contract.place import HostLock, HostPlace
from hearth.host.process import running_host
from hearth.sandbox import open_sandbox
from hearth.server.app import create_app

from .conftest import FileServer, kernel_settings, until

ALICE = {"Authorization": "Bearer tok-alice-1"}
BOB = {"Authorization": "Bearer tok-bob-22"}

Client = httpx.AsyncClient


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
async def make_client(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    from contextlib import AsyncExitStack

    async with AsyncExitStack() as stack:

        async def make(**overrides: Any) -> tuple[httpx.AsyncClient, Any]:
            settings = kernel_settings(tmp_path, **overrides)
            # the session host on this test's loop; the app reaches it over its socket
            lock = HostLock(HostPlace(settings.data_dir))
            stack.callback(lock.release)
            sandbox = open_sandbox(settings)
            stack.callback(sandbox.close)
            await stack.enter_async_context(running_host(settings, sandbox))
            app = create_app(settings)
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            client = httpx.AsyncClient(transport=transport, base_url="http://hearth.test")
            await stack.enter_async_context(client)
            return client, app

        yield make


@pytest.fixture
async def client(make_client: Callable[..., Any]) -> httpx.AsyncClient:
    c, _ = await make_client()
    return c  # type: ignore[no-any-return]


async def test_a_session_from_create_to_terminate(client: Client, tmp_path: Path) -> None:
    assert (await client.get("/healthz")).json()["status"] == "ok"
    pool = (await client.get("/api/v1/pool", headers=ALICE)).json()
    assert pool == {"target": 1, "ready": 1, "starting": 0, "active": 0, "max_kernels": 4}

    r = await client.post("/api/v1/sessions", json={"session_id": "s1"}, headers=ALICE)
    assert r.status_code == 201, r.text
    info = r.json()
    assert info["from_pool"] is True and info["status"] == "active"
    assert set(info) == {
        "session_id",
        "status",
        "kernel_name",
        "working_dir",
        "files",
        "created_at",
        "last_activity",
        "from_pool",
        "execution_count",
        "execution_state",  # Jupyter's, as a Jupyter client sees it (SPEC §10)
        "connections",
    }
    assert info["execution_state"] == "idle" and info["connections"] == 0
    again = await client.post("/api/v1/sessions", json={"session_id": "s1"}, headers=ALICE)
    assert again.status_code == 200 and again.json()["created_at"] == info["created_at"]

    r = await client.post(
        "/api/v1/sessions/s1/execute", json={"code": "print('hi'); 6*7"}, headers=ALICE
    )
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["execution_count"] == 1 and body["restarted"] is False
    assert body["outputs"] == [
        {"output_type": "stream", "name": "stdout", "text": "hi\n"},
        {
            "output_type": "execute_result",
            "data": {"text/plain": "42"},
            "metadata": {},
            "execution_count": 1,
        },
    ]
    assert body["duration_ms"] > 0

    r = await client.post(
        "/api/v1/sessions/s1/execute?stream=true",
        json={"code": "for i in range(3): print(i, flush=True)\n1/0"},
        headers=ALICE,
    )
    assert r.headers["content-type"].startswith("application/x-ndjson")
    events = [json.loads(line) for line in r.text.splitlines()]
    assert [e["type"] for e in events][-2:] == ["error", "done"]
    assert "".join(e["text"] for e in events if e["type"] == "stream") == "0\n1\n2\n"
    assert events[-1]["status"] == "error" and events[-1]["execution_count"] == 2

    timed = await client.post(
        "/api/v1/sessions/s1/execute",
        json={"code": "import time; time.sleep(20)", "timeout": 0.5},
        headers=ALICE,
    )
    assert timed.json()["status"] == "timeout"
    ok = await client.post(
        "/api/v1/sessions/s1/execute", json={"code": "'still here'"}, headers=ALICE
    )
    assert ok.json()["outputs"][0]["data"]["text/plain"] == "'still here'"

    listed = (await client.get("/api/v1/sessions", headers=ALICE)).json()
    assert [s["session_id"] for s in listed] == ["s1"]
    assert (await client.get("/api/v1/sessions/s1", headers=ALICE)).json()["execution_count"] == 4
    assert (await client.post("/api/v1/sessions/s1/interrupt", headers=ALICE)).status_code == 200
    restarted = await client.post("/api/v1/sessions/s1/restart", headers=ALICE)
    assert restarted.json()["status"] == "active"

    metrics = (await client.get("/metrics")).text
    assert 'hearth_pool_requests_total{outcome="hit"} 1.0' in metrics
    assert 'hearth_kernel_acquire_seconds_count{source="pool"} 1.0' in metrics
    assert 'hearth_sessions{kind="kernel",status="active"} 1.0' in metrics
    assert 'hearth_kernel_events_total{event="start"}' in metrics

    assert (await client.delete("/api/v1/sessions/s1", headers=ALICE)).status_code == 204
    gone = await client.get("/api/v1/sessions/s1", headers=ALICE)
    assert gone.status_code == 404 and "POST /api/v1/sessions" in gone.json()["detail"]
    assert (await client.delete("/api/v1/sessions/s1", headers=ALICE)).status_code == 404


async def test_files_upload_list_download(client: Client, tmp_path: Path) -> None:
    await client.post("/api/v1/sessions", json={"session_id": "f"}, headers=ALICE)
    put = await client.put(
        "/api/v1/sessions/f/files/dir/sub/a.txt", content=b"hello", headers=ALICE
    )
    assert put.status_code == 200 and put.json() == {"path": "dir/sub/a.txt", "size": 5}
    seen = await client.post(
        "/api/v1/sessions/f/execute",
        json={"code": "print(open('dir/sub/a.txt').read())"},
        headers=ALICE,
    )
    assert seen.json()["outputs"][0]["text"] == "hello\n"
    await client.post(
        "/api/v1/sessions/f/execute",
        json={"code": "open('made.bin','wb').write(bytes(range(256)))"},
        headers=ALICE,
    )
    files = (await client.get("/api/v1/sessions/f/files", headers=ALICE)).json()
    assert [(f["path"], f["size"]) for f in files] == [("dir/sub/a.txt", 5), ("made.bin", 256)]
    assert all(f["modified"] > 0 for f in files)
    got = await client.get("/api/v1/sessions/f/files/made.bin", headers=ALICE)
    assert got.status_code == 200 and got.content == bytes(range(256))
    missing = await client.get("/api/v1/sessions/f/files/nope.txt", headers=ALICE)
    assert missing.status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "..%2F..%2Fescaped.txt",
        "%2E%2E/escaped.txt",
        "a/..%2F..%2F..%2Fescaped.txt",
        "%2Ftmp%2Fescaped.txt",
        "link/escaped.txt",
        "link",
    ],
)
async def test_paths_escaping_the_working_dir_are_refused(
    client: Client, tmp_path: Path, path: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    created = await client.post("/api/v1/sessions", json={"session_id": "p"}, headers=ALICE)
    workdir = Path(created.json()["working_dir"])
    await client.post(
        "/api/v1/sessions/p/execute",
        json={"code": f"import os; os.symlink({str(outside)!r}, 'link')"},
        headers=ALICE,
    )
    # not the whole tmp_path: the pool's refill writes there in the background
    before = tree(workdir)
    put = await client.put(f"/api/v1/sessions/p/files/{path}", content=b"x", headers=ALICE)
    assert put.status_code == 400, put.text
    assert "working directory" in put.json()["detail"]
    get = await client.get(f"/api/v1/sessions/p/files/{path}", headers=ALICE)
    assert get.status_code == 400
    assert tree(workdir) == before
    assert list(outside.iterdir()) == []
    assert not any((d / "escaped.txt").exists() for d in [tmp_path, *workdir.parents[:4]])


async def test_other_users_and_strangers(client: Client) -> None:
    await client.post("/api/v1/sessions", json={"session_id": "mine"}, headers=ALICE)
    assert (await client.get("/api/v1/sessions/mine")).status_code == 401
    assert (
        await client.get("/api/v1/sessions", headers={"Authorization": "Bearer nope-nope"})
    ).status_code == 401
    theirs = await client.get("/api/v1/sessions/mine", headers=BOB)
    missing = await client.get("/api/v1/sessions/none", headers=BOB)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["detail"].replace("mine", "X") == missing.json()["detail"].replace(
        "none", "X"
    )
    for method, url, body in [
        ("POST", "/api/v1/sessions/mine/execute", {"code": "1"}),
        ("POST", "/api/v1/sessions/mine/interrupt", None),
        ("POST", "/api/v1/sessions/mine/restart", None),
        ("GET", "/api/v1/sessions/mine/files", None),
        ("GET", "/api/v1/sessions/mine/files/x", None),
        ("DELETE", "/api/v1/sessions/mine", None),
    ]:
        r = await client.request(method, url, json=body, headers=BOB)
        assert r.status_code == 404, (method, url)
    put = await client.put("/api/v1/sessions/mine/files/x", content=b"1", headers=BOB)
    assert put.status_code == 404
    assert (await client.get("/api/v1/sessions", headers=BOB)).json() == []
    assert (await client.get("/api/v1/sessions/mine", headers=ALICE)).status_code == 200


async def test_malformed_requests_are_4xx_with_a_reason(client: Client) -> None:
    cases: list[tuple[str, str, Any, int]] = [
        ("POST", "/api/v1/sessions", {"session_id": "a b"}, 422),
        ("POST", "/api/v1/sessions", {"session_id": "x" * 65}, 422),
        ("POST", "/api/v1/sessions", {"kernel_name": "cobol"}, 400),
        ("POST", "/api/v1/sessions", {"files": [{"url": "ftp://h/x"}]}, 422),
        ("POST", "/api/v1/sessions", {"files": [{"url": "http://h/x", "path": "/etc/x"}]}, 400),
        ("POST", "/api/v1/sessions", {"files": "nope"}, 422),
        ("POST", "/api/v1/sessions", "not json", 422),
    ]
    for method, url, body, status in cases:
        kw = {"content": body} if isinstance(body, str) else {"json": body}
        r = await client.request(method, url, headers=ALICE, **kw)
        assert r.status_code == status, (body, r.text)
        assert r.json()["detail"]
    await client.post("/api/v1/sessions", json={"session_id": "m"}, headers=ALICE)
    for body, status in [({}, 422), ({"code": 5}, 422), ({"code": "1", "timeout": -1}, 422)]:
        r = await client.post("/api/v1/sessions/m/execute", json=body, headers=ALICE)
        assert r.status_code == status, (body, r.text)
    assert [
        s["session_id"] for s in (await client.get("/api/v1/sessions", headers=ALICE)).json()
    ] == ["m"]


async def test_max_kernels_answers_429(make_client: Callable[..., Any]) -> None:
    client, _ = await make_client(session_pool_size=0, max_kernels=1)
    assert (await client.post("/api/v1/sessions", json={}, headers=ALICE)).json()[
        "from_pool"
    ] is False
    r = await client.post("/api/v1/sessions", json={}, headers=BOB)
    assert r.status_code == 429 and "max_kernels" in r.json()["detail"]


async def test_downloads_reuse_and_failures(
    make_client: Callable[..., Any], files_server: FileServer
) -> None:
    client, app = await make_client(max_download_bytes=4096, download_timeout=1)
    base = files_server.url
    r = await client.post(
        "/api/v1/sessions",
        headers=ALICE,
        json={
            "session_id": "d",
            "files": [
                {"url": f"{base}/data.csv"},
                {"url": f"{base}/other.txt", "path": "in/o.txt"},
            ],
        },
    )
    assert r.status_code == 201, r.text
    info = r.json()
    assert info["files"] == [
        {"url": f"{base}/data.csv", "path": "data.csv", "size": 8},
        {"url": f"{base}/other.txt", "path": "in/o.txt", "size": 5},
    ]
    read = await client.post(
        "/api/v1/sessions/d/execute",
        headers=ALICE,
        json={"code": "print(open('data.csv').read(), open('in/o.txt').read())"},
    )
    assert read.json()["outputs"][0]["text"] == "a,b\n1,2\n other\n"
    hits = len(files_server.hits)
    again = await client.post(
        "/api/v1/sessions",
        headers=ALICE,
        json={
            "session_id": "d",
            "files": [{"url": f"{base}/data.csv"}, {"url": f"{base}/big.bin?a"}],
        },
    )
    assert again.status_code == 502 and "max_download_bytes" in again.json()["detail"]
    assert files_server.hits[hits:] == ["/big.bin?a"]  # data.csv was not fetched again

    for url, words in [
        (f"{base}/missing.txt", "HTTP 404"),
        (f"{base}/nolength/big.bin", "max_download_bytes"),
        (f"{base}/slow.txt", "no complete answer"),
        ("http://127.0.0.1:1/x", "Could not download"),
    ]:
        r = await client.post(
            "/api/v1/sessions", headers=ALICE, json={"session_id": "fail", "files": [{"url": url}]}
        )
        assert r.status_code == 502 and words in r.json()["detail"], r.text
    assert (await client.get("/api/v1/sessions/fail", headers=ALICE)).status_code == 404
    data_dir = app.state.settings.data_dir
    leftovers = [p for p in data_dir.rglob("*") if p.is_file() and "big" in p.name]
    assert leftovers == []
    await until(lambda: not any((data_dir / "kernels" / "incoming").iterdir()))
    files = (await client.get("/api/v1/sessions/d/files", headers=ALICE)).json()
    assert [f["path"] for f in files] == ["data.csv", "in/o.txt"]


async def test_downloads_without_network_reach_nothing_of_this_machine(
    make_client: Callable[..., Any], files_server: FileServer
) -> None:
    """SPEC §7.1: under ``session_network = "none"`` a download is refused when its host is, or
    resolves to, this machine's own network; the create is a 400 naming why, and leaves no
    session, no file and no request behind."""
    client, app = await make_client(session_network="none")
    port = files_server.httpd.server_address[1]
    for url, named in [
        (f"{files_server.url}/data.csv", "127.0.0.1 is on this machine's loopback"),
        (f"http://localhost:{port}/data.csv", "localhost ("),
        (f"http://[::1]:{port}/data.csv", "::1 is on this machine's loopback"),
        (f"http://0.0.0.0:{port}/data.csv", "the unspecified address"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.1.2.3/x", "private network"),
    ]:
        r = await client.post(
            "/api/v1/sessions",
            headers=ALICE,
            json={"session_id": "n", "files": [{"url": url}]},
        )
        assert r.status_code == 400, r.text
        detail = r.json()["detail"]
        assert named in detail and 'session_network = "none"' in detail, detail
        assert detail.startswith(f"Cannot download {url}: "), detail
    assert files_server.hits == []
    assert (await client.get("/api/v1/sessions/n", headers=ALICE)).status_code == 404
    assert (await client.get("/api/v1/sessions", headers=ALICE)).json() == []
    assert (await client.get("/api/v1/pool", headers=ALICE)).json()["active"] == 0
    incoming = app.state.settings.data_dir / "kernels" / "incoming"
    await until(lambda: not any(incoming.iterdir()))


async def test_downloads_with_the_hosts_network_reach_what_the_machine_reaches(
    make_client: Callable[..., Any], files_server: FileServer
) -> None:
    client, _ = await make_client(session_network="host")
    port = files_server.httpd.server_address[1]
    r = await client.post(
        "/api/v1/sessions",
        headers=ALICE,
        json={"session_id": "h", "files": [{"url": f"http://localhost:{port}/data.csv"}]},
    )
    assert r.status_code == 201, r.text
    assert [f["path"] for f in r.json()["files"]] == ["data.csv"]
