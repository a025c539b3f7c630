"""A viewer (hearth.terminals.attachment) over a plain :class:`Source`: its replay is exactly the
range it was promised, a cut is reported once, output stops a window past its acks, and the exit
comes last. No PTY: the attachment needs only what the protocol names."""

from __future__ import annotations

import pytest

from hearth.contract.terminals import Exited, Missed, Output, ReplayDone
from hearth.terminals.attachment import WINDOW, Attachment
from hearth.terminals.buffer import OutputBuffer
from hearth.terminals.flow import FlowControl


class Viewed:
    """The smallest session an attachment can view: a buffer, a flow control, an exit."""

    def __init__(self, max_bytes: int = 1 << 20) -> None:
        self.buffer = OutputBuffer(1_000_000, max_bytes)
        self.flow: FlowControl[Attachment] = FlowControl(1 << 30)
        self.bulk = False
        self.alive = True
        self.drained = False
        self.exit_code: int | None = None
        self.exit_reason: str | None = None
        self.closed_reason: str | None = None
        self.progress: list[int] = []
        self.detached: list[Attachment] = []

    def flush_log(self) -> None:
        pass

    def on_progress(self, attachment: Attachment) -> None:
        self.progress.append(attachment.acked)

    def detach(self, attachment: Attachment) -> None:
        self.detached.append(attachment)

    def attach(self, since: int | None) -> Attachment:
        attachment = Attachment(self, since)
        self.flow.attach(attachment, attachment.offset)
        return attachment


def test_the_replay_is_the_promised_range_then_live_output_then_the_exit() -> None:
    source = Viewed()
    source.buffer.append(b"before")
    a = source.attach(since=2)
    assert (a.replay_from, a.replay_bytes, a.missed_bytes) == (2, 4, 0)
    source.buffer.append(b"|after")  # arrives while replaying: it waits for ReplayDone
    assert a.next_nowait() == Output(2, b"fore")
    assert a.next_nowait() == ReplayDone(6)
    assert a.next_nowait() == Output(6, b"|after")
    assert a.next_nowait() is None
    source.alive, source.exit_code = False, 3
    assert a.next_nowait() is None  # not before every byte the process wrote is in
    source.drained = True
    assert a.next_nowait() == Exited(3, None)
    assert a.next_nowait() is None
    a.close()
    a.close()
    assert source.detached == [a]  # told once


def test_output_that_left_the_buffer_is_reported_missed_once() -> None:
    source = Viewed(max_bytes=10)
    source.buffer.append(b"0123456789")
    a = source.attach(since=0)
    source.buffer.append(b"abcde")  # the first 5 bytes leave the buffer
    assert a.next_nowait() == Missed(5, 5)
    assert source.progress == [5]  # what was missed is not waited for
    assert a.next_nowait() == Output(5, b"56789")
    assert a.next_nowait() == ReplayDone(10)
    assert a.next_nowait() == Output(10, b"abcde")


def test_output_stops_a_window_past_the_acks() -> None:
    source = Viewed(max_bytes=4 * WINDOW)
    a = source.attach(since=0)
    assert a.next_nowait() == ReplayDone(0)
    source.buffer.append(b"x" * 2 * WINDOW)
    handed = 0
    while (event := a.next_nowait()) is not None:
        assert isinstance(event, Output) and event.offset == handed
        handed += len(event.data)
    assert handed == WINDOW
    a.ack(handed)
    assert source.progress == [WINDOW]
    event = a.next_nowait()
    assert isinstance(event, Output) and event.offset == WINDOW


def test_a_since_past_the_end_is_refused() -> None:
    source = Viewed()
    source.buffer.append(b"abc")
    with pytest.raises(ValueError, match=r"beyond the end of the output \(3\)"):
        source.attach(since=4)
