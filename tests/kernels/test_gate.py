"""The start gate: bounded concurrent starts, the caller's own start first."""

from __future__ import annotations

import asyncio

import pytest

from hearth.kernels.gate import GateBook, StartGate


def test_background_starts_leave_a_place_for_a_callers_start() -> None:
    book = GateBook(limit=2)
    refills = [book.request(urgent=False) for _ in range(3)]
    assert book.admit() == refills[:1]
    mine = book.request(urgent=True)
    assert book.admit() == [mine]
    book.done(refills[0])
    assert book.admit() == [refills[1]]


def test_a_waiting_caller_goes_before_every_waiting_refill() -> None:
    book = GateBook(limit=1)
    running = book.request(urgent=False)
    assert book.admit() == [running]
    refill = book.request(urgent=False)
    mine = book.request(urgent=True)
    assert book.admit() == []
    book.done(running)
    assert book.admit() == [mine]
    book.done(mine)
    assert book.admit() == [refill]


def test_a_promoted_refill_is_admitted_as_urgent() -> None:
    book = GateBook(limit=2)
    first, second = book.request(urgent=False), book.request(urgent=False)
    assert book.admit() == [first]
    book.promote(second)
    assert book.admit() == [second]


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        GateBook(0)


async def test_the_async_gate_wakes_the_next_start_when_one_ends() -> None:
    gate = StartGate(limit=1)
    order: list[str] = []
    release_first = asyncio.Event()

    async def start(name: str, urgent: bool, hold: asyncio.Event | None = None) -> None:
        async with gate.slot(gate.request(urgent)):
            order.append(name)
            if hold is not None:
                await hold.wait()

    async with asyncio.TaskGroup() as tg:
        tg.create_task(start("refill-1", False, release_first))
        await asyncio.sleep(0)
        tg.create_task(start("refill-2", False))
        tg.create_task(start("user", True))
        for _ in range(100):  # let both reach the gate (a bounded number of turns)
            if len(gate.book.waiting) == 2:
                break
            await asyncio.sleep(0)
        assert len(gate.book.waiting) == 2
        assert order == ["refill-1"]
        release_first.set()
    assert order == ["refill-1", "user", "refill-2"]
    assert gate.book.running == [] and gate.book.waiting == []
