"""The REST API of terminal sessions (SPEC §3.2) and access control (SPEC §2), on a real server."""

from __future__ import annotations

import json
import os
import signal
import time

import httpx
import pytest

from tests.conftest import ALICE, BOB, RunningServer, pids_of
from tests.server.termclient import SHELL

API = "/api/v1/terminal"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def client(server: RunningServer, token: str | None = ALICE) -> httpx.Client:
    headers = auth(token) if token else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=30)


def create(c: httpx.Client, **body: object) -> dict[str, object]:
    body.setdefault("command", SHELL)
    r = c.post(f"{API}/sessions", json=body)
    assert r.status_code == 201, r.text
    data: dict[str, object] = r.json()
    return data


def poll(predicate, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.02)


def test_public_endpoints_need_no_token(server: RunningServer) -> None:
    with client(server, None) as c:
        assert c.get("/healthz").json()["status"] == "ok"
        metrics = c.get("/metrics")
        assert metrics.status_code == 200
        assert "hearth_sessions" in metrics.text
        assert c.get("/docs").status_code == 200
        assert "/api/v1/terminal/sessions" in c.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("headers", [{}, auth("wrong-token-1")])
def test_missing_or_wrong_token_is_401_with_a_hint(
    server: RunningServer, headers: dict[str, str]
) -> None:
    with httpx.Client(base_url=server.url, headers=headers) as c:
        r = c.get(f"{API}/sessions")
    assert r.status_code == 401
    assert "token" in r.json()["detail"]


def test_token_in_query_and_login_cookie(server: RunningServer) -> None:
    with client(server, None) as c:
        assert c.get(f"{API}/sessions", params={"token": ALICE}).status_code == 200
        assert c.get("/login", params={"token": "nope-nope"}).status_code == 401
        r = c.get("/login", params={"token": ALICE}, follow_redirects=False)
        assert r.status_code == 303
        assert r.cookies.get("hearth_token") == ALICE
        c.cookies.set("hearth_token", ALICE)
        assert c.get(f"{API}/sessions").status_code == 200


def test_create_get_list_rename_close(server: RunningServer) -> None:
    with client(server) as c:
        first = create(c, id="one", rows=30, cols=100, name="build")
        assert first["id"] == "one" and first["name"] == "build" and first["user"] == "alice"
        assert first["status"] == "disconnected" and first["alive"] is True
        assert (first["rows"], first["cols"]) == (30, 100)
        assert first["protocol"] == "local" and first["exit_code"] is None
        assert first["expires_at"] == pytest.approx(first["last_activity"] + 3600)  # type: ignore[operator]
        second = create(c)
        assert str(second["name"]).startswith("Terminal ")
        assert [s["id"] for s in c.get(f"{API}/sessions").json()] == [second["id"], "one"]
        assert c.patch(f"{API}/sessions/one", json={"name": "deploy"}).json()["name"] == "deploy"
        assert c.get(f"{API}/sessions/one").json()["name"] == "deploy"
        assert c.delete(f"{API}/sessions/one").status_code == 204
        r = c.get(f"{API}/sessions/one")
        assert r.status_code == 404 and "one" in r.json()["detail"]


def test_the_list_shows_every_change_as_a_get_does(server: RunningServer) -> None:
    """A listed session's JSON is kept until something it shows changes: a rename, a resize,
    output, an exit must each show in the next list."""
    command = ["/bin/sh", "-c", "read a; echo got $a; read b; exit 3"]

    def listed_is_got(c: httpx.Client) -> bool:
        [item] = [s for s in c.get(API + "/sessions").json() if s["id"] == "l"]
        return bool(item == c.get(API + "/sessions/l").json())

    with client(server) as c:
        create(c, id="l", command=command)
        assert listed_is_got(c)
        c.patch(API + "/sessions/l", json={"name": "renamed"})
        assert listed_is_got(c) and c.get(API + "/sessions/l").json()["name"] == "renamed"
        server.call(lambda: server.core.terminals.resize("alice", "l", 30, 90))
        assert listed_is_got(c) and c.get(API + "/sessions/l").json()["rows"] == 30
        server.call(lambda: server.core.terminals.write("alice", "l", b"x\n"))
        poll(lambda: c.get(API + "/sessions/l").json()["output_end"] >= len(b"x\r\ngot x\r\n"))
        assert listed_is_got(c)
        server.call(lambda: server.core.terminals.write("alice", "l", b"y\n"))
        poll(lambda: c.get(API + "/sessions/l").json()["exit_code"] == 3)
        assert listed_is_got(c)


