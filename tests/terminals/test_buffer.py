"""OutputBuffer against a reference model that keeps the whole stream as one bytes object."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from hearth.terminals.buffer import OutputBuffer

EVERYTHING = 1 << 62


class Model:
    """The overflow policy of the docstring, computed from scratch on the whole stream.

    ``policy`` is where the caps alone start the buffer; it only moves forward. The line cap
    keeps the last ``max_lines`` newlines (and what follows them); the byte cap then cuts at the
    first line start inside the last ``max_bytes`` bytes, or inside a line when there is none.
    """

    def __init__(self, max_lines: int, max_bytes: int) -> None:
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.stream = bytearray()
        self.newlines: list[int] = []  # offsets of every newline ever written
        self.policy = 0
        self.start = 0
        self.cut_inside_line = False  # the byte cap or drop_oldest ever cut mid-line

    @property
    def end(self) -> int:
        return len(self.stream)

    def line_start(self) -> int:
        excess = len(self.newlines) - self.max_lines
        return self.newlines[excess - 1] + 1 if excess > 0 else 0

    def append(self, data: bytes, floor: int | None) -> None:
        if not data:
            return  # an empty append is no write at all: no trim either
        base = self.end
        self.stream += data
        self.newlines.extend(base + i for i, byte in enumerate(data) if byte == 0x0A)
        self.policy = max(self.policy, self.line_start())
        if self.end - self.policy > self.max_bytes:
            limit = self.end - self.max_bytes
            boundary = next(
                (b for b in range(limit, self.end) if self.stream[b - 1] == 0x0A),
                None,
            )
            if boundary is None:
                self.cut_inside_line = True
            self.policy = limit if boundary is None else boundary
        self.trim(floor)

    def trim(self, floor: int | None) -> None:
        target = self.policy if floor is None else min(self.policy, floor)
        self.start = max(self.start, target)

    def drop_oldest(self, n: int) -> int:
        target = min(self.end, self.start + max(0, n))
        dropped = target - self.start
        if dropped:
            self.cut_inside_line = True
            self.policy = max(self.policy, target)
            self.start = target
        return dropped


def check(buf: OutputBuffer, model: Model) -> None:
    assert buf.end == model.end
    assert buf.start == model.start
    assert len(buf) == model.end - model.start
    assert buf.pinned_bytes == model.policy - model.start
    assert buf.read(buf.start, EVERYTHING) == bytes(model.stream[model.start :])
    assert len(buf) <= buf.max_bytes + buf.pinned_bytes
    # The part the policy keeps holds at most max_lines complete lines.
    kept = bytes(model.stream[model.policy :])
    assert kept.count(b"\n") <= buf.max_lines


# --- the reference model, driven by hypothesis ---------------------------------------------

chunks = st.one_of(
    st.binary(max_size=12),
    st.lists(st.sampled_from([b"a", b"bc", b"\n", b"\r\n", b"xyz\n", b"\n\n"]), max_size=8).map(
        b"".join
    ),
    st.builds(lambda n, nl: b"q" * n + (b"\n" if nl else b""), st.integers(0, 300), st.booleans()),
)


class BufferMachine(RuleBasedStateMachine):
    buf: OutputBuffer
    model: Model

    @initialize(
        max_lines=st.integers(1, 6), max_bytes=st.sampled_from([1, 2, 3, 5, 8, 16, 64, 500])
    )
    def setup(self, max_lines: int, max_bytes: int) -> None:
        self.buf = OutputBuffer(max_lines, max_bytes)
        self.model = Model(max_lines, max_bytes)

    def _floor(self, data: st.DataObject) -> int | None:
        choice = data.draw(st.sampled_from(["none", "inside", "anywhere"]))
        if choice == "none":
            return None
        if choice == "inside":
            return data.draw(st.integers(self.buf.start, self.buf.end))
        return data.draw(st.integers(-5, self.buf.end + 50))

    @rule(chunk=chunks, data=st.data())
    def append(self, chunk: bytes, data: st.DataObject) -> None:
        floor = self._floor(data)
        before = self.buf.start
        self.buf.append(chunk, floor=floor)
        self.model.append(chunk, floor)
        if floor is not None:
            # Nothing at or above the floor was dropped.
            assert self.buf.start <= max(before, floor)

    @rule(data=st.data())
    def trim(self, data: st.DataObject) -> None:
        floor = self._floor(data)
        before = self.buf.start
        self.buf.trim(floor)
        self.model.trim(floor)
        if floor is not None:
            assert self.buf.start <= max(before, floor)

    @precondition(lambda self: self.buf.end > 0)
    @rule(n=st.integers(-3, 80))
    def drop_oldest(self, n: int) -> None:
        assert self.buf.drop_oldest(n) == self.model.drop_oldest(n)

    @rule(data=st.data())
    def read_any_slice(self, data: st.DataObject) -> None:
        since = data.draw(st.integers(-5, self.buf.end + 5))
        size = data.draw(st.integers(-1, 2 * len(self.buf) + 2))
        lo = max(since, self.model.start)
        expected = bytes(self.model.stream[lo : lo + max(0, size)]) if lo < self.model.end else b""
        assert self.buf.read(since, size) == expected

    @invariant()
    def matches_model(self) -> None:
        check(self.buf, self.model)

    @invariant()
    def every_suffix_is_exact(self) -> None:
        offsets = range(self.buf.start, self.buf.end + 1)
        if len(offsets) > 64:
            offsets = range(self.buf.start, self.buf.end + 1, len(offsets) // 64 + 1)
        for since in [*offsets, max(self.buf.start, self.buf.end - 1)]:
            assert self.buf.read(since, EVERYTHING) == bytes(self.model.stream[since:])

    @invariant()
    def starts_at_a_line_unless_forced(self) -> None:
        if self.model.cut_inside_line or self.buf.pinned_bytes:
            return
        assert self.buf.start == 0 or self.model.stream[self.buf.start - 1] == 0x0A

    @invariant()
    def start_never_decreases(self) -> None:
        previous = getattr(self, "_last_start", 0)
        assert self.buf.start >= previous
        self._last_start = self.buf.start


TestBufferMachine = BufferMachine.TestCase
TestBufferMachine.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)


@settings(max_examples=200, deadline=None)
@given(
    pieces=st.lists(st.binary(min_size=1, max_size=40), max_size=30),
    max_lines=st.integers(1, 5),
    max_bytes=st.integers(1, 200),
)
def test_small_appends_match_the_model(pieces: list[bytes], max_lines: int, max_bytes: int) -> None:
    buf, model = OutputBuffer(max_lines, max_bytes), Model(max_lines, max_bytes)
    for piece in pieces:
        buf.append(piece)
        model.append(piece, None)
        check(buf, model)


@settings(max_examples=100, deadline=None)
@given(text=st.lists(st.sampled_from([b"ab", b"\n", b"cde", b"\r\n"]), max_size=60).map(b"".join))
def test_coalescing_keystrokes_keeps_content(text: bytes) -> None:
    """Byte-at-a-time writes (keystroke echoes) are coalesced and read back exactly."""
    one_by_one = OutputBuffer(max_lines=10_000, max_bytes=1 << 20)
    for i in range(len(text)):
        one_by_one.append(text[i : i + 1])
    assert one_by_one.read(0, EVERYTHING) == text
    assert (one_by_one.start, one_by_one.end) == (0, len(text))


# --- large streams: many chunks, chunk compaction ----------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_many_large_appends_match_the_model(seed: int) -> None:
    rng = random.Random(seed)
    max_lines, max_bytes = rng.choice([(50, 200_000), (2_000, 40_000), (10_000, 1_000_000)])
    buf, model = OutputBuffer(max_lines, max_bytes), Model(max_lines, max_bytes)
    for step in range(300):
        size = rng.choice([1, 7, 4000, 4097, 9000])
        data = bytes(rng.choice(b"abcdefgh\n" if step % 3 else b"xyz") for _ in range(size))
        floor = rng.choice([None, None, buf.start + rng.randrange(len(buf) + 1)])
        buf.append(data, floor=floor)
        model.append(data, floor)
        if step % 50 == 49:
            n = rng.randrange(len(buf) + 1)
            assert buf.drop_oldest(n) == model.drop_oldest(n)
        assert (buf.start, buf.end, buf.pinned_bytes) == (
            model.start,
            model.end,
            model.policy - model.start,
        )
        since = rng.randrange(buf.start, buf.end + 1)
        assert buf.read(since, 5000) == bytes(model.stream[since : since + 5000])
    check(buf, model)


# --- edge cases ------------------------------------------------------------------------------


@pytest.mark.parametrize(("max_lines", "max_bytes"), [(0, 10), (1, 0), (-1, -1)])
def test_rejects_an_empty_capacity(max_lines: int, max_bytes: int) -> None:
    with pytest.raises(ValueError, match="at least one line and one byte"):
        OutputBuffer(max_lines, max_bytes)


def test_a_new_buffer_is_empty() -> None:
    buf = OutputBuffer(10, 100)
    assert (buf.start, buf.end, len(buf), buf.pinned_bytes) == (0, 0, 0, 0)
    assert buf.read(0, 100) == b""


def test_empty_append_changes_nothing() -> None:
    buf = OutputBuffer(10, 100)
    buf.append(b"hello\n")
    buf.append(b"")
    buf.append(b"", floor=0)
    assert (buf.start, buf.end) == (0, 6)
    assert buf.read(0, 100) == b"hello\n"


def test_a_huge_append_without_newline_keeps_its_last_bytes() -> None:
    buf = OutputBuffer(10, 100)
    data = bytes(range(256)) * 40
    buf.append(data)
    assert (buf.start, buf.end) == (len(data) - 100, len(data))
    assert buf.read(0, 1000) == data[-100:]


def test_a_huge_append_keeps_the_last_lines_whole() -> None:
    buf = OutputBuffer(max_lines=3, max_bytes=1000)
    lines = [f"line {i}\n".encode() for i in range(500)]
    buf.append(b"".join(lines) + b"$ ")
    assert buf.read(buf.start, 10_000) == b"".join(lines[-3:]) + b"$ "


def test_crlf_lines_are_kept_whole() -> None:
    buf = OutputBuffer(max_lines=5, max_bytes=1000)
    for i in range(20):
        buf.append(f"row {i:02}\r\n".encode())
    assert buf.read(0, 1000) == b"".join(f"row {i:02}\r\n".encode() for i in range(15, 20))
    # The byte cap cuts at a line start, never between '\r' and '\n'.
    small = OutputBuffer(max_lines=100, max_bytes=20)
    for i in range(10):
        small.append(f"row {i:02}\r\n".encode())
    assert small.read(0, 1000) == b"row 08\r\nrow 09\r\n"


def test_byte_cap_cuts_exactly_at_a_line_start_on_the_limit() -> None:
    """A line that starts right at ``end - max_bytes`` fits and is kept whole."""
    buf = OutputBuffer(max_lines=100, max_bytes=5)
    buf.append(b"ab\ncd\nef")
    assert buf.read(0, 100) == b"cd\nef"
    assert buf.start == 3


def test_byte_cap_cuts_inside_a_line_when_the_tail_has_no_line_start() -> None:
    buf = OutputBuffer(max_lines=100, max_bytes=4)
    buf.append(b"ab\ncdefgh")
    assert buf.read(0, 100) == b"efgh"
    buf.append(b"\n")  # the only line start is the end itself: keep the tail of the line
    assert buf.read(0, 100) == b"fgh\n"
    buf.append(b"ij")  # now a line starts inside the last 4 bytes: cut there
    assert buf.read(0, 100) == b"ij"
    buf.append(b"k")
    assert buf.read(0, 100) == b"ijk"


def test_line_cap_counts_the_partial_line_apart() -> None:
    buf = OutputBuffer(max_lines=2, max_bytes=1000)
    buf.append(b"one\ntwo\nthree\npartial")
    assert buf.read(0, 100) == b"two\nthree\npartial"
    buf.append(b" more\n")
    assert buf.read(0, 100) == b"three\npartial more\n"


def test_read_clamps_and_bounds() -> None:
    buf = OutputBuffer(max_lines=2, max_bytes=1000)
    buf.append(b"a\nb\nc\nd")
    assert buf.start == 2
    assert buf.read(0, 100) == b"b\nc\nd"  # since below start is clamped to start
    assert buf.read(-10, 2) == b"b\n"
    assert buf.read(buf.end, 100) == b""
    assert buf.read(buf.end + 10, 100) == b""
    assert buf.read(3, 0) == b""
    assert buf.read(3, -1) == b""
    assert buf.read(3, 3) == b"\nc\n"


def test_read_spans_chunks() -> None:
    buf = OutputBuffer(max_lines=100_000, max_bytes=1 << 20)
    parts = [bytes([65 + i % 26]) * 5000 for i in range(6)]  # too big to be coalesced
    for part in parts:
        buf.append(part)
    stream = b"".join(parts)
    for since, size in [(0, 30_000), (4999, 2), (4999, 5002), (12_345, 9_000), (29_999, 5)]:
        assert buf.read(since, size) == stream[since : since + size]


def test_floor_pins_bytes_until_released() -> None:
    buf = OutputBuffer(max_lines=2, max_bytes=1000)
    buf.append(b"1\n2\n3\n", floor=0)
    assert buf.start == 0
    assert buf.pinned_bytes == 2  # "1\n" is held only by the floor
    buf.append(b"4\n5\n", floor=4)
    assert buf.start == 4
    assert buf.pinned_bytes == 2
    assert buf.read(0, 100) == b"3\n4\n5\n"
    buf.trim(5)  # the reader moved on, mid-line
    assert buf.start == 5
    assert buf.read(0, 100) == b"\n4\n5\n"
    buf.trim()
    assert (buf.start, buf.pinned_bytes) == (6, 0)
    assert buf.read(0, 100) == b"4\n5\n"


def test_floor_pins_beyond_the_byte_cap() -> None:
    buf = OutputBuffer(max_lines=1000, max_bytes=10)
    buf.append(b"x" * 25, floor=3)
    assert buf.start == 3
    assert len(buf) == 22
    assert buf.pinned_bytes == 12
    assert len(buf) <= buf.max_bytes + buf.pinned_bytes


def test_a_floor_beyond_the_end_pins_nothing_and_one_below_start_keeps_all() -> None:
    buf = OutputBuffer(max_lines=1, max_bytes=1000)
    buf.append(b"a\nb\n", floor=100)
    assert (buf.start, buf.pinned_bytes) == (2, 0)
    buf.append(b"c\n", floor=0)  # below start: nothing more is dropped, nothing comes back
    assert (buf.start, buf.pinned_bytes) == (2, 2)
    assert buf.read(0, 10) == b"b\nc\n"


def test_trim_without_policy_pressure_does_nothing() -> None:
    buf = OutputBuffer(max_lines=10, max_bytes=1000)
    buf.append(b"a\nb\n")
    buf.trim()
    buf.trim(1)
    assert (buf.start, buf.end) == (0, 4)


def test_drop_oldest() -> None:
    buf = OutputBuffer(max_lines=10, max_bytes=1000)
    buf.append(b"hello\nworld\n")
    assert buf.drop_oldest(0) == 0
    assert buf.drop_oldest(-5) == 0
    assert buf.drop_oldest(3) == 3
    assert buf.read(0, 100) == b"lo\nworld\n"
    assert buf.pinned_bytes == 0
    assert buf.drop_oldest(100) == 9
    assert (buf.start, buf.end, len(buf)) == (12, 12, 0)
    assert buf.read(0, 100) == b""
    assert buf.drop_oldest(5) == 0
    buf.append(b"again\n")
    assert buf.read(0, 100) == b"again\n"
    assert buf.start == 12


def test_drop_oldest_ignores_the_floor_and_releases_pinned_bytes() -> None:
    buf = OutputBuffer(max_lines=1, max_bytes=1000)
    buf.append(b"a\nb\nc\n", floor=0)
    assert buf.pinned_bytes == 4
    assert buf.drop_oldest(5) == 5
    assert (buf.start, buf.pinned_bytes) == (5, 0)
    # The line count restarts from the new start: the next line pushes out only what it must.
    buf.append(b"d\n", floor=5)
    assert buf.read(0, 100) == b"\nd\n"
    buf.trim()
    assert buf.read(0, 100) == b"d\n"


def test_long_idle_stream_stays_bounded() -> None:
    buf = OutputBuffer(max_lines=3, max_bytes=50)
    written = 0
    for i in range(20_000):
        piece = b"k" if i % 7 else b"\r\n"
        buf.append(piece)
        written += len(piece)
        assert len(buf) <= 50
    assert buf.end == written
    assert buf.read(buf.start, 100).count(b"\n") <= 3
