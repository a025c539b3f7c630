"""Limits (SPEC §7): a session over its limit suffers alone and is told why."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import websockets

from tests.client.helpers import poll
from tests.conftest import ALICE, BOB, RunningServer

pytestmark = pytest.mark.skipif(
    not Path("/usr/bin/bwrap").exists() and os.environ.get("CI") != "true",
    reason="needs bubblewrap (apt-get install bubblewrap)",
)

H_ALICE = {"Authorization": f"Bearer {ALICE}"}
H_BOB = {"Authorization": f"Bearer {BOB}"}
MEMORY = 256 << 20


@pytest.fixture
def limited(make_server: Callable[..., RunningServer]) -> RunningServer:
    server = make_server(session_memory_limit=MEMORY, session_pids_limit=64)
    if server.core.sandbox.limits_mode == "none":
        pytest.fail("limits are off: no cgroup and no rlimit")
    return server


def execute(server: RunningServer, headers: dict[str, str], sid: str, code: str) -> dict:  # type: ignore[type-arg]
    r = httpx.post(
        f"{server.url}/api/v1/sessions/{sid}/execute",
        json={"code": code},
        headers=headers,
        timeout=120,
    )
    r.raise_for_status()
    answer: dict = r.json()  # type: ignore[type-arg]
    return answer


def test_a_memory_bomb_fails_only_that_kernel_which_comes_back(limited: RunningServer) -> None:
    for headers, sid in ((H_ALICE, "bomb"), (H_BOB, "calm")):
        httpx.post(
            f"{limited.url}/api/v1/sessions", json={"session_id": sid}, headers=headers, timeout=60
        ).raise_for_status()
    execute(limited, H_BOB, "calm", "kept = 41")
    # 1 GiB, touched page by page: over the limit whether it is enforced at allocation (rlimit:
    # MemoryError) or when the pages are used (cgroup: the kernel is killed)
    answer = execute(limited, H_ALICE, "bomb", "b = bytearray(1 << 30)")
    assert answer["status"] == "error", answer
    error = next(o for o in answer["outputs"] if o["output_type"] == "error")
    assert error["ename"] in ("MemoryError", "DeadKernelError"), error
    if error["ename"] == "DeadKernelError":
        assert f"memory limit ({MEMORY >> 20} MiB)" in error["evalue"], error
        assert answer["restarted"] is True
    back = execute(limited, H_ALICE, "bomb", "print(6 * 7)")
    assert back["status"] == "ok" and back["outputs"][0]["text"] == "42\n", back
    calm = execute(limited, H_BOB, "calm", "print(kept + 1)")
    assert calm["outputs"][0]["text"] == "42\n" and not calm["restarted"], calm
    assert httpx.get(f"{limited.url}/healthz").json()["status"] == "ok"


async def _echo_times(server: RunningServer, token: str, id: str, count: int) -> list[float]:
    """Round trips of a keystroke through bob's shell (cat echoes each line back)."""
    url = f"{server.ws_url}/api/v1/terminal/ws/{id}?token={token}&reconnect=true"
    times = []
    async with websockets.connect(url) as ws:
        for i in range(count):
            started = time.monotonic()
            await ws.send(f"ping-{i}\n".encode())
            seen = b""
            while f"ping-{i}\r\n".encode() * 2 not in seen:
                message = await asyncio.wait_for(ws.recv(), 10)
                if isinstance(message, bytes):
                    seen += message[9:]
            times.append(time.monotonic() - started)
    return times


def test_a_fork_bomb_stops_at_the_pids_limit_while_another_shell_echoes(
    limited: RunningServer,
) -> None:
    home = limited.settings.data_dir / "homes" / "alice"
    # dash gives up ("Cannot fork") and exits when fork fails; the file keeps the count
    bomb = "n=0; while [ $n -lt 200 ]; do sleep 30 & n=$((n+1)); echo $n > ~/forks; done; wait"
    for headers, id, command in (
        (H_BOB, "echo", ["/bin/cat"]),
        (H_ALICE, "bomb", ["/bin/sh", "-c", bomb]),
    ):
        r = httpx.post(
            f"{limited.url}/api/v1/terminal/sessions",
            json={"id": id, "command": command},
            headers=headers,
        )
        assert r.status_code == 201, r.text
    times = asyncio.run(_echo_times(limited, BOB, "echo", 20))
    info = poll(
        lambda: (
            (i := httpx.get(f"{limited.url}/api/v1/terminal/sessions/bomb", headers=H_ALICE))
            and not i.json()["alive"]
            and i.json()
        ),
        30,
        what="the fork bomb to hit the limit",
    )
    started = int((home / "forks").read_text())
    assert started < 64 and info["exit_code"] != 0, (started, info)  # fork failed at the limit
    assert max(times) < 2.0, times  # bob's shell answered throughout
    assert httpx.get(f"{limited.url}/healthz").json()["status"] == "ok"