def test_existing_id_is_409(server: RunningServer) -> None:
    with client(server) as c:
        create(c, id="dup")
        r = c.post(f"{API}/sessions", json={"id": "dup"})
        assert r.status_code == 409
        assert "dup" in r.json()["detail"]


def test_other_users_sessions_look_missing(server: RunningServer) -> None:
    with client(server, ALICE) as alice, client(server, BOB) as bob:
        create(alice, id="secret")
        missing = bob.get(f"{API}/sessions/nothing-here")
        theirs = bob.get(f"{API}/sessions/secret")
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json()["detail"].replace("secret", "X") == missing.json()["detail"].replace(
            "nothing-here", "X"
        )
        assert bob.get(f"{API}/sessions").json() == []
        assert bob.delete(f"{API}/sessions/secret").status_code == 404
        assert bob.patch(f"{API}/sessions/secret", json={"name": "x"}).status_code == 404
        assert bob.get(f"{API}/session/secret/status").json()["exists"] is False
        # the same id is free for bob: a different session
        assert create(bob, id="secret")["user"] == "bob"
        assert alice.get(f"{API}/sessions/secret").json()["user"] == "alice"


def test_status_resume_and_legacy_aliases(server: RunningServer) -> None:
    with client(server) as c:
        create(c, id="s1")
        for path in (f"{API}/session/s1/status", f"{API}/sessions/s1/status"):
            body = c.get(path).json()
            assert body["exists"] is True and body["alive"] is True
            assert isinstance(body["last_activity"], float)
        assert c.get(f"{API}/session/none/status").json() == {
            "exists": False,
            "alive": False,
            "last_activity": None,
        }
        before = c.get(f"{API}/sessions/s1").json()["last_activity"]
        resumed = c.put(f"{API}/sessions/s1/resume").json()
        assert resumed["ws_url"] == "/api/v1/terminal/ws/s1?reconnect=true"
        assert resumed["session"]["last_activity"] >= before
        legacy = c.get("/api/terminal/sessions").json()
        assert [s["id"] for s in legacy] == ["s1"]
        assert c.put("/api/terminal/sessions/s1/resume").json()["ws_url"] == (
            "/ws/terminal/s1?resume=true"
        )
        assert c.delete("/api/terminal/sessions/s1").status_code == 204


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"id": "bad id!"}, 422),
        ({"id": "x" * 65}, 422),
        ({"rows": 0}, 422),
        ({"command": []}, 422),
        ({"unknown": 1}, 422),
        ({"command": ["/no/such/program"]}, 400),
        ({"cwd": "/no/such/dir"}, 400),
    ],
)
def test_bad_create_bodies_are_4xx_and_create_nothing(
    server: RunningServer, body: dict[str, object], status: int
) -> None:
    with client(server) as c:
        r = c.post(f"{API}/sessions", json=body)
        assert r.status_code == status, r.text
        assert r.json()["detail"]
        assert c.get(f"{API}/sessions").json() == []


