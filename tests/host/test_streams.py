"""Streams on a real host's socket, driven by a raw link: what a web tier that goes away early
leaves behind (nothing)."""

from __future__ import annotations

import asyncio
import time

import httpx

from hearth.contract import wire
from hearth.contract.place import HostPlace
from hearth.server.host_starter import connect
from tests.conftest import ALICE, RunningServer

H = {"Authorization": f"Bearer {ALICE}"}


def viewers(server: RunningServer, id: str) -> int:
    count: int = server.call(lambda: server.core.terminals.get("alice", id).viewers)
    return count


def test_a_viewer_closed_or_dropped_before_its_stream_ran_is_detached(
    server: RunningServer,
) -> None:
    r = httpx.post(f"{server.url}/api/v1/terminal/sessions", json={"id": "v"}, headers=H)
    assert r.status_code == 201

    def detached() -> bool:
        return viewers(server, "v") == 0 and server.call(
            lambda: server.core.terminals.find("alice", "v").flow.floor() is None
        )

    async def attach_and_go(how: str) -> None:
        link = await connect(HostPlace(server.settings.data_dir))
        assert link is not None
        args = {"user": "alice", "session": "v", "since": None, "size": None}
        call = {"op": "call", "id": 7, "method": "terminals.attach", "args": args}
        frames = wire.json_frame(call)
        if how == "close":  # in the same write: the host reads both before its pump runs
            frames += wire.json_frame({"op": "close", "stream": 7})
        link.wire.send(frames)
        if how == "drop":
            link.wire.abort()
        deadline = time.monotonic() + 10
        while not await asyncio.to_thread(detached):  # (for "close", the link stays open)
            assert time.monotonic() < deadline, f"a viewer left after a {how}"
        await link.aclose()

    for how in ("close", "drop"):
        asyncio.run(attach_and_go(how))
