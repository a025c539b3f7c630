from __future__ import annotations

from hearth.terminals.history import Entry, EntryType, History


def test_entry_types_are_the_wire_names() -> None:
    assert [t.value for t in EntryType] == ["input", "output", "system", "error"]


def test_entries_are_numbered_in_order() -> None:
    history = History(max_entries=10)
    history.add(EntryType.INPUT, 0, 1.0, b"ls\r")
    history.add_output(0, 5, 1.5)
    history.add(EntryType.SYSTEM, 5, 2.0, "resize 80x24")
    history.add(EntryType.ERROR, 5, 2.5, "boom")
    entries = history.select()
    assert [e.seq for e in entries] == [0, 1, 2, 3]
    assert [e.type for e in entries] == [
        EntryType.INPUT,
        EntryType.OUTPUT,
        EntryType.SYSTEM,
        EntryType.ERROR,
    ]
    assert entries[0] == Entry(0, EntryType.INPUT, 0, 1.0, b"ls\r")
    assert entries[1] == Entry(1, EntryType.OUTPUT, 0, 1.5, b"", 5)
    assert len(history) == 4


def test_a_burst_of_output_is_one_entry() -> None:
    history = History(max_entries=10)
    history.add_output(0, 5, 1.0)
    history.add_output(5, 3, 1.005)
    history.add_output(8, 2, 1.009)
    (entry,) = history.select()
    assert (entry.offset, entry.length, entry.timestamp) == (0, 10, 1.0)


def test_output_later_or_apart_is_a_new_entry() -> None:
    history = History(max_entries=10)
    history.add_output(0, 5, 1.0)
    history.add_output(5, 5, 1.5)  # later
    history.add(EntryType.INPUT, 10, 1.5, "x")
    history.add_output(10, 1, 1.501)  # after an input
    history.add_output(20, 1, 1.502)  # not contiguous
    entries = history.select()
    assert [(e.offset, e.length) for e in entries if e.type is EntryType.OUTPUT] == [
        (0, 5),
        (5, 5),
        (10, 1),
        (20, 1),
    ]
    assert [e.seq for e in entries] == [0, 1, 2, 3, 4]


def test_merging_does_not_use_a_sequence_number() -> None:
    history = History(max_entries=10)
    history.add_output(0, 1, 1.0)
    history.add_output(1, 1, 1.0)
    history.add(EntryType.SYSTEM, 2, 1.0, "exited 0")
    assert [e.seq for e in history.select()] == [0, 1]


def test_bounded_by_max_entries_dropping_the_oldest() -> None:
    history = History(max_entries=3)
    for i in range(10):
        history.add(EntryType.INPUT, i, float(i), str(i))
    assert len(history) == 3
    assert [e.data for e in history.select()] == ["7", "8", "9"]
    assert [e.seq for e in history.select()] == [7, 8, 9]


def test_select_since_and_limit() -> None:
    history = History(max_entries=10)
    history.add(EntryType.INPUT, 0, 1.0, "a")
    history.add_output(0, 4, 1.0)
    history.add(EntryType.INPUT, 4, 2.0, "b")
    history.add_output(4, 4, 2.0)
    history.add(EntryType.INPUT, 8, 3.0, "c")
    assert [e.seq for e in history.select(since=0)] == [0, 1, 2, 3, 4]
    assert [e.seq for e in history.select(since=1)] == [2, 3, 4]
    assert [e.seq for e in history.select(since=4)] == [2, 3, 4]
    assert [e.seq for e in history.select(since=4, limit=2)] == [2, 3]
    assert [e.seq for e in history.select(limit=1)] == [0]
    assert history.select(since=9) == []


def test_forget_before_drops_output_only_once_all_its_bytes_are_gone() -> None:
    history = History(max_entries=10)
    history.add(EntryType.INPUT, 0, 1.0, "a")
    history.add_output(0, 10, 1.0)
    history.add(EntryType.SYSTEM, 10, 2.0, "resize 80x24")
    history.add_output(10, 10, 3.0)
    history.forget_before(0)
    assert len(history) == 4
    history.forget_before(1)  # the input happened before offset 1: gone
    assert [e.seq for e in history.select()] == [1, 2, 3]
    history.forget_before(9)  # one byte of the output is still buffered
    assert [e.seq for e in history.select()] == [1, 2, 3]
    history.forget_before(10)
    assert [e.seq for e in history.select()] == [2, 3]  # the resize happened at offset 10
    history.forget_before(11)
    assert [e.seq for e in history.select()] == [3]
    history.forget_before(20)
    assert len(history) == 0
    history.forget_before(100)  # nothing left: no error
    assert history.select() == []


def test_numbering_goes_on_after_forgetting() -> None:
    history = History(max_entries=10)
    history.add(EntryType.INPUT, 0, 1.0, "a")
    history.forget_before(5)
    history.add(EntryType.INPUT, 5, 2.0, "b")
    assert [e.seq for e in history.select()] == [1]
