"""The screen model's feeding policy (hearth.terminals.screen), against its real Node.js
process: echoes go at once, a stream waits for a pause, and nothing is lost either way."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from hearth.terminals.screen import QUIET, ScreenModels, start_models


class Output:
    """A session's output as the screen reads it back (its buffer, never trimmed here)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def add(self, chunk: bytes) -> int:
        self.data += chunk
        return len(self.data)

    def since(self, offset: int | None) -> tuple[bytes, int]:
        return bytes(self.data[offset or 0 :]), len(self.data)


@pytest.fixture
async def models() -> AsyncIterator[ScreenModels]:
    started = await start_models("node", 100)
    assert started is not None, "the screen model needs Node.js and `make web`"
    yield started
    await started.aclose()


async def test_an_echo_goes_to_the_model_at_once(models: ScreenModels) -> None:
    out = Output()
    screen = models.open(5, 20, out.since)
    before = models.fed_bytes
    screen.output(b"x", out.add(b"x"), streaming=False)
    assert models.fed_bytes == before + 1 and screen.offset == 1


async def test_a_stream_waits_for_a_pause_then_nothing_is_missing(models: ScreenModels) -> None:
    out = Output()
    screen = models.open(5, 20, out.since)
    before = models.fed_bytes
    for n in range(50):
        chunk = b"line %d\r\n" % n
        screen.output(chunk, out.add(chunk), streaming=True)
    assert models.fed_bytes == before  # held back while it flows
    deadline = time.monotonic() + 10 * QUIET + 5
    while screen.offset < len(out.data):  # after a pause it catches up by itself
        assert time.monotonic() < deadline, "the model never caught up"
        await asyncio.sleep(QUIET / 5)
    snapshot = await screen.snapshot()
    assert snapshot["offset"] == len(out.data)
    assert snapshot["lines"][-2:] == ["line 49", ""]


async def test_a_snapshot_takes_what_is_held_back(models: ScreenModels) -> None:
    out = Output()
    screen = models.open(5, 20, out.since)
    chunk = b"\x1b[?2004hheld back"
    screen.output(chunk, out.add(chunk), streaming=True)
    snapshot = await screen.snapshot()  # at once, not after the pause
    assert snapshot["lines"][0] == "held back" and "\x1b[?2004h" in snapshot["data"]


async def test_a_redraw_carries_on_as_the_screen_would(models: ScreenModels) -> None:
    """What follows a redraw lands as it would have without it: in the pen (colours) and the
    character set (line drawing) in force, and ESC 8 goes back to the cursor ESC 7 saved."""
    setup = b"hello\x1b[5;10H\x1b[32m\x1b7\x1b[1;1H\x1b[31;1m\x1b(0"
    after = b"qqq\x1b(Bplain\x1b8saved\x1b[0m"
    first, second = Output(), Output()
    original = models.open(8, 30, first.since)
    original.output(setup, first.add(setup), streaming=False)
    redraw = (await original.snapshot())["data"].encode()
    copy = models.open(8, 30, second.since)
    copy.output(redraw, second.add(redraw), streaming=False)
    for screen, out in ((original, first), (copy, second)):
        screen.output(after, out.add(after), streaming=False)
    one, two = await original.snapshot(), await copy.snapshot()
    assert one["lines"][0] == "───plain" and one["lines"][4] == " " * 9 + "saved"
    assert (two["lines"], two["cursor"], two["data"]) == (one["lines"], one["cursor"], one["data"])
