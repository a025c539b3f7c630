"""Sessions survive a restart of the web server (SPEC §8): real `hearth serve` processes on one
data directory, killed and started again, while a terminal streams and a kernel holds state."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.served import HEARTH, Served

TOKEN = "tok-rita-808"
H = {"Authorization": f"Bearer {TOKEN}"}
ENV = {"HEARTH_TOKENS": json.dumps({TOKEN: "rita"})}
COUNTER = "i=0; while :; do i=$((i+1)); echo $i; sleep 0.003; done"

Serve = Callable[..., Served]


async def read_from(port: int, id: str, since: int, want: int) -> tuple[int, bytes]:
    """Output of terminal ``id`` from ``since`` until at least ``want`` bytes came: (end, bytes).
    Every output frame must start where the last ended (nothing lost, nothing repeated)."""
    url = (
        f"ws://127.0.0.1:{port}/api/v1/terminal/ws/{id}?reconnect=true&since={since}&token={TOKEN}"
    )
    got, end = b"", since
    async with websockets.connect(url) as ws:
        while len(got) < want:
            message = await asyncio.wait_for(ws.recv(), 10)
            if isinstance(message, bytes):
                offset = int.from_bytes(message[1:9], "big")
                assert offset == end, f"a gap or a repeat: expected {end}, got {offset}"
                got += message[9:]
                end = offset + len(message) - 9
    return end, got


def counted(stream: bytes) -> list[int]:
    lines = stream.decode().split("\r\n")[:-1]  # the last one may be cut
    return [int(line) for line in lines]


def in_shell(port: int, id: str, line: str, until: str) -> str:
    """Type ``line`` into terminal ``id``; the output that follows, up to ``until``."""
    with httpx.Client(headers=H) as c:
        since = c.get(f"http://127.0.0.1:{port}/api/v1/terminal/sessions/{id}").json()["output_end"]

    async def type_it() -> str:
        url = f"ws://127.0.0.1:{port}/api/v1/terminal/ws/{id}?reconnect=true&token={TOKEN}"
        async with websockets.connect(f"{url}&since={since}") as ws:
            await ws.send(json.dumps({"type": "input", "data": line + "\n"}))
            got = b""
            deadline = time.monotonic() + 10
            while until.encode() not in got:
                assert time.monotonic() < deadline, f"no {until!r} in {got!r}"
                try:
                    message = await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    continue
                if isinstance(message, bytes):
                    got += message[9:]
            return got.decode()

    return asyncio.run(type_it())


def execute(c: httpx.Client, code: str) -> dict[str, Any]:
    r = c.post("/api/v1/sessions/k/execute", json={"code": code}, timeout=60)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def stop(served: Served, signum: int) -> None:
    served.proc.send_signal(signum)
    served.proc.wait(30)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_restart_of_the_web_server_loses_no_session_no_byte_and_no_variable(
    serve: Serve, tmp_path: Path, signum: int
) -> None:
    env = {**ENV, "HEARTH_SESSION_POOL_SIZE": "1"}
    served = serve("--data-dir", str(tmp_path / "d"), env=env)
    with httpx.Client(base_url=served.base, headers=H, timeout=60) as c:
        made = c.post(
            "/api/v1/terminal/sessions", json={"id": "count", "command": ["sh", "-c", COUNTER]}
        )
        assert made.status_code == 201, made.text
        assert (
            c.post(
                "/api/v1/terminal/sessions", json={"id": "sh", "command": ["/bin/sh"]}
            ).status_code
            == 201
        )
        assert c.post("/api/v1/sessions", json={"session_id": "k"}).status_code == 201
        assert execute(c, "import math\nx = 41")["status"] == "ok"
        assert c.put("/api/v1/sessions/k/files/kept.txt", content=b"still here").status_code in (
            200,
            201,
        )
    in_shell(served.port, "sh", "MINE=only-in-this-shell-$((6 * 7))", "$ ")
    host = served.host_pid()
    end, stream = asyncio.run(read_from(served.port, "count", 0, 2000))

    stop(served, signum)
    again = serve("--data-dir", str(tmp_path / "d"), env=env)
    assert again.host_pid() == host
    # the viewer resumes where it was: output made while no web server ran is there, once
    end, more = asyncio.run(read_from(again.port, "count", end, 2000))
    numbers = counted(stream + more)
    assert numbers == list(range(1, len(numbers) + 1))
    with httpx.Client(base_url=again.base, headers=H, timeout=60) as c:
        # the same shell: what it was told before, it still knows
        assert "only-in-this-shell-42" in in_shell(again.port, "sh", "echo $MINE", "-42")
        answer = execute(c, "print(x + 1, math.pi > 3, open('kept.txt').read())")
        assert answer["status"] == "ok", answer
        assert "".join(o.get("text", "") for o in answer["outputs"]).split() == [
            "42",
            "True",
            "still",
            "here",
        ]
        pool = c.get("/api/v1/pool").json()
        assert pool["ready"] == 1 and pool["active"] == 1
        info = c.get("/api/v1/terminal/sessions/count").json()
        assert info["alive"] and info["status"] != "closed"


def test_twenty_restarts_in_a_row_under_load_lose_and_repeat_nothing(
    serve: Serve, tmp_path: Path
) -> None:
    data = str(tmp_path / "d")
    served = serve("--data-dir", data, env=ENV)
    with httpx.Client(base_url=served.base, headers=H) as c:
        for id in ("a", "b"):
            made = c.post(
                "/api/v1/terminal/sessions", json={"id": id, "command": ["sh", "-c", COUNTER]}
            )
            assert made.status_code == 201, made.text
    ends = {"a": 0, "b": 0}
    streams = {"a": b"", "b": b""}
    host = served.host_pid()
    for round in range(20):
        for id in ends:
            ends[id], got = asyncio.run(read_from(served.port, id, ends[id], 300))
            streams[id] += got
        stop(served, signal.SIGKILL if round % 2 else signal.SIGTERM)
        served = serve("--data-dir", data, env=ENV)
    assert served.host_pid() == host
    for id in ends:
        numbers = counted(streams[id])
        assert numbers == list(range(1, len(numbers) + 1)), id
        assert len(numbers) > 20 * 300 // 5


def test_a_killed_host_ends_its_viewers_and_the_next_request_finds_its_sessions_lost(
    serve: Serve, tmp_path: Path
) -> None:
    served = serve("--data-dir", str(tmp_path / "d"), env=ENV)
    with httpx.Client(base_url=served.base, headers=H) as c:
        made = c.post(
            "/api/v1/terminal/sessions", json={"id": "t", "command": ["sh", "-c", COUNTER]}
        )
        assert made.status_code == 201

    host = served.host_pid()

    async def watch_the_host_die() -> tuple[int, int | None]:
        url = f"ws://127.0.0.1:{served.port}/api/v1/terminal/ws/t?reconnect=true&token={TOKEN}"
        end = 0
        async with websockets.connect(url) as ws:
            while end < 1000:
                message = await asyncio.wait_for(ws.recv(), 10)
                if isinstance(message, bytes):
                    end = int.from_bytes(message[1:9], "big") + len(message) - 9
            os.kill(host, signal.SIGKILL)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
        return end, closed.value.rcvd.code if closed.value.rcvd else None

    end, code = asyncio.run(watch_the_host_die())
    assert code == 1012  # "service restart": clients come back and resume
    with httpx.Client(base_url=served.base, headers=H, timeout=60) as c:
        # the server heals by itself (a new host), without waiting for a request
        deadline = time.monotonic() + 60
        while c.get("/healthz").status_code != 200:
            assert time.monotonic() < deadline, "no new session host"
            time.sleep(0.05)
        assert served.host_pid() != host
        info = c.get("/api/v1/terminal/sessions/t").json()
        assert info["status"] == "closed" and info["closed_reason"] == "host_lost"
        assert info["output_end"] >= end


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "(gone)"


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def test_shutdown_ends_the_host_and_every_process_of_every_session(
    serve: Serve, tmp_path: Path
) -> None:
    import subprocess

    data = tmp_path / "d"
    served = serve("--data-dir", str(data), env={**ENV, "HEARTH_SESSION_POOL_SIZE": "1"})
    with httpx.Client(base_url=served.base, headers=H, timeout=60) as c:
        assert c.post("/api/v1/terminal/sessions", json={"id": "t"}).status_code == 201
        assert c.post("/api/v1/sessions", json={"session_id": "k"}).status_code == 201
    host = served.host_pid()
    processes = descendants(host)
    assert len(processes) >= 3  # a shell, a kernel, a pooled kernel (and their sandboxes)
    served.stop()  # first the web server (a running one would start a new, empty host at once)
    done = subprocess.run(
        [*HEARTH, "shutdown", "--data-dir", str(data)], capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stderr
    assert f"pid {host}" in done.stdout
    deadline = time.monotonic() + 10  # (reaped by init: they are not our children)
    while left := [p for p in [host, *processes] if Path(f"/proc/{p}").exists()]:
        assert time.monotonic() < deadline, f"left running: {[cmdline(p) for p in left]}"
        time.sleep(0.01)
    assert not (data / "host.sock").exists()
    # and the sessions ended as if deleted: the next server's new host starts empty
    again = serve("--data-dir", str(data), env=ENV)
    assert again.host_pid() != host
    with httpx.Client(base_url=again.base, headers=H, timeout=60) as c:
        assert c.get("/api/v1/terminal/sessions").json() == []
        assert c.get("/api/v1/sessions").json() == []


def test_a_server_whose_settings_differ_from_the_running_hosts_says_which_and_what_to_do(
    serve: Serve, tmp_path: Path
) -> None:
    data = str(tmp_path / "d" / ".." / "d")  # however the path is written
    first = serve("--data-dir", data, env={**ENV, "HEARTH_MAX_BUFFER_SIZE": "500"})
    assert "other settings" not in first.stop()  # the host it started has its settings
    second = serve("--data-dir", data, env=ENV)
    err = second.stop()
    assert "other settings" in err and "hearth shutdown" in err and "max_buffer_size" in err
    assert "500" in err
