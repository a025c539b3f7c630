"""Viewer flow control of one terminal session (pure: offsets in, decisions out; no I/O, no
clock, no asyncio).

A viewer that *holds* loses nothing: the buffer keeps what it has not been sent. So that a slow
viewer never stalls a shell for long, what holders keep beyond the buffer's caps is bounded;
:class:`FlowControl` decides who is released and when the shell waits. The session applies the
decisions: it trims the buffer to :meth:`FlowControl.floor`, pauses or resumes its reader, runs
the stall timer, tells the released.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["FlowControl"]

K = TypeVar("K", bound=Hashable)


class FlowControl(Generic[K]):
    """Each viewer's offset, and who holds. Bytes kept beyond the buffer's caps for holders
    (``pinned``) are bounded by ``pin_limit``. Past that:

    - if some holder keeps up (is at or past where the caps alone would start the buffer), the
      holders behind it are *released*, told what they missed, and go on from the oldest byte
      still buffered;
    - if every holder lags, the shell waits (the PTY is not read) as on a real terminal, and a
      stall timer runs: holders still behind when it fires are released.

    A released viewer holds again once it has caught up with the end. Reading resumes when the
    pinned bytes fall to half the limit.
    """

    def __init__(self, pin_limit: int) -> None:
        self.pin_limit = pin_limit
        self._offsets: dict[K, int] = {}
        self._holding: set[K] = set()
        self.reading = True  # the PTY is being read
        self.stall_timer = False  # a stall timer should be running (the shell waits for viewers)

    # -- viewers ------------------------------------------------------------------------------

    def attach(self, key: K, offset: int) -> None:
        self._offsets[key] = offset
        self._holding.add(key)

    def detach(self, key: K) -> None:
        self._offsets.pop(key, None)
        self._holding.discard(key)

    def holds(self, key: K) -> bool:
        return key in self._holding

    def offset(self, key: K) -> int:
        return self._offsets[key]

    def floor(self) -> int | None:
        """The oldest byte a holder still needs: the buffer keeps everything from there."""
        held = [self._offsets[k] for k in self._holding]
        return min(held) if held else None

    # -- events -------------------------------------------------------------------------------

    def output(self, pinned: int, policy_start: int) -> list[K]:
        """Output was appended and the buffer holds ``pinned`` bytes beyond its caps for holders
        (``policy_start``: where the caps alone would start it). Returns the holders released;
        pauses reading (and wants the stall timer) when every holder lags."""
        if pinned <= self.pin_limit:
            return []
        holders = list(self._holding)
        if any(self._offsets[k] >= policy_start for k in holders):
            released = [k for k in holders if self._offsets[k] < policy_start]
            self._holding.difference_update(released)
            return released
        self.reading = False
        self.stall_timer = True
        return []

    def progress(self, key: K, offset: int, end: int) -> None:
        """``key`` was sent the output up to ``offset`` (``end``: the next byte to be produced).
        A released viewer that caught up holds again."""
        if key not in self._offsets:
            return
        self._offsets[key] = offset
        if offset >= end:
            self._holding.add(key)

    def relieved(self, pinned: int) -> bool:
        """After the buffer was trimmed to :meth:`floor`: True when reading must resume (the
        pinned bytes fell to half the limit); the stall timer is then over."""
        if self.reading or pinned > self.pin_limit // 2:
            return False
        self.reading = True
        self.stall_timer = False
        return True

    def stalled(self, end: int) -> list[K]:
        """The stall timer fired: the holders still behind ``end`` are released."""
        self.stall_timer = False
        released = [k for k in self._holding if self._offsets[k] < end]
        self._holding.difference_update(released)
        return released
