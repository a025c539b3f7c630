"""A cell that floods output to an HTTP client that does not read costs the session host bounded
memory (``hearth.kernels.backlog``): the output past the bound is dropped, with a notice of how
much, and the execution's status still arrives. A real ``hearth serve`` and its session host."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

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
            deadline = time.monotonic() + 60
            while "flooded" not in files(c):
                assert time.monotonic() < deadline, "the cell did not finish printing"
                time.sleep(0.1)
            # the host has all of it by now, or a little after: then read it
            events = [json.loads(line) for line in r.iter_lines()]
        growth = rss(pid, "VmHWM") - before
    print(f"session host RSS {before >> 20} MiB, grew by at most {growth >> 20} MiB")
    assert growth < 100 << 20, f"the host grew by {growth >> 20} MiB for a {FLOOD >> 20} MiB flood"
    assert events[-1]["type"] == "done" and events[-1]["status"] == "ok"
    assert isinstance(events[-1]["execution_count"], int)
    printed = sum(len(e["text"]) for e in events if e.get("name") == "stdout")
    notices = [e["text"] for e in events if e.get("name") == "stderr"]
    assert printed < FLOOD // 2 and notices, (printed, notices)
    assert all("Hearth dropped" in text for text in notices)