def _history(server: RunningServer, id: str) -> list[dict]:  # type: ignore[type-arg]
    r = httpx.get(f"{server.url}/api/v1/terminal/sessions/{id}/history", headers=H_ALICE)
    r.raise_for_status()
    return r.json()  # type: ignore[no-any-return]


def test_a_terminal_is_told_when_the_memory_limit_kills_one_of_its_processes(
    limited: RunningServer,
) -> None:
    # tail keeps a line without newlines whole: it grows until the limit kills it; the shell
    # goes on, and so does the session
    script = "head -c 2000000000 /dev/zero | tail >/dev/null; echo TAIL-ENDED $?; exec cat"
    r = httpx.post(
        f"{limited.url}/api/v1/terminal/sessions",
        json={"id": "oom", "command": ["/bin/sh", "-c", script]},
        headers=H_ALICE,
    )
    assert r.status_code == 201, r.text
    told = f"a process was killed for going over the session's memory limit ({MEMORY >> 20} MiB)"
    entries = poll(
        lambda: (h := _history(limited, "oom")) and any(e["data"] == told for e in h) and h,
        30,
        what="the history to tell of the kill",
    )
    output = "".join(e["data"] for e in entries if e["type"] == "output")
    assert "TAIL-ENDED 137" in output  # SIGKILL, from the cgroup's OOM killer
    info = httpx.get(f"{limited.url}/api/v1/terminal/sessions/oom", headers=H_ALICE).json()
    assert info["alive"] is True


def test_a_terminal_whose_shell_the_memory_limit_kills_exits_saying_why(
    limited: RunningServer,
) -> None:
    r = httpx.post(
        f"{limited.url}/api/v1/terminal/sessions",
        json={"id": "oom2", "command": ["/usr/bin/tail", "/dev/zero"]},
        headers=H_ALICE,
    )
    assert r.status_code == 201, r.text
    entries = poll(
        lambda: (h := _history(limited, "oom2")) and any(e["type"] == "system" for e in h) and h,
        30,
        what="the session to end",
    )
    [system] = [e for e in entries if e["type"] == "system"]
    assert system["data"] == (
        "exited 137: a process was killed for going over the session's memory limit "
        f"({MEMORY >> 20} MiB)"
    )


def test_a_stopped_server_leaves_no_cgroup_behind(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(session_memory_limit=MEMORY, session_pids_limit=64)
    cgroups = server.core.sandbox._cgroups
    if cgroups is None:
        pytest.fail("limits are not in cgroups here")
    bases = [Path(b) for b in cgroups.layout.bases.values()]
    r = httpx.post(
        f"{server.url}/api/v1/terminal/sessions",
        json={"command": ["/bin/sh", "-c", "exec sleep 600"]},
        headers=H_ALICE,
    )
    assert r.status_code == 201, r.text
    assert all(any(base.iterdir()) for base in bases)  # the session's cgroup, and the spare's
    server.stop()
    assert [b for b in bases if b.exists()] == []


def test_a_session_holds_at_most_session_nofile_limit_open_files_and_cant_raise_it(
    make_server: Callable[..., RunningServer],
) -> None:
    """SPEC §7.1: the limit is the soft and the hard one, set inside the sandbox, so neither a
    terminal nor a kernel can raise it again."""
    server = make_server(session_nofile_limit=300)
    script = (
        "echo NOFILE $(ulimit -Sn) $(ulimit -Hn); "
        "if (ulimit -Hn 400) 2>/dev/null; then echo RAISED; else echo REFUSED; fi; exec cat"
    )
    r = httpx.post(
        f"{server.url}/api/v1/terminal/sessions",
        json={"id": "nofile", "command": ["/bin/sh", "-c", script]},
        headers=H_ALICE,
    )
    assert r.status_code == 201, r.text
    entries = poll(
        lambda: (h := _history(server, "nofile")) and "ED\r\n" in _text(h) and h,
        30,
        what="the shell's limits",
    )
    assert "NOFILE 300 300\r\nREFUSED" in _text(entries), _text(entries)

    httpx.post(
        f"{server.url}/api/v1/sessions", json={"session_id": "nf"}, headers=H_ALICE, timeout=60
    ).raise_for_status()
    code = (
        "import resource\n"
        "print(*resource.getrlimit(resource.RLIMIT_NOFILE))\n"
        "try:\n"
        "    resource.setrlimit(resource.RLIMIT_NOFILE, (300, 400))\n"
        "    print('RAISED')\n"
        "except (ValueError, OSError) as exc:\n"
        "    print('REFUSED', exc)\n"
    )
    answer = execute(server, H_ALICE, "nf", code)
    text = "".join(o.get("text", "") for o in answer["outputs"])
    assert text.startswith("300 300\nREFUSED"), answer


def _text(entries: list[dict]) -> str:  # type: ignore[type-arg]
    return "".join(e["data"] for e in entries if e["type"] == "output")
