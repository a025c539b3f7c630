"""A cell that floods output to a client that does not read costs the session host bounded
memory (``hearth.kernels.backlog``), whichever way the client reads a kernel: the HTTP execute
stream, the kernel websocket, or a Jupyter client's channels. The output past the bound is
dropped, with a notice of how much, and the execution's status still arrives. A real
``hearth serve`` and its session host."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import websockets

from tests.jupyter.kernelsocket import KernelSocket

TOKEN = "tok-fay-51"
H = {"Authorization": f"Bearer {TOKEN}"}
ENV = {"HEARTH_TOKENS": json.dumps({TOKEN: "fay"})}
FLOOD = 300 << 20  # bytes the cell prints
# Lines of 20 kB: besides the backlog, the host's ZeroMQ socket queues up to 1000 messages it
# has not read yet (its receive high-water mark), 20 MB of these when the host is slowed down
LINE = 20_000
CODE = f"""
line = 'x' * {LINE - 1}
for _ in range({FLOOD // LINE}):
    print(line, flush=True)
open('flooded', 'w').close()
"""


def rss(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) << 10
    raise AssertionError(f"no {field} for {pid}")


def files(c: httpx.Client) -> list[str]:
    return [f["path"] for f in c.get("/api/v1/sessions/k1/files").json()]


def test_a_flood_to_a_client_that_does_not_read_costs_the_host_bounded_memory(
    serve, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    served = serve("--data-dir", str(tmp_path), env=ENV)
    pid = served.host_pid()
    with httpx.Client(base_url=served.base, headers=H, timeout=60) as c:
        assert c.post("/api/v1/sessions", json={"session_id": "k1"}).status_code == 201
        r = c.post("/api/v1/sessions/k1/execute", json={"code": "print('warm')"})
        assert r.json()["status"] == "ok"
        before = rss(pid)
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM from now on
        events = []
        with c.stream("POST", "/api/v1/sessions/k1/execute?stream=true", json={"code": CODE}) as r:
            assert r.status_code == 200
            wait_flooded(c)
            # the host has all of it by now, or a little after: then read it
            events = [json.loads(line) for line in r.iter_lines()]
        growth = rss(pid, "VmHWM") - before
    print(f"session host RSS {before >> 20} MiB, grew by at most {growth >> 20} MiB")
    assert growth < 90 << 20, f"the host grew by {growth >> 20} MiB for a {FLOOD >> 20} MiB flood"
    assert events[-1]["type"] == "done" and events[-1]["status"] == "ok"
    assert isinstance(events[-1]["execution_count"], int)
    printed = sum(len(e["text"]) for e in events if e.get("name") == "stdout")
    notices = [e["text"] for e in events if e.get("name") == "stderr"]
    assert printed < FLOOD // 2 and notices, (printed, notices)
    assert all("Hearth dropped" in text for text in notices)


def flood_while_unread(served, read: Callable[[], list[dict]]) -> tuple[int, list[dict]]:  # type: ignore[no-untyped-def, type-arg]
    """The host's RSS growth while ``read`` (which starts the flood and reads nothing until the
    cell has printed it all) runs, and what it read."""
    pid = served.host_pid()
    before = rss(pid)
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM from now on
    got = read()
    return rss(pid, "VmHWM") - before, got


def wait_flooded(c: httpx.Client) -> None:
    deadline = time.monotonic() + 60
    while "flooded" not in files(c):
        assert time.monotonic() < deadline, "the cell did not finish printing"
        time.sleep(0.1)


def test_a_flood_to_a_kernel_websocket_that_does_not_read_costs_bounded_memory(
    serve, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    served = serve("--data-dir", str(tmp_path), env=ENV)
    with httpx.Client(base_url=served.base, headers=H, timeout=60) as c:
        assert c.post("/api/v1/sessions", json={"session_id": "k1"}).status_code == 201
        url = f"ws://127.0.0.1:{served.port}/api/v1/sessions/k1/ws?token={TOKEN}"

        async def read() -> list[dict]:  # type: ignore[type-arg]
            async with websockets.connect(url, max_size=None) as ws:
                await ws.send(json.dumps({"type": "execute", "code": CODE, "request_id": "f"}))
                await asyncio.to_thread(wait_flooded, c)
                events = []
                while not events or events[-1]["type"] != "done":
                    event = json.loads(await asyncio.wait_for(ws.recv(), 60))
                    if event.get("request_id") == "f":
                        events.append(event)
                return events

        growth, events = flood_while_unread(served, lambda: asyncio.run(read()))
    print(f"session host grew by at most {growth >> 20} MiB")
    assert growth < 90 << 20, f"the host grew by {growth >> 20} MiB for a {FLOOD >> 20} MiB flood"
    assert events[-1]["status"] == "ok"
    printed = sum(len(e["text"]) for e in events if e.get("name") == "stdout")
    notices = [e["text"] for e in events if e.get("name") == "stderr"]
    assert printed < FLOOD // 2 and notices and all("Hearth dropped" in n for n in notices)


# Results are kept past the first bound (a client must see them), but not past a second: a cell
# can send those in a loop too.
RESULTS = f"""
import sys
get_ipython().displayhook.do_full_cache = False  # no Out history: the kernel stays small
line = 'x' * {LINE - 1}
for _ in range({100 * 2**20 // LINE}):
    sys.displayhook(line)
open('flooded', 'w').close()
"""


@pytest.mark.parametrize("code", [CODE, RESULTS], ids=["printed", "results"])
def test_a_flood_to_a_jupyter_client_that_does_not_read_costs_bounded_memory(
    serve, tmp_path: Path, code: str
) -> None:  # type: ignore[no-untyped-def]
    served = serve("--data-dir", str(tmp_path), env=ENV)
    with httpx.Client(base_url=served.base, headers=H, timeout=60) as c:
        kernel = c.post("/api/kernels", json={"name": "python3"})
        assert kernel.status_code == 201, kernel.text
        kid = kernel.json()["id"]
        url = f"ws://127.0.0.1:{served.port}/api/kernels/{kid}/channels?token={TOKEN}"

        async def read() -> list[dict]:  # type: ignore[type-arg]
            async with websockets.connect(url, max_size=None) as ws:
                client = KernelSocket(ws, v1=False)
                mine = (await client.start(code.replace("'flooded'", f"'{FLAG}'")))["header"]
                await asyncio.to_thread(wait_file, c, kid)

                seen: set[str] = set()

                def answered(msg: dict) -> bool:  # type: ignore[type-arg]
                    if msg["parent_header"].get("msg_id") == mine["msg_id"]:
                        if msg["msg_type"] == "status":
                            seen.add(msg["content"]["execution_state"])
                        seen.add(msg["msg_type"])
                    return {"idle", "execute_reply"} <= seen

                return await client.until(answered, 60)

        growth, messages = flood_while_unread(served, lambda: asyncio.run(read()))
    print(f"session host grew by at most {growth >> 20} MiB")
    assert growth < 90 << 20, f"the host grew by {growth >> 20} MiB for a {FLOOD >> 20} MiB flood"
    streams = [m["content"] for m in messages if m["msg_type"] == "stream"]
    printed = sum(len(s["text"]) for s in streams if s["name"] == "stdout")
    printed += sum(len(str(m["content"])) for m in messages if m["msg_type"] == "execute_result")
    notices = [s["text"] for s in streams if s["name"] == "stderr"]
    assert printed < 80 << 20 and notices, (printed, notices)
    assert any(m["msg_type"] == "execute_reply" for m in messages)


FLAG = "jupyter-flooded"


def wait_file(c: httpx.Client, kid: str) -> None:
    """The Jupyter kernel's working directory is listed by its Hearth session (its id)."""
    deadline = time.monotonic() + 60
    while FLAG not in [f["path"] for f in c.get(f"/api/v1/sessions/{kid}/files").json()]:
        assert time.monotonic() < deadline, "the cell did not finish printing"
        time.sleep(0.1)
