from __future__ import annotations

import json
from collections.abc import Callable
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from hearth.terminals.asciicast import entry_text, render_cast
from hearth.terminals.buffer import OutputBuffer
from hearth.terminals.history import Entry, EntryType, History


def reader(stream: bytes) -> Callable[[int, int], bytes]:
    def read(offset: int, length: int) -> bytes:
        return stream[offset : offset + length]

    return read


def test_output_is_read_from_the_stream_and_other_entries_carry_their_data() -> None:
    stream = b"hello\r\nworld"
    history = History(max_entries=10)
    history.add(EntryType.INPUT, 0, 1.0, b"ls\r")
    history.add_output(0, 7, 1.0)
    history.add(EntryType.SYSTEM, 7, 2.0, "resize 100x30")
    history.add(EntryType.ERROR, 7, 2.0, "something broke")
    history.add_output(7, 5, 3.0)
    texts = [text for _, text in entry_text(history.select(), reader(stream))]
    assert texts == ["ls\r", "hello\r\n", "resize 100x30", "something broke", "world"]


def test_a_character_split_across_output_entries_is_not_broken() -> None:
    stream = "aé漢😀b".encode()
    entries = [
        Entry(0, EntryType.OUTPUT, 0, 1.0, b"", 2),  # "a" + first byte of "é"
        Entry(1, EntryType.INPUT, 2, 1.5, "x"),  # input in between doesn't reset decoding
        Entry(2, EntryType.OUTPUT, 2, 2.0, b"", 3),  # rest of "é" + 2 bytes of "漢"
        Entry(3, EntryType.OUTPUT, 5, 3.0, b"", 4),  # last of "漢" + 3 of "😀"
        Entry(4, EntryType.OUTPUT, 9, 4.0, b"", 2),  # last of "😀" + "b"
    ]
    texts = [text for _, text in entry_text(entries, reader(stream))]
    assert texts == ["a", "x", "é", "漢", "😀b"]


def test_decoding_restarts_where_the_stream_is_not_contiguous() -> None:
    stream = "é".encode() + b"ok"
    entries = [
        Entry(0, EntryType.OUTPUT, 0, 1.0, b"", 1),  # half a character...
        Entry(1, EntryType.OUTPUT, 2, 2.0, b"", 2),  # ...and the rest was never recorded
    ]
    texts = [text for _, text in entry_text(entries, reader(stream))]
    assert texts == ["", "ok"]


def test_invalid_utf8_is_replaced() -> None:
    stream = b"a\xffb"
    history = History(max_entries=10)
    history.add_output(0, 3, 1.0)
    history.add(EntryType.INPUT, 3, 2.0, b"\xfe")
    texts = [text for _, text in entry_text(history.select(), reader(stream))]
    assert texts == ["a\ufffdb", "\ufffd"]


@given(text=st.text(max_size=40), cuts=st.lists(st.integers(0, 200), max_size=8))
def test_decoded_output_entries_join_to_the_stream_text(text: str, cuts: list[int]) -> None:
    stream = text.encode()
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    entries = [
        Entry(i, EntryType.OUTPUT, lo, float(i), b"", hi - lo)
        for i, (lo, hi) in enumerate(pairwise(bounds))
    ]
    assert "".join(t for _, t in entry_text(entries, reader(stream))) == text


def test_entries_partly_dropped_from_the_buffer_read_what_is_left() -> None:
    """The way the server reads a buffer that dropped the start of an entry."""
    buf = OutputBuffer(max_lines=2, max_bytes=1000)
    history = History(max_entries=10)
    for chunk, t in [(b"one\ntwo\n", 1.0), (b"three\n", 2.0)]:
        buf.append(chunk)
        history.add_output(buf.end - len(chunk), len(chunk), t)
        history.forget_before(buf.start)

    def read(offset: int, length: int) -> bytes:
        start = max(offset, buf.start)
        return buf.read(start, offset + length - start)

    assert buf.start == 4  # "one\n" is gone, the first entry is half there
    texts = [text for _, text in entry_text(history.select(), read)]
    assert texts == ["two\n", "three\n"]


def parse(cast: str) -> tuple[dict[str, object], list[list[object]]]:
    assert cast.endswith("\n")
    header, *events = [json.loads(line) for line in cast.splitlines()]
    return header, events


def test_render_cast_header() -> None:
    cast = render_cast(
        width=80,
        height=24,
        started=1700000000.75,
        title="Terminal 1",
        env={"TERM": "xterm-256color", "SHELL": "/bin/bash"},
        entries=[],
    )
    header, events = parse(cast)
    assert header == {
        "version": 2,
        "width": 80,
        "height": 24,
        "timestamp": 1700000000,
        "title": "Terminal 1",
        "env": {"TERM": "xterm-256color", "SHELL": "/bin/bash"},
    }
    assert events == []


def test_render_cast_events() -> None:
    started = 1000.0
    stream = b"$ ls\r\nfile\r\n"
    history = History(max_entries=20)
    history.add(EntryType.INPUT, 0, 1000.5, b"ls\r")
    history.add_output(0, 6, 1000.6)
    history.add_output(6, 0, 1000.7)  # nothing to show
    history.add(EntryType.SYSTEM, 6, 1001.0, "resize 120x40")
    history.add(EntryType.ERROR, 6, 1001.0, "not in a cast")
    history.add(EntryType.SYSTEM, 6, 1001.5, "exited 0")
    history.add_output(6, 6, 1002.25)
    history.add(EntryType.INPUT, 12, 999.0, "early")  # before the start: clamped to 0
    cast = render_cast(
        width=80,
        height=24,
        started=started,
        title="t",
        env={},
        entries=entry_text(history.select(), reader(stream)),
    )
    _, events = parse(cast)
    assert events == [
        [0.5, "i", "ls\r"],
        [0.6, "o", "$ ls\r\n"],
        [1.0, "r", "120x40"],
        [2.25, "o", "file\r\n"],
        [0.0, "i", "early"],
    ]


def test_render_cast_escapes_control_characters_and_unicode() -> None:
    stream = '\x1b[31mrouge\x1b[0m "q" \\ é\n'.encode()
    history = History(max_entries=10)
    history.add_output(0, len(stream), 5.0)
    cast = render_cast(
        width=80,
        height=24,
        started=5.0,
        title='a "title"\nwith a newline',
        env={},
        entries=entry_text(history.select(), reader(stream)),
    )
    assert cast.count("\n") == 2  # header and one event: no raw newline leaks
    header, events = parse(cast)
    assert header["title"] == 'a "title"\nwith a newline'
    assert events == [[0.0, "o", stream.decode()]]
