"""The spare (hearth.terminals.spare): one process parked ahead, taken by a create, the next one
parked SPARE_DELAY later, and none left once it is closed. The time is driven by the test; the
parked processes are real (in a cgroup of no controller: they enter nothing)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.clocks import Timers

from hearth.sandbox.cgroups import SessionCgroup
from hearth.terminals.pty import ParkedPty
from hearth.terminals.spare import SPARE_DELAY, Spare


@pytest.fixture
def parked() -> Iterator[list[ParkedPty]]:
    made: list[ParkedPty] = []
    yield made
    for process in made:  # whatever the test left running
        if process.popen.poll() is None:
            process.discard()


@pytest.fixture
def spare(parked: list[ParkedPty]) -> Iterator[tuple[Spare, Timers]]:
    def park() -> ParkedPty:
        process = ParkedPty(SessionCgroup({}, "cgroup2"))
        parked.append(process)
        return process

    timers = Timers()
    spare = Spare(park, call_later=timers.call_later)
    yield spare, timers
    spare.close()


def test_a_take_parks_the_next_one_after_the_delay(
    spare: tuple[Spare, Timers], parked: list[ParkedPty]
) -> None:
    s, timers = spare
    s.park()
    first = s.parked
    assert first is not None and first.waiting
    s.park()  # one at a time
    assert s.parked is first and len(parked) == 1
    assert s.take() is first and s.parked is None
    timers.advance(SPARE_DELAY / 2)
    assert s.parked is None  # the create answers first
    assert s.take() is None  # a second create meanwhile: nothing parked, no second timer
    assert timers.pending == 1
    timers.advance(SPARE_DELAY / 2)
    assert s.parked is not None and s.parked is not first and s.parked.waiting
    first.discard()


def test_a_dead_spare_is_not_handed_out(spare: tuple[Spare, Timers]) -> None:
    s, timers = spare
    s.park()
    assert s.parked is not None
    s.parked.popen.kill()
    s.parked.popen.wait()
    assert s.take() is None  # discarded, and the next one is due
    timers.advance(SPARE_DELAY)
    assert s.parked is not None and s.parked.waiting


def test_an_unused_spare_goes_back_unless_another_was_parked(
    spare: tuple[Spare, Timers],
) -> None:
    s, timers = spare
    s.park()
    taken = s.take()
    assert taken is not None
    s.give_back(taken)  # the create failed before it spawned
    assert s.parked is taken
    again = s.take()
    timers.advance(SPARE_DELAY)
    assert s.parked is not None and s.parked is not again
    assert again is not None
    s.give_back(again)  # one is parked already: this one goes
    assert again.popen.poll() is not None
    s.give_back(None)


def test_once_closed_none_is_parked_or_kept(spare: tuple[Spare, Timers]) -> None:
    s, timers = spare
    s.park()
    taken = s.take()
    assert taken is not None and timers.pending == 1
    s.close()
    assert timers.pending == 0
    timers.advance(SPARE_DELAY)
    s.park()
    assert s.parked is None
    s.give_back(taken)  # a create that failed while the host stopped
    assert s.parked is None and taken.popen.poll() is not None


def test_a_host_that_parks_none_schedules_nothing() -> None:
    timers = Timers()
    s = Spare(None, call_later=timers.call_later)
    s.park()
    assert s.take() is None and s.parked is None and timers.pending == 0


def test_a_failed_parking_leaves_no_spare() -> None:
    def no_room() -> ParkedPty:
        raise OSError(24, "Too many open files")

    timers = Timers()
    s = Spare(no_room, call_later=timers.call_later)
    s.park()
    assert s.parked is None
    assert s.take() is None and timers.pending == 1
