"""Named Jupyter connections kept for their client (hearth.kernels.connections), on a real
kernel, with the keeping time driven by the test: a connection left is kept exactly
``keep_for``, its client's return restarts the count, and the rest end with the block."""

from __future__ import annotations

from hearth.kernels.connections import Connections
from hearth.kernels.service import KernelService
from tests.clocks import Timers

from .conftest import until


async def test_a_left_connection_is_kept_for_its_time_counted_from_the_last_leaving(
    service: KernelService,
) -> None:
    await service.create("alice", "nb")
    session = service.pool.find("alice", "nb")
    assert session is not None
    timers, key = Timers(), ("alice", "nb", "lab-1")
    async with Connections(keep_for=120, call_later=timers.call_later) as connections:
        relay = connections.connect(session, key)
        async with relay.attach():
            assert connections.kept == 0  # attached: no timer runs
        assert relay.following and connections.kept == 1
        timers.advance(119)
        assert connections.connect(session, key) is relay  # back in time
        async with relay.attach():
            pass
        timers.advance(119)  # counted from this leaving: 1 s left
        assert relay.following and connections.kept == 1
        timers.advance(1)
        assert connections.kept == 0
        await until(lambda: not relay.following, 5)
        assert connections.connect(session, key) is not relay
        other = connections.connect(session, ("alice", "nb", "lab-2"))
        async with other.attach():
            pass
        assert other.following
    assert not other.following  # kept ones end with the block


async def test_an_unnamed_connection_is_never_kept(service: KernelService) -> None:
    await service.create("alice", "nb")
    session = service.pool.find("alice", "nb")
    assert session is not None
    timers = Timers()
    async with Connections(call_later=timers.call_later) as connections:
        relay = connections.connect(session, None)
        async with relay.attach():
            assert relay.following
        assert not relay.following and connections.kept == 0
