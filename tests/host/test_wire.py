"""The host's wire (pure) and its stream credit: frames, values that cross, windows."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth import errors
from hearth.contract import calls, wire
from hearth.contract.streams import ACK_STEP, WINDOW, Credit, Inbox, StreamClosed
from hearth.contract.terminals import (
    Exited,
    Missed,
    ReplayDone,
    Resized,
    TerminalInfo,
    TerminalStatus,
    ViewerCount,
)


def split(frames: bytes) -> list[tuple[int, bytes]]:
    out, at = [], 0
    while at < len(frames):
        size, kind = wire.HEADER.unpack_from(frames, at)
        at += wire.HEADER.size
        out.append((kind, frames[at : at + size]))
        at += size
    return out


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1), st.binary(max_size=4096))
def test_a_data_frame_reads_back_as_written(stream: int, offset: int, data: bytes) -> None:
    [(kind, body)] = split(wire.data_frame(stream, offset, data))
    assert kind == wire.DATA and wire.read_data(body) == (stream, offset, data)


def test_json_frames_read_back_and_bad_ones_are_protocol_errors() -> None:
    message = {"op": "call", "id": 7, "method": "terminals.get", "args": {"user": "ü"}}
    [(kind, body)] = split(wire.json_frame(message))
    assert kind == wire.JSON and wire.read_json(body) == message
    for bad in (b"{", b"[1]", b'{"no": "op"}'):
        with pytest.raises(wire.ProtocolError):
            wire.read_json(bad)
    with pytest.raises(wire.ProtocolError):
        wire.read_data(b"short")


def test_every_hearth_error_crosses_as_itself_and_others_as_host_errors() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        if isinstance(cls, type) and issubclass(cls, errors.HearthError):
            back = wire.error_from_wire(wire.error_to_wire(cls("what to do")))
            assert type(back) is cls and back.message == "what to do"  # type: ignore[attr-defined]
    back = wire.error_from_wire(wire.error_to_wire(KeyError("x")))
    assert isinstance(back, wire.HostError) and "KeyError" in str(back)


def test_terminal_events_and_snapshots_cross_unchanged() -> None:
    for event in (
        ReplayDone(5),
        Missed(3, 9),
        Resized(30, 100),
        ViewerCount(2),
        Exited(None, "host_lost"),
        Exited(0),
    ):
        assert wire.event_from_wire(wire.event_to_wire(event)) == event
    info = TerminalInfo(
        id="t", name="T", user="u", protocol="hearth.v1", status=TerminalStatus.ACTIVE,
        alive=True, exit_code=None, created_at=1.0, last_activity=2.0, expires_at=None,
        rows=24, cols=80, viewers=1, output_start=0, output_end=10, command=["sh"],
    )  # fmt: skip
    call = calls.TERMINALS_GET
    assert call.load_answer(json.loads(json.dumps(call.dump_answer(info)))) == info


async def test_credit_holds_a_sender_at_the_window_until_an_ack() -> None:
    credit = Credit()
    await credit.spend(WINDOW)  # up to the window: at once
    blocked = asyncio.create_task(credit.spend(1))
    await asyncio.sleep(0)
    assert not blocked.done()
    credit.ack(ACK_STEP)
    await asyncio.wait_for(blocked, 1)
    assert credit.sent - credit.acked == WINDOW - ACK_STEP + 1
    await credit.spend(ACK_STEP)  # past the window now
    stuck = asyncio.create_task(credit.spend(1))
    await asyncio.sleep(0)
    credit.close()
    with pytest.raises(StreamClosed):
        await asyncio.wait_for(stuck, 1)


async def test_an_inbox_acks_what_its_reader_took_and_ends_with_its_error() -> None:
    acks: list[int] = []
    inbox: Inbox[bytes] = Inbox(acks.append)
    for _ in range(3):
        inbox.put(b"x" * ACK_STEP, ACK_STEP)
    assert await inbox.get() == b"x" * ACK_STEP
    assert acks == [ACK_STEP]  # a step's worth taken
    inbox.put(b"y", 1)
    await inbox.get()
    await inbox.get()
    await inbox.get()
    assert acks == [ACK_STEP, 2 * ACK_STEP, 3 * ACK_STEP]  # each step; the last byte waits
    inbox.finish(errors.NotFound("gone"))
    with pytest.raises(errors.NotFound):
        await inbox.get()


async def test_a_small_stream_costs_no_ack() -> None:
    """An execute's few events: an ack each would be a write, and a wake-up of the host, for
    credit the host never runs short of (at most ACK_STEP < WINDOW is taken and not acked)."""
    acks: list[int] = []
    inbox: Inbox[bytes] = Inbox(acks.append)
    for event in (b"result", b"done"):
        inbox.put(event, len(event))
        assert await inbox.get() == event
    assert acks == []
    assert ACK_STEP < WINDOW


class _Transport:
    """Enough of a transport for FrameProtocol: it only asks whether it is closing."""

    def __init__(self) -> None:
        self.aborted = False

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True


@given(
    st.lists(
        st.one_of(
            st.tuples(st.integers(0, 9), st.integers(0, 2**40), st.binary(max_size=300)),
            st.dictionaries(st.sampled_from(["a", "b"]), st.integers()),
        ),
        max_size=20,
    ),
    st.lists(st.integers(1, 400), min_size=1, max_size=50),
)
def test_frames_cut_anywhere_arrive_whole_and_in_order(
    frames: list[tuple[int, int, bytes] | dict[str, int]], cuts: list[int]
) -> None:
    from hearth.contract.framing import FrameProtocol

    sent = [
        wire.data_frame(*f) if isinstance(f, tuple) else wire.json_frame({"op": "x", **f})
        for f in frames
    ]
    got: list[tuple[int, int, bytes] | dict[str, int]] = []

    def on_frame(kind: int, body: memoryview) -> None:
        if kind == wire.DATA:
            got.append(wire.read_data(body))
        else:
            message = wire.read_json(body)
            del message["op"]
            got.append(message)

    protocol = FrameProtocol(on_frame, lambda exc: None)
    protocol.connection_made(_Transport())  # type: ignore[arg-type]
    stream, at, i = b"".join(sent), 0, 0
    while at < len(stream):
        piece = cuts[i % len(cuts)]
        protocol.data_received(stream[at : at + piece])
        at, i = at + piece, i + 1
    assert got == frames


def test_a_frame_that_is_not_of_the_protocol_drops_the_connection() -> None:
    from hearth.contract.framing import FrameProtocol

    lost: list[BaseException | None] = []
    protocol = FrameProtocol(lambda kind, body: wire.read_json(body), lost.append)
    transport = _Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.data_received(wire.HEADER.pack(3, wire.JSON) + b"{{{")
    assert transport.aborted
    protocol.connection_lost(None)
    assert isinstance(lost[0], wire.ProtocolError)
    protocol2 = FrameProtocol(lambda kind, body: None, lost.append)
    protocol2.connection_made(_Transport())  # type: ignore[arg-type]
    protocol2.data_received(wire.HEADER.pack(wire.MAX_FRAME + 1, wire.DATA))
    protocol2.connection_lost(None)
    assert "bytes" in str(lost[1])


async def test_a_writer_cancelled_in_drain_leaves_the_other_writers_waiting() -> None:
    """Every stream's pump waits in the same drain while the socket is full; one of them ended
    (its viewer left) must not end the others. It did: they shared one future, which the first
    cancellation cancelled, and 170 of 200 streaming viewers of the scale run stopped for good."""
    from hearth.contract.framing import FrameProtocol

    protocol = FrameProtocol(lambda kind, body: None, lambda exc: None)
    protocol.connection_made(_Transport())  # type: ignore[arg-type]
    protocol.pause_writing()
    writers = [asyncio.ensure_future(protocol.drain()) for _ in range(3)]
    await asyncio.sleep(0)  # all three wait
    writers[0].cancel()
    await asyncio.sleep(0)
    assert not writers[1].done() and not writers[2].done()
    protocol.resume_writing()
    await asyncio.gather(writers[1], writers[2])  # returned, not cancelled
    assert writers[0].cancelled()
