"""Output on disk (SPEC §8): when the process holding the sessions is lost, the next start lists
each terminal as closed, ``closed_reason: "host_lost"``, with its output replayable by offset."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import httpx
import websockets
from tests.client.helpers import poll

from hearth.terminals.outlog import OutputLog, read_log

TOKEN = "tok-lost-77"
H = {"Authorization": f"Bearer {TOKEN}"}
ENV = {"HEARTH_TOKENS": json.dumps({TOKEN: "lou"})}


def test_the_log_keeps_at_least_the_last_max_bytes_in_two_segments(tmp_path: Path) -> None:
    log = OutputLog(tmp_path / "t", max_bytes=100)
    sent = b"".join(b"%04d|" % i for i in range(70))  # 350 bytes
    for i in range(0, len(sent), 7):
        log.append(sent[i : i + 7])
    log.close()
    start, data = read_log(tmp_path / "t")
    assert len(list((tmp_path / "t").iterdir())) == 2
    assert len(data) >= 100 and start + len(data) == len(sent)
    assert data == sent[start:]
    # a lost segment: only the run after the gap counts
    first = sorted((tmp_path / "t").iterdir())[0]
    first.unlink()
    start2, data2 = read_log(tmp_path / "t")
    assert start2 > start and data2 == sent[start2:]
    assert read_log(tmp_path / "missing") == (0, b"")


def test_terminals_of_a_killed_server_are_listed_lost_with_their_output(
    serve, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    served = serve("--data-dir", str(tmp_path), env=ENV)
    script = "seq 1 3000; echo SEQ-DONE; exec sleep 1000"
    with httpx.Client(base_url=served.base, headers=H) as c:
        r = c.post(
            "/api/v1/terminal/sessions", json={"id": "t1", "command": ["/bin/sh", "-c", script]}
        )
        assert r.status_code == 201, r.text
        poll(
            lambda: (
                "SEQ-DONE"
                in "".join(e["data"] for e in c.get("/api/v1/terminal/sessions/t1/history").json())
            ),
            what="the numbers",
        )
        before = c.get("/api/v1/terminal/sessions/t1").json()
    served.proc.send_signal(signal.SIGKILL)
    served.proc.wait(10)

    again = serve("--data-dir", str(tmp_path), env=ENV)
    with httpx.Client(base_url=again.base, headers=H) as c:
        info = c.get("/api/v1/terminal/sessions/t1").json()
        assert info["status"] == "closed" and info["alive"] is False
        assert info["exit_code"] is None and info["closed_reason"] == "host_lost"
        # offsets go on where they were, and the buffer's caps (1000 lines) apply as before
        assert (info["output_start"], info["output_end"]) == (
            before["output_start"],
            before["output_end"],
        )
        cast = c.get("/api/v1/terminal/sessions/t1/recording.cast")
        assert cast.status_code == 200 and "SEQ-DONE" in cast.text

    async def replay() -> tuple[bytes, dict[str, object]]:
        url = f"ws://127.0.0.1:{again.port}/api/v1/terminal/ws/t1?since=0&token={TOKEN}"
        got = b""
        async with websockets.connect(url) as ws:
            while True:
                message = await asyncio.wait_for(ws.recv(), 10)
                if isinstance(message, bytes):
                    got += message[9:]  # after the type byte and the offset
                    continue
                frame = json.loads(message)
                if frame["type"] == "exit":
                    return got, frame

    got, exit_frame = asyncio.run(replay())
    lines = got.decode().split("\r\n")
    first = int(lines[0])
    assert first > 1 and lines[: 3001 - first] == [str(n) for n in range(first, 3001)]
    assert exit_frame == {"type": "exit", "exit_code": None, "reason": "host_lost"}

    with httpx.Client(base_url=again.base, headers=H) as c:
        assert c.delete("/api/v1/terminal/sessions/t1").status_code in (200, 204)
        assert c.get("/api/v1/terminal/sessions/t1").status_code == 404
    assert not (tmp_path / "terminals" / "lou" / "t1").exists()