def test_malformed_json_is_422_not_500(server: RunningServer) -> None:
    with client(server) as c:
        r = c.post(
            f"{API}/sessions", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert r.status_code == 422
        r = c.patch(
            f"{API}/sessions/x", content=b"[]", headers={"content-type": "application/json"}
        )
        assert r.status_code in (404, 422)
        assert c.get("/api/v1/terminal/sessions/bad%20id").status_code == 422
        assert c.get("/healthz").status_code == 200


def test_per_user_limit_is_429(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(max_terminals_per_user=2)
    with client(server) as c, client(server, BOB) as bob:
        create(c)
        create(c)
        r = c.post(f"{API}/sessions", json={"command": SHELL})
        assert r.status_code == 429
        assert "close one" in r.json()["detail"]
        create(bob)  # the limit is per user


def test_server_limit_is_429(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(max_terminals=1)
    with client(server) as c, client(server, BOB) as bob:
        create(c)
        assert bob.post(f"{API}/sessions", json={"command": SHELL}).status_code == 429


def test_close_kills_the_whole_process_group(server: RunningServer) -> None:
    marker = b"sleep\x003017\x00"
    with client(server) as c:
        create(c, id="k", command=["/bin/sh", "-c", "sleep 3017 & wait"])
        pid = poll(lambda: pids_of(marker))[0]
        os.kill(pid, 0)  # alive
        assert c.delete(f"{API}/sessions/k").status_code == 204

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    poll(gone)


def test_process_that_ignores_sighup_is_killed_after_grace(server: RunningServer) -> None:
    ready = server.settings.data_dir / "homes" / "alice" / "ready"  # the session sees its home
    script = f"trap '' HUP; touch {ready}; while :; do sleep 1; done"
    with client(server) as c:
        create(c, id="stubborn", command=["/bin/sh", "-c", script])
        poll(ready.exists)
        started = time.monotonic()
        assert c.delete(f"{API}/sessions/stubborn").status_code == 204
        assert time.monotonic() - started < 10
        assert c.get(f"{API}/sessions/stubborn").status_code == 404


def test_exit_keeps_output_readable_until_timeout_then_cleanup_removes_it(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(session_timeout=1.0)
    with client(server) as c:
        create(c, id="done", command=["/bin/sh", "-c", "echo bye; exit 3"])
        info = poll(lambda: (s := c.get(f"{API}/sessions/done").json())["status"] == "closed" and s)
        assert info["exit_code"] == 3 and info["alive"] is False
        history = c.get(f"{API}/sessions/done/history").json()
        assert "bye" in "".join(e["data"] for e in history if e["type"] == "output")
        closed = poll(lambda: c.post(f"{API}/cleanup").json()["closed"], timeout=10)
        assert "done" in closed
        assert c.get(f"{API}/sessions/done").status_code == 404


def test_history_and_recording(server: RunningServer) -> None:
    with client(server) as c:
        create(
            c, id="h", command=["/bin/sh", "-c", "printf 'héllo\\n'; read x; echo got $x; sleep 30"]
        )
        poll(lambda: c.get(f"{API}/sessions/h").json()["output_end"] >= 7)
        server.call(lambda: server.core.terminals.write("alice", "h", b"42\n"))
        poll(lambda: "got 42" in json.dumps(c.get(f"{API}/sessions/h/history").json()))
        entries = c.get(f"{API}/sessions/h/history").json()
        kinds = [e["type"] for e in entries]
        assert "input" in kinds and "output" in kinds
        assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)
        text = "".join(e["data"] for e in entries if e["type"] == "output")
        assert "héllo" in text
        inputs = [e for e in entries if e["type"] == "input"]
        assert inputs[0]["data"] == "42\n" and inputs[0]["offset"] >= len("héllo\r\n".encode())
        later = c.get(f"{API}/sessions/h/history", params={"since": inputs[0]["offset"]}).json()
        assert all(e["offset"] >= inputs[0]["offset"] for e in later)
        assert len(c.get(f"{API}/sessions/h/history", params={"limit": 1}).json()) == 1
        assert c.get(f"{API}/sessions/h/history", params={"since": -1}).status_code == 422

        cast = c.get(f"{API}/sessions/h/recording.cast")
        assert cast.status_code == 200
        lines = cast.text.splitlines()
        header = json.loads(lines[0])
        assert header["version"] == 2 and header["width"] == 80 and header["height"] == 24
        events = [json.loads(line) for line in lines[1:]]
        assert all(isinstance(e[0], float | int) and e[1] in "oir" for e in events)
        assert "héllo" in "".join(e[2] for e in events if e[1] == "o")
        assert [e[0] for e in events] == sorted(e[0] for e in events)


def test_a_process_killed_by_a_signal_exits_with_128_plus_the_signal(server: RunningServer) -> None:
    with client(server) as c:
        info = create(c, id="sig", command=["/bin/sh", "-c", "kill -TERM $$"])
        assert info["id"] == "sig"
        done = poll(lambda: (s := c.get(f"{API}/sessions/sig").json())["status"] == "closed" and s)
        assert done["exit_code"] == 128 + signal.SIGTERM


def test_an_internal_error_is_a_json_500_and_the_server_lives_on(server: RunningServer) -> None:
    manager = server.core.terminals

    def broken(user: str) -> bytes:
        raise RuntimeError("a bug")

    original = manager.list_json
    manager.list_json = broken  # what the list of terminals asks of the host
    try:
        with httpx.Client(base_url=server.url, headers=auth(ALICE)) as c:
            r = c.get(f"{API}/sessions")
            assert r.status_code == 500
            assert "Internal error" in r.json()["detail"]
    finally:
        manager.list_json = original
    with client(server) as c:
        assert c.get(f"{API}/sessions").status_code == 200
