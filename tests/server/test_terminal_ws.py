"""The terminal websocket (SPEC §3.3–§3.5) on a real server: exact resume, viewers, exit."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ALICE, BOB, RunningServer
from tests.server.termclient import SHELL, TermClient, close_code_of

API = "/api/v1/terminal"


def rest(server: RunningServer, token: str = ALICE) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


async def make(
    server: RunningServer, id: str, command: list[str] | None = None, **body: object
) -> dict:  # type: ignore[type-arg]
    async with rest(server) as c:
        r = await c.post(f"{API}/sessions", json={"id": id, "command": command or SHELL, **body})
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]


async def poll_info(server: RunningServer, id: str, predicate, timeout: float = 15):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    async with rest(server) as c:
        while True:
            info = (await c.get(f"{API}/sessions/{id}")).json()
            if predicate(info):
                return info
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met: {info}")
            await asyncio.sleep(0.02)


def seq_output(n: int) -> bytes:
    return b"".join(b"%d\r\n" % i for i in range(1, n + 1))


async def test_hello_echo_and_frame_layout(server: RunningServer) -> None:
    t = await TermClient.connect(server.ws_url, "e1", ALICE, rows=40, cols=120)
    hello = t.hello
    assert hello["session"]["id"] == "e1" and hello["session"]["status"] == "active"
    assert (hello["session"]["rows"], hello["session"]["cols"]) == (40, 120)
    assert hello["replay_from"] == 0 and hello["missed_bytes"] == 0
    await t.send(b"stty size; echo $TERM\n")
    out = await t.read_until(b"xterm-256color\r\n")
    assert b"40 120" in out
    done = await t.frame("replay_done")
    assert done["offset"] == hello["replay_from"] + hello["replay_bytes"]
    assert t.first_offset == 0
    await t.send(json.dumps({"type": "input", "data": "echo té$((6*7))xt\n"}))
    await t.read_until("té42xt".encode())
    await t.close()


async def test_disconnect_during_seq_then_resume_gets_exactly_the_rest(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(max_buffer_size=200_000, max_buffer_bytes=8 * 1024 * 1024)
    await make(server, "seq", ["/bin/sh", "-c", "read go; seq 1 100000; echo END; sleep 60"])
    t = await TermClient.connect(server.ws_url, "seq", ALICE, reconnect="true")
    await t.send(b"go\n")
    await t.read_until(b"\r\n5000")  # well inside the stream
    seen = t.next_offset
    assert seen is not None
    await t.close()  # drop in the middle of the output
    info = await poll_info(server, "seq", lambda i: i["output_end"] > seen + 100_000)
    t2 = await TermClient.connect(server.ws_url, "seq", ALICE, reconnect="true", since=seen)
    assert t2.hello["replay_from"] == seen and t2.hello["missed_bytes"] == 0
    await t2.read_until(b"END\r\n")
    whole = bytes(t.output) + bytes(t2.output)
    expected = b"go\r\n" + seq_output(100_000) + b"END\r\n"
    assert whole == expected  # nothing lost, nothing repeated
    assert t2.first_offset == seen
    assert info["output_start"] == 0
    await t2.close()


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(cuts=st.lists(st.integers(min_value=1, max_value=60_000), min_size=1, max_size=4))
def test_resume_is_exact_at_any_cut(shared_server: RunningServer, cuts: list[int]) -> None:
    """Property: whatever number of bytes a viewer takes before its connection drops, resuming
    from its offset yields exactly the rest of the stream."""

    async def scenario() -> None:
        id = f"p{time.monotonic_ns()}"
        await make(shared_server, id, ["/bin/sh", "-c", "read go; seq 1 20000; echo END; sleep 60"])
        expected = b"go\r\n" + seq_output(20000) + b"END\r\n"
        got = bytearray()
        since: dict[str, int] = {}
        for i, cut in enumerate([*cuts, len(expected)]):
            t = await TermClient.connect(shared_server.ws_url, id, ALICE, reconnect="true", **since)
            if i == 0:
                await t.send(b"go\n")
            want = min(cut, len(expected) - len(got))
            while len(t.output) < want:
                assert await t.recv_one() is not None
            got += t.output
            if t.next_offset is not None:
                since = {"since": t.next_offset}
            await t.close()
        assert bytes(got) == expected
        async with rest(shared_server) as c:
            assert (await c.delete(f"{API}/sessions/{id}")).status_code == 204

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):  # type: ignore[no-untyped-def]
    from hearth.config import Settings
    from tests.conftest import TOKENS, start_server

    running = start_server(
        Settings(
            host="127.0.0.1",
            port=0,
            data_dir=tmp_path_factory.mktemp("shared"),
            tokens=TOKENS,
            session_pool_size=0,
            max_buffer_size=100_000,
            max_buffer_bytes=4 * 1024 * 1024,
        )
    )
    yield running
    running.stop()


async def test_since_older_than_buffer_reports_exact_missed_bytes(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(max_buffer_size=10, max_buffer_bytes=4096)
    await make(server, "small", ["/bin/sh", "-c", "seq 1 100; echo END; sleep 60"])
    info = await poll_info(server, "small", lambda i: i["output_end"] >= len(seq_output(100)) + 5)
    start = info["output_start"]
    assert start > 0
    t = await TermClient.connect(server.ws_url, "small", ALICE, reconnect="true", since=0)
    assert t.hello["missed_bytes"] == start
    assert t.hello["replay_from"] == start
    assert t.hello["replay_bytes"] == info["output_end"] - start
    await t.read_until(b"END\r\n")
    # the buffer holds the last 10 lines whole
    assert bytes(t.output) == b"".join(b"%d\r\n" % i for i in range(92, 101)) + b"END\r\n"
    await t.close()


async def test_since_beyond_end_is_4400(server: RunningServer) -> None:
    await make(server, "b")
    code = await close_code_of(
        server.ws_url, f"{API}/ws/b?token={ALICE}&reconnect=true&since=999999"
    )
    assert code == 4400


@pytest.mark.parametrize(
    "query", ["since=-1", "since=abc", "rows=0&cols=10", "reconnect=maybe", "cols=100000&rows=5"]
)
async def test_bad_query_is_4400(server: RunningServer, query: str) -> None:
    await make(server, "q")
    code = await close_code_of(server.ws_url, f"{API}/ws/q?token={ALICE}&reconnect=true&{query}")
    assert code == 4400


async def test_invalid_id_is_4400_and_no_token_4401(server: RunningServer) -> None:
    assert await close_code_of(server.ws_url, f"{API}/ws/bad!id?token={ALICE}") == 4400
    assert await close_code_of(server.ws_url, f"{API}/ws/fine") == 4401
    assert await close_code_of(server.ws_url, f"{API}/ws/fine?token=wrong-token") == 4401


async def test_reconnect_to_missing_or_foreign_session_is_4404(server: RunningServer) -> None:
    await make(server, "mine")
    assert await close_code_of(server.ws_url, f"{API}/ws/nope?token={ALICE}&reconnect=true") == 4404
    assert await close_code_of(server.ws_url, f"{API}/ws/mine?token={BOB}&reconnect=true") == 4404
    assert (
        await close_code_of(server.ws_url, f"/ws/terminal/nope?token={ALICE}&resume=true") == 4404
    )


async def test_reconnect_false_attaches_to_existing_and_never_kills_it(
    server: RunningServer,
) -> None:
    t = await TermClient.connect(server.ws_url, "keep", ALICE)
    await t.send(b"export MARK=kept-$((20+22))\n")
    await t.close()
    t2 = await TermClient.connect(server.ws_url, "keep", ALICE, reconnect="false")
    await t2.send(b"echo $MARK\n")
    await t2.read_until(b"kept-42\r\n")
    await t2.close()


async def test_legacy_ws_path(server: RunningServer) -> None:
    await make(server, "old")
    import websockets

    async with websockets.connect(
        f"{server.ws_url}/ws/terminal/old?token={ALICE}&resume=true"
    ) as ws:
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello" and hello["session"]["id"] == "old"


async def test_origin_check(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(allowed_origins=["https://ide.example"])
    await make(server, "o")
    path = f"{API}/ws/o?token={ALICE}&reconnect=true"
    import websockets

    assert await close_code_of(server.ws_url, path, origin="https://evil.example") == 4403
    for origin in (f"http://127.0.0.1:{server.port}", "https://ide.example"):
        async with websockets.connect(server.ws_url + path, origin=origin) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"


async def test_bad_frames_get_error_frames_and_the_connection_stays(server: RunningServer) -> None:
    t = await TermClient.connect(server.ws_url, "f", ALICE)
    for bad in [
        "{not json",
        "[1,2]",
        '{"type": "launch"}',
        '{"type":"resize","rows":0,"cols":5}',
        '{"type":"input"}',
        '{"no":"type"}',
    ]:
        await t.send(bad)
        error = await t.frame("error")
        assert error["message"]
    await t.send('{"type":"ping"}')
    await t.frame("pong")
    await t.send(b"echo still-$((1+1))\n")
    await t.read_until(b"still-2\r\n")
    await t.close()


async def test_oversize_input_is_refused_with_an_error_frame(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(max_input_bytes=1000)
    t = await TermClient.connect(server.ws_url, "big", ALICE)
    await t.send(b"x" * 5000)
    assert "smaller pieces" in (await t.frame("error"))["message"]
    await t.send(b"echo ok-$((3*3))\n")
    await t.read_until(b"ok-9\r\n")
    await t.close()


async def test_resize_is_told_to_other_viewers_and_viewer_counts(server: RunningServer) -> None:
    a = await TermClient.connect(server.ws_url, "r", ALICE)
    assert (await a.frame("viewers"))["count"] == 1
    b = await TermClient.connect(server.ws_url, "r", ALICE, reconnect="true")
    assert (await a.frame("viewers"))["count"] == 2
    await a.send(json.dumps({"type": "resize", "rows": 33, "cols": 101}))
    assert await b.frame("resize") == {"type": "resize", "rows": 33, "cols": 101}
    await b.send(b"stty size\n")
    await b.read_until(b"33 101\r\n")
    await poll_info(server, "r", lambda i: (i["rows"], i["cols"], i["viewers"]) == (33, 101, 2))
    await b.close()
    assert (await a.frame("viewers"))["count"] == 1
    assert not any(f["type"] == "resize" for f in a.frames)  # the resizer is not told
    await a.close()
    await poll_info(server, "r", lambda i: i["status"] == "disconnected" and i["expires_at"])


async def test_exit_frame_and_attaching_to_an_exited_session(server: RunningServer) -> None:
    t = await TermClient.connect(server.ws_url, "x", ALICE)
    await t.send(b"echo last words; exit 7\n")
    assert (await t.frame("exit"))["exit_code"] == 7
    assert await t.until_closed() == 1000
    info = await poll_info(server, "x", lambda i: i["status"] == "closed")
    assert info["exit_code"] == 7 and info["alive"] is False
    again = await TermClient.connect(server.ws_url, "x", ALICE, reconnect="true")
    await again.read_until(b"last words\r\n")
    assert (await again.frame("exit"))["exit_code"] == 7
    assert await again.until_closed() == 1000
    assert bytes(again.output) == bytes(t.output)


async def test_input_to_an_exited_session_is_an_error_frame(server: RunningServer) -> None:
    await make(server, "gone", ["/bin/sh", "-c", "read x; exit 0"])
    t = await TermClient.connect(server.ws_url, "gone", ALICE, reconnect="true")
    await t.send(b"\n")
    await t.frame("exit")
    await t.until_closed()


async def test_a_watched_session_never_times_out(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(session_timeout=0.3)
    watched = await TermClient.connect(server.ws_url, "watched", ALICE)
    await make(server, "idle")
    async with rest(server) as c:
        deadline = time.monotonic() + 10
        while "idle" not in (closed := (await c.post(f"{API}/cleanup")).json()["closed"]):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert "watched" not in closed
        assert (await c.get(f"{API}/sessions/watched")).status_code == 200
        assert (await c.get(f"{API}/sessions/idle")).status_code == 404
    await watched.send(b"echo alive\n")
    await watched.read_until(b"alive\r\n")
    await watched.close()


async def test_cleanup_loop_runs_by_itself(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(session_timeout=0.2, cleanup_interval=0.1)
    await make(server, "short")
    async with rest(server) as c:
        deadline = time.monotonic() + 10
        while (await c.get(f"{API}/sessions/short")).status_code != 404:
            assert time.monotonic() < deadline, "the cleanup loop did not remove the session"
            await asyncio.sleep(0.05)


async def test_stalled_viewer_does_not_block_the_shell_or_others(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(max_buffer_bytes=64 * 1024, max_buffer_size=100_000)
    cmd = [
        "/bin/sh",
        "-c",
        "read go; head -c 30000000 /dev/zero | tr '\\0' 'x'; echo; echo END; sleep 60",
    ]
    await make(server, "flood", cmd)
    stalled = await TermClient.connect(server.ws_url, "flood", ALICE, reconnect="true")
    live = await TermClient.connect(server.ws_url, "flood", ALICE, reconnect="true")
    await live.send(b"go\n")
    await live.read_until(b"END\r\n", timeout=60)  # the stalled viewer reads nothing meanwhile
    info = await poll_info(server, "flood", lambda i: i["output_end"] > 30_000_000)
    assert info["alive"]
    # the stalled viewer resumes: it is told what it missed, and the rest arrives exactly
    missed = await stalled.frame("missed", timeout=30)
    assert missed["missed_bytes"] > 0
    await stalled.read_until(b"END\r\n", timeout=30)
    await stalled.close()
    await live.close()


async def test_a_slow_viewer_alone_loses_nothing(make_server) -> None:  # type: ignore[no-untyped-def]
    """Backpressure: with a tiny buffer, a viewer that reads slower than the program writes
    still gets every byte (the program waits, as on a real terminal)."""
    server = make_server(max_buffer_size=5, max_buffer_bytes=1024)
    await make(server, "slow", ["/bin/sh", "-c", "read go; seq 1 30000; echo END; sleep 60"])
    t = await TermClient.connect(server.ws_url, "slow", ALICE, reconnect="true")
    await t.send(b"go\n")
    while b"END\r\n" not in t.output[-64:]:
        assert await t.recv_one() is not None
        await asyncio.sleep(0.0005)  # a slow consumer (not a synchronisation)
    assert bytes(t.output) == b"go\r\n" + seq_output(30000) + b"END\r\n"
    assert not any(f["type"] == "missed" for f in t.frames)
    await t.close()


async def test_total_buffer_cap_drops_idle_sessions_output_first(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(
        max_total_buffer_bytes=300_000, max_buffer_bytes=250_000, max_buffer_size=100_000
    )
    await make(server, "old-idle", ["/bin/sh", "-c", "seq 1 30000; sleep 60"])
    await poll_info(server, "old-idle", lambda i: i["output_end"] >= len(seq_output(30000)))
    watched = await TermClient.connect(server.ws_url, "busy", ALICE)
    await watched.send(b'seq 1 30000; echo EN""D\n')
    await watched.read_until(b"END\r\n")
    idle = await poll_info(server, "old-idle", lambda i: True)
    busy = await poll_info(server, "busy", lambda i: True)
    total = server.call(lambda: server.core.terminals.total_buffered_bytes)
    assert total <= 300_000
    assert idle["output_start"] > 0  # the idle session paid
    assert busy["output_end"] - busy["output_start"] > idle["output_end"] - idle["output_start"]
    await watched.close()


async def test_metrics_count_sessions_and_bytes(server: RunningServer) -> None:
    t = await TermClient.connect(server.ws_url, "m", ALICE)
    await t.send(b"echo metric-$((2*2))\n")
    await t.read_until(b"metric-4\r\n")
    async with httpx.AsyncClient(base_url=server.url) as c:
        text = (await c.get("/metrics")).text
    assert 'hearth_sessions{kind="terminal",status="active"} 1.0' in text
    assert 'hearth_websockets_open{kind="terminal"} 1.0' in text
    streamed = [
        line for line in text.splitlines() if line.startswith("hearth_bytes_streamed_total")
    ]
    assert streamed and float(streamed[0].split()[-1]) > 0
    await t.close()


async def test_viewer_that_stops_answering_pings_is_dropped_and_the_session_stays(
    make_server,
) -> None:  # type: ignore[no-untyped-def]
    import base64
    import os
    import socket

    server = make_server(heartbeat_interval=0.2)
    await make(server, "hb")
    sock = socket.create_connection(("127.0.0.1", server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {API}/ws/hb?token={ALICE}&reconnect=true HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    assert sock.recv(4096).startswith(b"HTTP/1.1 101")
    try:
        await poll_info(server, "hb", lambda i: i["viewers"] == 1)
        # this client never answers a ping: dropped after two intervals, session kept
        info = await poll_info(server, "hb", lambda i: i["viewers"] == 0, timeout=10)
        assert info["alive"] and info["status"] == "disconnected"
    finally:
        sock.close()


async def test_websocket_connections_use_tcp_nodelay(server: RunningServer) -> None:
    import socket

    t = await TermClient.connect(server.ws_url, "nd", ALICE)

    def nodelay(conn: Any) -> int:
        sock = conn.transport.get_extra_info("socket")
        return int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    flags = server.on_websockets(nodelay)
    assert flags and all(flags)
    await t.close()


async def test_last_activity_moves_on_connect_input_output_and_disconnect(
    server: RunningServer,
) -> None:
    created = await make(server, "la", ["/bin/sh", "-c", "read x; echo got-$x; read y"])
    assert created["expires_at"] is not None
    t = await TermClient.connect(server.ws_url, "la", ALICE, reconnect="true")
    assert t.hello["session"]["expires_at"] is None  # watched: no expiry
    on_connect = t.hello["session"]["last_activity"]
    assert on_connect > created["last_activity"]
    await t.send(b"1\n")
    await t.read_until(b"got-1\r\n")
    after_io = await poll_info(server, "la", lambda i: i["last_activity"] > on_connect)
    assert after_io["expires_at"] is None
    await t.close()
    after_close = await poll_info(
        server, "la", lambda i: i["viewers"] == 0 and i["last_activity"] > after_io["last_activity"]
    )
    assert after_close["expires_at"] == pytest.approx(after_close["last_activity"] + 3600)


def test_shutdown_with_a_viewer_closing_while_blocked_does_not_crash(make_server) -> None:  # type: ignore[no-untyped-def]
    """A viewer that stops reading, then sends its close frame while the server is blocked
    sending output to it, used to make uvicorn's shutdown raise InvalidState."""
    import base64
    import os
    import socket
    import struct

    server = make_server()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ALICE}"}) as c:
        assert c.post(f"{API}/sessions", json={"id": "y", "command": ["yes"]}).status_code == 201
    sock = socket.create_connection(("127.0.0.1", server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {API}/ws/y?token={ALICE}&reconnect=true HTTP/1.1\r\nHost: x\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    deadline = time.monotonic() + 10
    while server.call(lambda: server.core.terminals.get("alice", "y").viewers) != 1:
        assert time.monotonic() < deadline

    def send_blocked() -> bool:  # the server's transport to this socket is full
        return any(server.on_websockets(lambda conn: not conn.writable.is_set()))

    while not send_blocked():
        assert time.monotonic() < deadline, "the server never blocked sending to the viewer"
        time.sleep(0.02)
    payload = struct.pack(">H", 1000)
    mask = os.urandom(4)
    sock.sendall(bytes([0x88, 0x82]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    server.stop()  # a crash of the server thread would fail this test (unhandled thread exception)
    assert not server.thread.is_alive()
    sock.close()
