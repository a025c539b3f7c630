"""A viewer counts by what its side acknowledged having delivered (``Attachment.ack``): output is
handed out at most a window past the last ack, and the shell waits for acks, not for pulls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from hearth.config import Settings
from hearth.contract.terminals import Output, TerminalSpec
from hearth.sandbox import Sandbox
from hearth.terminals.attachment import FRAME_BYTES, WINDOW, Attachment
from hearth.terminals.manager import TerminalManager
from hearth.terminals.session import TerminalSession

TOTAL = 4 * WINDOW


@asynccontextmanager
async def streaming(
    tmp_path: Path, max_buffer_bytes: int
) -> AsyncIterator[tuple[TerminalSession, Attachment]]:
    settings = Settings(
        data_dir=tmp_path, tokens={"tok-ack-123": "a"}, max_buffer_bytes=max_buffer_bytes
    )
    command = ["/bin/sh", "-c", f"head -c {TOTAL} /dev/zero | tr '\\0' x; exec sleep 60"]
    async with TerminalManager(settings, sandbox=Sandbox.unconfined(settings)) as manager:
        await manager.create("a", TerminalSpec(id="t", command=command))
        attachment = manager.attach("a", "t", since=0)
        yield manager._sessions[("a", "t")], attachment
        await attachment.aclose()


async def pull_until_quiet(attachment: Attachment, handed: int) -> int:
    """The end of what is handed out until nothing more comes for 0.5 s."""
    while True:
        try:
            event = await asyncio.wait_for(anext(attachment), 0.5)
        except TimeoutError:
            return handed
        if isinstance(event, Output):
            assert event.offset == handed  # nothing skipped or repeated
            handed = event.offset + len(event.data)


async def test_output_is_handed_out_at_most_a_window_past_the_acks(tmp_path: Path) -> None:
    async with streaming(tmp_path, max_buffer_bytes=8 * TOTAL) as (_, attachment):
        handed = await pull_until_quiet(attachment, 0)
        assert WINDOW <= handed < WINDOW + FRAME_BYTES  # unacked: it stops at the window
        while handed < TOTAL:
            attachment.ack(handed)
            handed = await pull_until_quiet(attachment, handed)
        assert handed == TOTAL


async def test_the_shell_waits_for_acks_not_for_pulls(tmp_path: Path) -> None:
    async with streaming(tmp_path, max_buffer_bytes=64 * 1024) as (session, attachment):
        handed = await pull_until_quiet(attachment, 0)
        assert handed < TOTAL
        assert not session.flow.reading  # pulled but not delivered: the shell waits
        assert session.buffer.start == 0  # and everything unacked is kept for the viewer
        while handed < TOTAL:
            attachment.ack(handed)
            handed = await pull_until_quiet(attachment, handed)
        attachment.ack(handed)
        assert handed == TOTAL and session.flow.reading
