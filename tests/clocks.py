"""Time driven by a test: a wall clock it advances, and timers set on a clock it advances."""

from __future__ import annotations

from collections.abc import Callable


class FakeClock:
    """A ``time.time`` the test advances."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Timer:
    cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Timers:
    """A ``loop.call_later`` on a clock the test advances: what is due runs in ``advance``."""

    def __init__(self) -> None:
        self.now = 0.0
        self._due: list[tuple[float, Callable[[], None], Timer]] = []

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer()
        self._due.append((self.now + delay, callback, timer))
        return timer

    @property
    def pending(self) -> int:
        return sum(1 for _, _, timer in self._due if not timer.cancelled)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [d for d in self._due if d[0] <= self.now]
        self._due = [d for d in self._due if d[0] > self.now]
        for _, callback, timer in due:
            if not timer.cancelled:
                callback()
