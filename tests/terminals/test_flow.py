"""Viewer flow control (hearth.terminals.flow): decisions from offsets, synchronously, and a
state machine that drives it with the real output buffer as a session does."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from hearth.terminals.buffer import OutputBuffer
from hearth.terminals.flow import FlowControl

LIMIT = 100


def test_under_the_pin_limit_nobody_is_released_and_the_shell_runs() -> None:
    flow: FlowControl[str] = FlowControl(LIMIT)
    flow.attach("a", 0)
    assert flow.output(pinned=LIMIT, policy_start=50) == []
    assert flow.reading and not flow.stall_timer and flow.holds("a")


def test_a_lagging_viewer_is_released_while_another_keeps_up() -> None:
    flow: FlowControl[str] = FlowControl(LIMIT)
    flow.attach("slow", 0)
    flow.attach("fast", 0)
    flow.progress("fast", 300, end=300)
    assert flow.floor() == 0
    assert flow.output(pinned=LIMIT + 1, policy_start=199) == ["slow"]
    assert flow.reading and not flow.holds("slow") and flow.holds("fast")
    assert flow.floor() == 300
    flow.progress("slow", 250, end=320)
    assert not flow.holds("slow")  # behind the end: still released
    flow.progress("slow", 320, end=320)
    assert flow.holds("slow")  # caught up: holds again


def test_when_every_viewer_lags_the_shell_waits_until_they_read_or_stall() -> None:
    flow: FlowControl[str] = FlowControl(LIMIT)
    flow.attach("a", 0)
    flow.attach("b", 10)
    assert flow.output(pinned=LIMIT + 1, policy_start=101) == []
    assert not flow.reading and flow.stall_timer
    flow.progress("a", 80, end=201)
    assert not flow.relieved(pinned=LIMIT // 2 + 1)  # not below the low-water mark yet
    assert flow.relieved(pinned=LIMIT // 2)
    assert flow.reading and not flow.stall_timer
    assert not flow.relieved(pinned=0)  # reading already: nothing to do

    assert flow.output(pinned=LIMIT + 5, policy_start=150) == []
    assert sorted(flow.stalled(end=300)) == ["a", "b"]
    assert flow.floor() is None and not flow.stall_timer


def test_a_viewer_at_the_end_is_not_stalled_and_a_detached_one_is_forgotten() -> None:
    flow: FlowControl[str] = FlowControl(LIMIT)
    flow.attach("done", 40)
    flow.attach("gone", 0)
    flow.detach("gone")
    flow.progress("gone", 10, end=40)  # a late progress of a detached viewer: ignored
    assert flow.stalled(end=40) == []
    assert flow.holds("done") and not flow.holds("gone") and flow.floor() == 40


class SessionMachine(RuleBasedStateMachine):
    """A session's loop in miniature: output comes only while reading, viewers read at their own
    pace, the stall timer may fire whenever it runs."""

    MAX_READ = 64

    @initialize(max_bytes=st.sampled_from([16, 64, 200]), pin_limit=st.sampled_from([32, 100]))
    def setup(self, max_bytes: int, pin_limit: int) -> None:
        self.buf = OutputBuffer(max_lines=1_000_000, max_bytes=max_bytes)
        self.flow: FlowControl[int] = FlowControl(pin_limit)
        self.viewers: dict[int, int] = {}  # id -> offset, as the attachments keep them
        self.next_id = 0
        self.lost: set[int] = set()  # viewers that missed bytes while not holding

    def relieve(self) -> None:
        self.buf.trim(self.flow.floor())
        self.flow.relieved(self.buf.pinned_bytes)

    @rule(at_end=st.booleans())
    def attach(self, at_end: bool) -> None:
        offset = self.buf.end if at_end else self.buf.start
        self.viewers[self.next_id] = offset
        self.flow.attach(self.next_id, offset)
        self.next_id += 1

    @precondition(lambda self: self.viewers)
    @rule(data=st.data())
    def detach(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.viewers)))
        del self.viewers[key]
        self.flow.detach(key)
        self.relieve()

    @precondition(lambda self: self.flow.reading)
    @rule(n=st.integers(1, MAX_READ))
    def output(self, n: int) -> None:
        self.buf.append(b"x" * n, floor=self.flow.floor())
        pinned = self.buf.pinned_bytes
        released = self.flow.output(pinned, self.buf.start + pinned)
        if released:
            self.relieve()

    @precondition(lambda self: self.viewers)
    @rule(data=st.data(), n=st.integers(0, 300))
    def read(self, data: st.DataObject, n: int) -> None:
        key = data.draw(st.sampled_from(sorted(self.viewers)))
        offset = self.viewers[key]
        if offset < self.buf.start:  # told what it missed, goes on from the oldest byte
            assert not self.flow.holds(key)
            self.lost.add(key)
            offset = self.buf.start
        offset = min(self.buf.end, offset + n)
        self.viewers[key] = offset
        self.flow.progress(key, offset, self.buf.end)
        self.relieve()

    @precondition(lambda self: self.flow.stall_timer)
    @rule()
    def stall(self) -> None:
        self.flow.stalled(self.buf.end)
        self.relieve()

    @invariant()
    def a_holding_viewer_loses_nothing(self) -> None:
        for key, offset in self.viewers.items():
            if self.flow.holds(key):
                assert offset >= self.buf.start

    @invariant()
    def the_pinned_bytes_stay_bounded(self) -> None:
        assert self.buf.pinned_bytes <= self.flow.pin_limit + self.MAX_READ

    @invariant()
    def a_waiting_shell_always_has_a_way_out(self) -> None:
        if not self.flow.reading:
            assert self.flow.stall_timer  # the timer releases the laggards, then it reads again

    @invariant()
    def without_holders_nothing_is_pinned_and_the_shell_runs(self) -> None:
        if self.flow.floor() is None:
            assert self.buf.pinned_bytes == 0
            assert self.flow.reading  # nobody to wait for


TestSessionMachine = SessionMachine.TestCase
TestSessionMachine.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)
