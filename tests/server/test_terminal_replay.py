"""The replay of a terminal websocket ends exactly where ``hello`` said (SPEC §3.4):
``replay_done.offset = replay_from + replay_bytes``, with live output only after it, even when
output keeps coming at full speed while the replay is being sent."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from typing import Any

import websockets

from tests.conftest import ALICE, RunningServer
from tests.server.termclient import TermClient
from tests.server.test_terminal_ws import make, poll_info

API = "/api/v1/terminal"
# A program that writes 100-byte lines as fast as the PTY takes them, for ever.
FLOOD = ["/bin/sh", "-c", "yes " + "0123456789" * 9 + "abcdefghi"]


def check_replay(t: TermClient, frames: list[Any]) -> None:
    """Every output frame before ``replay_done`` lies inside the announced replay, and the
    stream is gapless around it (TermClient checks the offsets of what follows)."""
    hello = t.hello
    end = hello["replay_from"] + hello["replay_bytes"]
    done = next(f for f in frames if isinstance(f, dict) and f["type"] == "replay_done")
    assert done["offset"] == end, (done, hello["replay_from"], hello["replay_bytes"])
    position = hello["replay_from"]
    for f in frames:
        if f is done:
            break
        if isinstance(f, dict):
            if f["type"] == "missed":
                position = f["offset"]
            continue
        position += len(f)
        assert position <= end, f"output up to {position} was sent before replay_done ({end})"
    assert position == end


async def frames_until_replay_done(t: TermClient, timeout: float = 30) -> list[Any]:
    frames: list[Any] = []
    deadline = time.monotonic() + timeout
    while not any(isinstance(f, dict) and f["type"] == "replay_done" for f in frames):
        left = deadline - time.monotonic()
        assert left > 0, "no replay_done"
        frame = await t.recv_one(left)
        assert frame is not None, f"closed ({t.closed_code}) before replay_done"
        frames.append(frame)
    return frames


async def test_output_arriving_during_the_replay_comes_after_replay_done(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(max_buffer_size=100_000, max_buffer_bytes=2 * 1024 * 1024)
    await make(server, "flood", FLOOD)
    await poll_info(server, "flood", lambda i: i["output_end"] > 2 * 1024 * 1024)
    for _ in range(3):  # each attach replays ~2 MiB while the program keeps writing
        t = await TermClient.connect(server.ws_url, "flood", ALICE, reconnect="true")
        frames = await frames_until_replay_done(t)
        check_replay(t, frames)
        for _ in range(20):  # live output follows, gapless (TermClient asserts the offsets)
            assert await t.recv_one() is not None
        await t.close()


async def test_a_viewer_released_in_the_middle_of_its_replay_still_ends_it_where_announced(
    make_server: Callable[..., RunningServer],
) -> None:
    """A viewer that stalls in its replay while another keeps up is released; the output it
    lost is reported as missed, and replay_done still says replay_from + replay_bytes."""
    # A replay larger than what the sockets' buffers absorb (a few MB on loopback).
    server = make_server(max_buffer_size=1_000_000, max_buffer_bytes=16 * 1024 * 1024)
    await make(server, "lag", ["/bin/sh", "-c", "read go; " + " ".join(FLOOD[2:])])
    live = await TermClient.connect(server.ws_url, "lag", ALICE, reconnect="true")
    await live.send(b"go\n")
    await poll_info(server, "lag", lambda i: i["output_end"] > 16 * 1024 * 1024)

    # The stalled viewer: a small receive buffer, and it reads nothing but its hello for now.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.connect(("127.0.0.1", server.port))
    ws = await websockets.connect(
        f"{server.ws_url}{API}/ws/lag?token={ALICE}&reconnect=true", sock=sock, max_size=None
    )
    stalled = TermClient(ws)
    stalled.hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
    replay_end = stalled.hello["replay_from"] + stalled.hello["replay_bytes"]

    def released_mid_replay() -> bool:
        session = server.core.terminals.find("alice", "lag")
        mine = [a for a in session.attachments if a.replay_from == stalled.hello["replay_from"]]
        # (the host hands a viewer at most a window past what it acked, so the stalled one's
        # released attachment may already have jumped to its Missed; the frames tell the rest)
        return any(not a.holding for a in mine) and session.buffer.start > replay_end

    deadline = time.monotonic() + 30
    while not server.call(released_mid_replay):
        assert time.monotonic() < deadline, "the stalled viewer was never released"
        for _ in range(50):  # the live viewer keeps up meanwhile
            assert await live.recv_one() is not None
    frames = await frames_until_replay_done(stalled)
    check_replay(stalled, frames)
    assert any(isinstance(f, dict) and f["type"] == "missed" for f in stalled.frames)
    for _ in range(20):  # then live output, from where the missed frame said
        assert await stalled.recv_one() is not None
    await stalled.close()
    await live.close()
