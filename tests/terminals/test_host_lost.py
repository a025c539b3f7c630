"""Output on disk (SPEC §8): when the process holding the sessions is lost, the next start lists
each terminal as closed, ``closed_reason: "host_lost"``, with its output replayable by offset."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import time
from pathlib import Path

import httpx
import pytest
import websockets

from hearth.config import Settings
from hearth.contract.terminals import TerminalSpec
from hearth.store import SqliteStore
from hearth.terminals.manager import TerminalManager
from hearth.terminals.outlog import FLUSH_BYTES, OutputLog, read_log

TOKEN = "tok-lost-77"
H = {"Authorization": f"Bearer {TOKEN}"}
ENV = {"HEARTH_TOKENS": json.dumps({TOKEN: "lou"})}


def test_the_log_keeps_at_least_the_last_max_bytes_in_two_segments(tmp_path: Path) -> None:
    log = OutputLog(tmp_path / "t", max_bytes=100)
    sent = b"".join(b"%04d|" % i for i in range(70))  # 350 bytes
    for i in range(0, len(sent), 7):
        log.append(sent[i : i + 7])
        log.flush()  # as when a viewer pulls each piece
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


def test_appends_are_gathered_until_a_flush_or_a_full_piece(tmp_path: Path) -> None:
    log = OutputLog(tmp_path / "t", max_bytes=1 << 20)
    log.append(b"a" * 10)
    assert read_log(tmp_path / "t") == (0, b"") and log.pending
    log.flush()
    assert read_log(tmp_path / "t") == (0, b"a" * 10) and not log.pending
    log.append(b"b" * FLUSH_BYTES)  # a full piece goes at once
    assert read_log(tmp_path / "t")[1] == b"a" * 10 + b"b" * FLUSH_BYTES
    log.append(b"c")
    log.close()  # flushes
    assert read_log(tmp_path / "t")[1].endswith(b"bc")


async def read_until(port: int, since: int, needle: bytes | None) -> tuple[int, bytes, dict]:  # type: ignore[type-arg]
    """(the end offset reached, the bytes, the last text frame): read from ``since`` until
    ``needle`` has arrived, or until the exit frame when ``needle`` is None."""
    url = f"ws://127.0.0.1:{port}/api/v1/terminal/ws/t1?since={since}&token={TOKEN}"
    got, end, frame = b"", since, {}
    async with websockets.connect(url) as ws:
        while True:
            message = await asyncio.wait_for(ws.recv(), 10)
            if isinstance(message, bytes):
                offset = int.from_bytes(message[1:9], "big")
                got += message[9:]
                end = offset + len(message) - 9
                if needle is not None and needle in got:
                    return end, got, frame
                continue
            frame = json.loads(message)
            if frame["type"] == "exit":
                return end, got, frame


def test_terminals_of_a_killed_host_are_listed_lost_with_their_output(
    serve, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    served = serve("--data-dir", str(tmp_path), env=ENV)
    script = "seq 1 3000; echo SEQ-DONE; exec sleep 1000"
    with httpx.Client(base_url=served.base, headers=H) as c:
        r = c.post(
            "/api/v1/terminal/sessions", json={"id": "t1", "command": ["/bin/sh", "-c", script]}
        )
        assert r.status_code == 201, r.text
        # a viewer sees every number; then the server is killed at once
        seen_end, _, _ = asyncio.run(read_until(served.port, 0, b"SEQ-DONE\r\n"))
        # the buffer keeps what its viewer had not acked beyond its caps (a read can take all
        # 3000 lines at once): it trims to its 1000 lines once the viewer's ack is in
        deadline = time.monotonic() + 10
        while (before := c.get("/api/v1/terminal/sessions/t1").json())["output_start"] == 0:
            assert time.monotonic() < deadline, f"the buffer kept every line: {before}"
            time.sleep(0.02)
    served.kill_all()

    again = serve("--data-dir", str(tmp_path), env=ENV)
    with httpx.Client(base_url=again.base, headers=H) as c:
        info = c.get("/api/v1/terminal/sessions/t1").json()
        assert info["status"] == "closed" and info["alive"] is False
        assert info["exit_code"] is None and info["closed_reason"] == "host_lost"
        # what the viewer saw is there, at the same offsets, with the buffer's caps (1000 lines)
        assert info["output_end"] == seen_end
        assert info["output_start"] == before["output_start"] > 0
        cast = c.get("/api/v1/terminal/sessions/t1/recording.cast")
        assert cast.status_code == 200 and "SEQ-DONE" in cast.text
        # its screen, rebuilt from the output kept (SPEC §9)
        screen = c.get("/api/v1/terminal/sessions/t1/screen").json()
        assert screen["offset"] == seen_end and screen["lines"][-2:] == ["SEQ-DONE", ""]

    # the viewer resumes from where it was: nothing repeated, and told how the session ended
    end, got, exit_frame = asyncio.run(read_until(again.port, seen_end, None))
    assert (end, got) == (seen_end, b"")
    assert exit_frame == {"type": "exit", "exit_code": None, "reason": "host_lost"}
    # from the start: the last lines, once each and in order
    _, got, _ = asyncio.run(read_until(again.port, 0, None))
    lines = got.decode().split("\r\n")
    first = int(lines[0])
    assert first > 1 and lines[: 3001 - first] == [str(n) for n in range(first, 3001)]

    with httpx.Client(base_url=again.base, headers=H) as c:
        assert c.delete("/api/v1/terminal/sessions/t1").status_code in (200, 204)
        assert c.get("/api/v1/terminal/sessions/t1").status_code == 404
    assert not (tmp_path / "terminals" / "lou" / "t1").exists()


def test_a_segment_that_cannot_be_opened_stops_the_log_not_the_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hearth.terminals.outlog as outlog

    log = OutputLog(tmp_path / "t", max_bytes=10)
    real_open = os.open

    def full_disk(path: object, *args: object, **kwargs: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outlog.os, "open", full_disk)  # a full disk can't be had here
    log.append(b"x" * 20)
    log.flush()  # the rotation fails: the log stops, nothing raised, no stale descriptor
    assert log._fd == -1
    log.append(b"more")
    log.flush()
    monkeypatch.setattr(outlog.os, "open", real_open)
    assert read_log(tmp_path / "t") == (0, b"x" * 20)


async def test_deleting_a_session_never_removes_the_log_of_a_new_one_of_the_same_id(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path, tokens={"tok-lou-1234": "lou"}, terminal_kill_grace=1.0)
    store = SqliteStore(tmp_path / "store.sqlite3")
    # waits the grace; says so once HUP is ignored (a HUP before the trap would end it at once:
    # the close must not begin before, or it may be over before the new session comes)
    stubborn = ["/bin/sh", "-c", "trap '' HUP; echo trapped; while :; do sleep 0.1; done"]
    try:
        async with TerminalManager(settings, store=store) as manager:
            await manager.create("lou", TerminalSpec(id="t", command=stubborn))
            deadline = asyncio.get_running_loop().time() + 5
            while manager.get("lou", "t").output_end == 0:
                assert asyncio.get_running_loop().time() < deadline, "the shell did not start"
                await asyncio.sleep(0.01)
            closing = asyncio.create_task(manager.close("lou", "t"))
            deadline = asyncio.get_running_loop().time() + 5
            while ("lou", "t") in manager._sessions:  # the close has begun: the id is free again
                assert asyncio.get_running_loop().time() < deadline, "the close did not begin"
                await asyncio.sleep(0.01)
            assert not closing.done()  # still waiting out the shell's grace
            await manager.create("lou", TerminalSpec(id="t", command=["/bin/cat"]))
            await closing
            assert (tmp_path / "terminals" / "lou" / "t").is_dir()  # the new one's log
    finally:
        store.close()
