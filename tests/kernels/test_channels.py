"""The session host's relay of a Jupyter client (``KernelService.channels``), on a real kernel:
signed messages in, the kernel's out, and a quiet cell that is not idle."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jupyter_client.session import Session

from hearth.kernels.channels import ChannelLink
from hearth.kernels.service import KernelService
from hearth.protocol.jupyter import decode_v1

from .conftest import FakeClock, until


def _parts(session: Session, msg_type: str, content: dict[str, Any]) -> tuple[str, list[bytes]]:
    msg = session.msg(msg_type, content)
    names = ("header", "parent_header", "metadata", "content")
    return msg["header"]["msg_id"], [session.pack(msg[n]) for n in names]


async def _until_reply(relay: ChannelLink, msg_id: str, msg_type: str) -> dict[str, Any]:
    while True:
        frame = await relay.next()
        assert frame is not None
        channel, parts = decode_v1(frame)
        parent, header = json.loads(parts[1]), json.loads(parts[0])
        if parent.get("msg_id") == msg_id and header["msg_type"] == msg_type:
            return {"channel": channel, "content": json.loads(parts[3])}


async def test_a_quiet_cell_of_a_jupyter_client_keeps_its_kernel(
    service: KernelService, clock: FakeClock
) -> None:
    await service.create("alice", "nb")
    session = Session()
    async with service.channels("alice", "nb").attach() as relay:
        msg_id, parts = _parts(
            session,
            "execute_request",
            {
                "code": "import time; time.sleep(3)",
                "silent": False,
                "store_history": False,
                "user_expressions": {},
                "allow_stdin": False,
            },
        )
        await relay.receive("shell", parts)
        await until(lambda: service.get("alice", "nb").execution_state == "busy")
        assert service.get("alice", "nb").connections == 1
        clock.advance(10_000)
        assert service.pool.reclaim_idle() == []  # busy, however long quiet
        reply = await _until_reply(relay, msg_id, "execute_reply")
        assert reply["channel"] == "shell" and reply["content"]["status"] == "ok"
        await until(lambda: service.get("alice", "nb").execution_state == "idle")
    assert service.get("alice", "nb").connections == 0
    clock.advance(10_000)
    assert service.pool.reclaim_idle() == ["nb"]


async def test_the_relay_ends_when_its_session_is_deleted(service: KernelService) -> None:
    await service.create("alice", "gone")
    async with service.channels("alice", "gone").attach() as relay:
        msg_id, parts = _parts(Session(), "kernel_info_request", {})
        await relay.receive("shell", parts)
        await _until_reply(relay, msg_id, "kernel_info_reply")
        service.terminate("alice", "gone")
        while await relay.next() is not None:
            pass  # what the kernel said before; then the end


async def test_a_named_connection_is_kept_for_its_client_then_ends(
    service: KernelService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service.connections, "keep_for", 0.5)
    await service.create("alice", "nb")
    relay = service.channels("alice", "nb", "lab-1")
    async with relay.attach() as link:
        msg_id, parts = _parts(Session(), "kernel_info_request", {})
        await link.receive("shell", parts)
    assert relay.following  # kept: the client may come back
    assert service.channels("alice", "nb", "lab-1") is relay  # and it did
    assert service.channels("alice", "nb", "lab-2") is not relay  # another client's is its own
    async with relay.attach() as link:
        assert (await _until_reply(link, msg_id, "kernel_info_reply"))["channel"] == "shell"
    await until(lambda: not relay.following, 5)  # nobody came back: it ends
    assert service.channels("alice", "nb", "lab-1") is not relay


async def test_a_client_back_before_its_old_connection_ended_takes_it_over(
    service: KernelService,
) -> None:
    """The client's new websocket can reach the host before the end of its old one does (it
    failed once in CI so): the new one takes the connection over, with its replies."""
    await service.create("alice", "nb")
    relay = service.channels("alice", "nb", "lab-1")
    async with relay.attach() as old:
        msg_id, parts = _parts(Session(), "kernel_info_request", {})
        await old.receive("shell", parts)
        assert service.channels("alice", "nb", "lab-1") is relay
        async with relay.attach() as new:
            assert await old.next() is None  # the old websocket's pump ends
            await old.receive("shell", _parts(Session(), "kernel_info_request", {})[1])
            assert (await _until_reply(new, msg_id, "kernel_info_reply"))["channel"] == "shell"
            assert service.get("alice", "nb").connections == 2
        assert relay.following  # the old one's end, after, does not end it
    assert relay.following
    assert service.get("alice", "nb").connections == 0
