"""The terminal manager's timing with the time driven by the test (``clock=``): an unwatched
session ends ``session_timeout`` after its last activity and not a moment before, a watched one
never, and over the total buffer cap the idle sessions' oldest output goes first, the watched
ones' last. Real shells; only the clock is the test's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from tests.clocks import FakeClock

from hearth.config import Settings
from hearth.contract.terminals import TerminalSpec
from hearth.errors import NotFound
from hearth.sandbox import Sandbox
from hearth.terminals.manager import TerminalManager

TIMEOUT = 60.0


@asynccontextmanager
async def terminals(
    tmp_path: Path, clock: FakeClock, **overrides: Any
) -> AsyncIterator[TerminalManager]:
    settings = Settings(
        data_dir=tmp_path,
        tokens={"tok-mgr-123": "ann"},
        screen_model=False,
        session_timeout=TIMEOUT,
        cleanup_interval=3600,  # the test runs the cleanup: the loop never does meanwhile
        **overrides,
    )
    async with TerminalManager(settings, sandbox=Sandbox.unconfined(settings), clock=clock) as m:
        yield m


async def until(check: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        await asyncio.sleep(0.01)


async def test_an_unwatched_session_ends_its_timeout_after_its_last_activity(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with terminals(tmp_path, clock) as m:
        await m.create("ann", TerminalSpec(id="t", command=["/bin/cat"]))
        await m.create("bob", TerminalSpec(id="b", command=["/bin/cat"]))
        assert m.get("ann", "t").expires_at == clock.now + TIMEOUT
        clock.advance(TIMEOUT - 1)
        m.write("ann", "t", b"hi\n")  # activity: the count starts again
        await until(lambda: m.get("ann", "t").output_end >= 8, "cat's echo")  # hi\r\n twice
        assert m.get("ann", "t").expires_at == clock.now + TIMEOUT
        clock.advance(1)
        assert await m.cleanup("bob") == ["b"]  # ann's is not expired, bob's is
        clock.advance(TIMEOUT - 1.5)
        assert await m.cleanup() == []
        clock.advance(0.5)
        assert await m.cleanup("bob") == []  # removed all the same, listed to its owner only
        with pytest.raises(NotFound):
            m.get("ann", "t")
        assert m.list_sessions("ann") == m.list_sessions("bob") == []


async def test_a_watched_session_never_times_out_and_counts_from_its_last_viewer(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with terminals(tmp_path, clock) as m:
        await m.create("ann", TerminalSpec(id="w", command=["/bin/cat"]))
        viewer = m.attach("ann", "w")
        assert m.get("ann", "w").expires_at is None
        clock.advance(100 * TIMEOUT)
        assert await m.cleanup() == []
        await viewer.aclose()
        assert m.get("ann", "w").expires_at == clock.now + TIMEOUT
        clock.advance(TIMEOUT - 0.1)
        assert await m.cleanup() == []
        clock.advance(0.1)
        assert await m.cleanup() == ["w"]


async def test_an_exited_session_stays_readable_until_its_timeout(tmp_path: Path) -> None:
    clock = FakeClock()
    async with terminals(tmp_path, clock) as m:
        await m.create("ann", TerminalSpec(id="d", command=["/bin/sh", "-c", "echo bye; exit 3"]))
        await until(lambda: not m.get("ann", "d").alive, "the exit")
        assert m.get("ann", "d").exit_code == 3
        clock.advance(TIMEOUT - 1)
        assert await m.cleanup() == []
        assert "bye" in "".join(text for _, text in m.history("ann", "d"))
        clock.advance(1)
        assert await m.cleanup() == ["d"]


BURST = 120_000
TWO_BURSTS = "for n in 1 2; do read go; head -c %d /dev/zero | tr '\\0' x; done; exec sleep 60"


async def test_over_the_total_cap_idle_sessions_pay_oldest_first_and_watched_ones_last(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    caps = {
        "max_total_buffer_bytes": 300_000,
        "max_buffer_bytes": 250_000,
        "max_buffer_size": 100_000,
    }
    async with terminals(tmp_path, clock, **caps) as m:
        for id in ("watched", "old", "new"):
            command = ["/bin/sh", "-c", TWO_BURSTS % BURST]
            await m.create("ann", TerminalSpec(id=id, command=command))
        viewer = m.attach("ann", "watched")  # the oldest, but watched

        async def burst(id: str, ends_at: int) -> None:
            clock.advance(10)
            m.write("ann", id, b"go\n")
            await until(lambda: m.get("ann", id).output_end == ends_at, f"{id}'s output")

        def start(id: str) -> int:
            return m.get("ann", id).output_start

        await burst("watched", 4 + BURST)  # "go\r\n", then the burst
        await burst("old", 4 + BURST)
        assert m.total_buffered_bytes == 2 * (4 + BURST)
        await burst("new", 4 + BURST)  # over the cap: the idle one untouched longest pays
        assert m.total_buffered_bytes == 300_000
        assert start("old") == 3 * (4 + BURST) - 300_000
        assert start("new") == start("watched") == 0
        await burst("new", 2 * (4 + BURST))  # "old" has too little left: "new" pays the rest
        assert m.total_buffered_bytes == 300_000
        old = m.get("ann", "old")
        assert old.output_start == old.output_end  # all of it gone
        assert start("new") > 0 and start("watched") == 0
        await viewer.aclose()
