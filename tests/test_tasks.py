"""The task owner: nothing it started outlives its ``aclose``, and no failure goes unseen."""

from __future__ import annotations

import asyncio
import logging

import pytest

from hearth.tasks import TaskSet


async def test_aclose_cancels_and_awaits_every_task() -> None:
    owner = TaskSet("test")
    ended: list[str] = []
    started = [asyncio.Event(), asyncio.Event()]

    async def waits(name: str, running: asyncio.Event) -> None:
        running.set()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # a clean-up that suspends: aclose must wait for it
            ended.append(name)

    tasks = [owner.spawn(waits("a", started[0])), owner.spawn(waits("b", started[1]))]
    for running in started:
        await running.wait()
    await owner.aclose()
    assert sorted(ended) == ["a", "b"] and all(t.done() for t in tasks) and len(owner) == 0
    with pytest.raises(RuntimeError, match="closed"):
        owner.spawn(waits("c", asyncio.Event()))


async def test_join_waits_for_tasks_to_end_by_themselves() -> None:
    owner = TaskSet("test")
    release = asyncio.Event()

    async def until_released() -> int:
        await release.wait()
        return 1

    task = owner.spawn(until_released())
    joined = asyncio.ensure_future(owner.join())
    await asyncio.sleep(0)  # one turn: a join that did not wait would be done now
    assert not joined.done()
    release.set()
    await joined
    assert task.result() == 1


async def test_a_failed_task_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    owner = TaskSet("test owner")

    async def fails() -> None:
        raise ValueError("boom")

    with caplog.at_level(logging.ERROR, logger="hearth.tasks"):
        task = owner.spawn(fails())
        await asyncio.gather(task, return_exceptions=True)  # after the owner's done callback
    assert any(r.exc_info and "boom" in str(r.exc_info[1]) for r in caplog.records)
