"""What a local terminal has holds for one on a saved connection (SPEC §11): flow control through
the channel's window, several viewers, history and recording, the idle timeout."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

from tests.conftest import ALICE, RunningServer
from tests.server.termclient import TermClient
from tests.ssh.processes import alive, proc
from tests.ssh.sshd import Sshd
from tests.ssh.test_ssh_terminals import TERMINALS, open_terminal, rest, saved


async def info_of(server: RunningServer, session_id: str) -> dict[str, Any]:
    async with rest(server) as c:
        answer: dict[str, Any] = (await c.get(f"{TERMINALS}/{session_id}")).json()
    return answer


async def test_a_slow_viewer_loses_nothing_the_channels_window_holds_the_remote_side(
    make_server: Any, sshd: Sshd
) -> None:
    """With a buffer of 1 KiB, a remote program writing ~1 MB to a viewer that reads slowly:
    every byte arrives and none is reported missed, so the remote side waited (the window
    stopped it); meanwhile a local terminal of the same host answers at once."""
    server = make_server(max_buffer_size=5, max_buffer_bytes=1024)
    await saved(server, sshd)
    assert (await open_terminal(server, id="slow")).status_code == 201
    t = await TermClient.connect(server.ws_url, "slow", ALICE)
    await t.send(b"stty -echo; seq 1 150000; echo EN''D\n")
    local = await TermClient.connect(server.ws_url, "local", ALICE)
    await local.send(b"echo local-answers\n")
    await local.read_until(b"local-answers\r\n")
    await local.close()
    while b"END\r\n" not in t.output[-256:]:  # the prompt follows it
        assert await t.recv_one(timeout=30) is not None
        await asyncio.sleep(0.0005)  # a slow consumer (not a synchronisation)
    lines = bytes(t.output).decode().replace("\r", "\n").split("\n")  # bash's own \r's too
    numbers = [int(line) for line in lines if line.isdigit()]
    assert numbers == list(range(1, 150001))
    assert not any(f["type"] == "missed" for f in t.frames)
    await t.close()


async def test_a_stalled_viewer_stops_the_remote_side_not_the_memory(
    make_server: Any, sshd: Sshd
) -> None:
    """A lone viewer that reads nothing while the remote side writes 20 MB: the session holds at
    most its pin limit (256 KiB here) and what one delivery adds, because the paused channel
    stops the remote writer; after the stall timer the viewer is told what it missed and the
    stream goes on to its end."""
    server = make_server(max_buffer_size=5, max_buffer_bytes=1024)
    await saved(server, sshd)
    assert (await open_terminal(server, id="stall")).status_code == 201
    t = await TermClient.connect(server.ws_url, "stall", ALICE)
    await t.send(b"stty -echo; head -c 20000000 /dev/zero | tr '\\0' x; echo; echo EN''D\n")
    held = 0
    async with rest(server) as c:
        deadline = time.monotonic() + 30
        while True:  # until the stall timer released the viewer and the rest streamed
            info = (await c.get(f"{TERMINALS}/stall")).json()
            held = max(held, info["output_end"] - info["output_start"])
            if info["output_end"] > 20_000_000:
                break
            assert time.monotonic() < deadline, f"the remote side never went on: {info}"
            await asyncio.sleep(0.01)
    assert held < 1024 * 1024, f"the session held {held} bytes for a viewer reading nothing"
    assert (await t.frame("missed", timeout=30))["missed_bytes"] > 0
    await t.read_until(b"END\r\n", timeout=30)
    await t.close()


async def test_several_viewers_see_one_stream_and_a_resize_reaches_the_remote_side(
    server: RunningServer, sshd: Sshd
) -> None:
    await saved(server, sshd)
    assert (await open_terminal(server, id="both")).status_code == 201
    a = await TermClient.connect(server.ws_url, "both", ALICE)
    assert (await a.frame("viewers"))["count"] == 1
    b = await TermClient.connect(server.ws_url, "both", ALICE, reconnect="true")
    assert (await a.frame("viewers"))["count"] == 2
    await a.send(json.dumps({"type": "resize", "rows": 31, "cols": 97}))
    assert await b.frame("resize") == {"type": "resize", "rows": 31, "cols": 97}
    await b.send(b"stty size; echo SE''EN\n")
    await a.read_until(b"31 97\r\nSEEN\r\n")
    await b.read_until(b"31 97\r\nSEEN\r\n")
    await a.close()
    await b.close()


async def test_history_and_the_recording_carry_a_remote_sessions_input_and_output(
    server: RunningServer, sshd: Sshd
) -> None:
    await saved(server, sshd)
    assert (await open_terminal(server, id="rec")).status_code == 201
    t = await TermClient.connect(server.ws_url, "rec", ALICE)
    await t.send("echo 'héllo' RE''MOTE\n".encode())
    await t.read_until("héllo REMOTE\r\n".encode())
    await t.close()
    async with rest(server) as c:
        entries = (await c.get(f"{TERMINALS}/rec/history")).json()
        cast = await c.get(f"{TERMINALS}/rec/recording.cast")
    inputs = "".join(e["data"] for e in entries if e["type"] == "input")
    outputs = "".join(e["data"] for e in entries if e["type"] == "output")
    assert "echo 'héllo' RE''MOTE\n" in inputs and "héllo REMOTE" in outputs
    assert cast.status_code == 200
    lines = cast.text.splitlines()
    assert json.loads(lines[0])["version"] == 2
    events = [json.loads(line) for line in lines[1:]]
    assert "héllo REMOTE" in "".join(e[2] for e in events if e[1] == "o")
    assert "RE''MOTE" in "".join(e[2] for e in events if e[1] == "i")


async def test_an_idle_remote_session_is_ended_and_its_channel_closed(
    make_server: Any, sshd: Sshd
) -> None:
    server = make_server(session_timeout=0.5, cleanup_interval=0.1)
    await saved(server, sshd)
    assert (await open_terminal(server, id="idle")).status_code == 201
    t = await TermClient.connect(server.ws_url, "idle", ALICE)
    await t.send(b"echo SHELL=$$=P''ID\n")  # the echoed line has no "=PID": the output has
    said = (await t.read_until(b"=PID\r\n")).decode()
    found = re.search(r"SHELL=(\d+)=PID", said)
    assert found is not None, said
    shell = proc(int(found.group(1)))  # sshd is on this machine
    assert shell is not None and alive(shell)
    await t.close()
    async with rest(server) as c:
        deadline = time.monotonic() + 15
        while (await c.get(f"{TERMINALS}/idle")).status_code != 404:
            assert time.monotonic() < deadline, "the idle remote session was not ended"
            await asyncio.sleep(0.05)
    deadline = time.monotonic() + 15
    while alive(shell):  # sshd hangs up the remote shell once the channel closes
        assert time.monotonic() < deadline, "the remote shell outlived its session"
        await asyncio.sleep(0.05)
