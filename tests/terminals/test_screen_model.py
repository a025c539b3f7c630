"""The screen model's feeding policy (hearth.terminals.screen), against its real Node.js
process: echoes go at once, a stream waits for a pause, and nothing is lost either way."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from hearth.terminals.screen import QUIET, ScreenModels, open_models


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
    async with open_models("node", 100) as started:
        assert started is not None, "the screen model needs Node.js and `make web`"
        yield started


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


@pytest.mark.parametrize("scrollback", [0, 20], ids=["no-scrollback", "scrollback"])
async def test_a_redraw_carries_on_as_the_screen_would(
    models: ScreenModels, scrollback: int
) -> None:
    """What follows a redraw lands as it would have without it: in the pen (colours) and the
    character set (line drawing) in force, and ESC 8 goes back to the cursor ESC 7 saved (on
    its screen row: xterm.js counts it from the scrollback's top, and the redraw put it that
    many rows too low)."""
    history = b"".join(b"old %d\r\n" % n for n in range(scrollback))
    setup = history + b"\x1b[H\x1b[2Jhello\x1b[5;10H\x1b[32m\x1b7\x1b[1;1H\x1b[31;1m\x1b(0"
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


async def test_an_answer_is_not_reused_past_output_it_did_not_see(models: ScreenModels) -> None:
    """A snapshot asked just before output arrives is answered before the output is parsed;
    the next one must not be that answer again (it was, and a screen whose program then went
    quiet stayed blank: it failed CI three times)."""
    out = Output()
    screen = models.open(5, 20, out.since)
    await screen.snapshot()
    _, before = screen.request()
    screen.output(b"after", out.add(b"after"), streaming=False)
    after = await screen.snapshot()
    assert (await before)["lines"][0] == ""
    assert after["lines"][0] == "after"


async def _asleep(models: ScreenModels, count: int) -> None:
    deadline = time.monotonic() + 10
    while (await models.census())["asleep"] < count:
        assert time.monotonic() < deadline, "no screen went to sleep"
        await asyncio.sleep(0.05)


async def test_an_idle_screen_sleeps_and_wakes_as_it_was() -> None:
    """An untouched screen is kept as its redraw; what it is sent next lands as it would have
    on a screen that never slept (the alternate screen, the pen, the scroll region, the saved
    cursor and the scrollback all come back)."""
    async with (
        open_models("node", 100, idle_time=0.2) as sleepy,
        open_models("node", 100, idle_time=3600) as awake,
    ):
        assert sleepy is not None and awake is not None
        setup = b"".join(b"line %d\r\n" % n for n in range(30))
        setup += b"\x1b[?2004h\x1b[33mamber\x1b[2;6r\x1b[4;3H\x1b7\x1b[?1049h\x1b[Hfull screen"
        after = b"\x1b[1;1H\x1b[2Know\x1b8saved\x1b[?1049lback\x1b[0m"
        screens = []
        for models in (sleepy, awake):
            out = Output()
            screen = models.open(8, 30, out.since)
            screen.output(setup, out.add(setup), streaming=False)
            screens.append((screen, out))
        before = await screens[0][0].snapshot()
        await _asleep(sleepy, 1)
        assert await screens[0][0].snapshot() == before  # answered asleep, unchanged
        for screen, out in screens:
            screen.output(after, out.add(after), streaming=False)
        woken, never_slept = [await screen.snapshot() for screen, _ in screens]
        assert woken == never_slept
        assert (await sleepy.census())["asleep"] == 0
        assert woken["lines"][3] == "liback6"  # ?1049l went back to the cursor ESC 7 saved


async def test_a_cold_screen_costs_the_model_nothing_until_asked_and_then_is_exact(
    models: ScreenModels,
) -> None:
    """A cold screen (every new terminal's) is not in the model while its output flows; asked,
    it is built from the buffer with its window's changes where they came, and answers as a
    screen fed every byte as it came would."""
    parts = [
        b"".join(b"line %d\r\n" % n for n in range(12)),
        # the alternate screen, drawn at 8 rows; shrunk to 4, it keeps the 4 by the cursor
        b"\x1b[?1049h\x1b[Htop\x1b[8;1Hbottom",
        b"!",
        b"\x1b[3;10Hmid",
    ]
    sizes = [None, (4, 30), (6, 40), None]
    screens = []
    for cold in (True, False):
        out = Output()
        screen = models.open(8, 30, out.since, cold=cold)
        screens.append(screen)
        for data, size in zip(parts, sizes, strict=True):
            screen.output(data, out.add(data), streaming=False)
            if size:
                screen.resize(*size)
    cold_screen = screens[0]
    assert cold_screen.cold and cold_screen.offset == 0  # nothing of it went to the model
    assert (await models.census())["terminals"] == 1  # only the warm one is in the model
    cold_answer, warm_answer = [await s.snapshot() for s in screens]
    assert cold_answer == warm_answer
    assert cold_answer["rows"] == 6 and cold_answer["lines"][-1] == "bottom!"
    assert not cold_screen.cold and (await models.census())["terminals"] == 2
