"""The spare: the next terminal's process, parked in its cgroup ahead of the create that takes it.

Entering a cgroup is the slowest step of a sandboxed terminal's start (see
:mod:`hearth.sandbox.parked`), so one process waits there ahead. A create takes it; the next one
is parked ``SPARE_DELAY`` seconds later, after that create has answered (parking costs the event
loop ~1 ms). At most one is parked at a time, and none once the spare is closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from hearth.sandbox import Sandbox
from hearth.terminals.pty import ParkedPty

__all__ = ["SPARE_DELAY", "Spare", "parked_pty"]

log = logging.getLogger("hearth.terminals")

SPARE_DELAY = 0.05  # seconds after a take before the next spare is parked


class Timer(Protocol):
    def cancel(self) -> None: ...


CallLater = Callable[[float, Callable[[], None]], Timer]


def parked_pty(sandbox: Sandbox) -> ParkedPty:
    """A process parked in a fresh session cgroup of ``sandbox`` (the cgroup goes if it fails)."""
    cgroup = sandbox.spare_cgroup()
    try:
        return ParkedPty(cgroup)
    except OSError:
        cgroup.remove()
        raise


def _call_later(delay: float, callback: Callable[[], None]) -> Timer:
    return asyncio.get_running_loop().call_later(delay, callback)


class Spare:
    """``park``: makes a parked process (None: this host parks none). ``call_later``: schedules
    the next parking (the event loop's, unless a test drives the time)."""

    def __init__(
        self,
        park: Callable[[], ParkedPty] | None,
        *,
        delay: float = SPARE_DELAY,
        call_later: CallLater = _call_later,
    ) -> None:
        self._park = park
        self._delay = delay
        self._call_later = call_later
        self.parked: ParkedPty | None = None
        self._due: Timer | None = None
        self._closed = False

    def park(self) -> None:
        """Park a process now, unless one is parked already."""
        self._due = None
        if self._closed or self.parked is not None or self._park is None:
            return
        try:
            self.parked = self._park()
        except OSError as exc:
            log.warning("no spare terminal process", extra={"error": str(exc)})

    def take(self) -> ParkedPty | None:
        """The parked process, if it still waits (None otherwise); the next one is due."""
        spare, self.parked = self.parked, None
        if spare is not None and not spare.waiting:  # it failed to enter its cgroup, or died
            spare.discard()
            spare = None
        if self._park is not None and self._due is None and not self._closed:
            self._due = self._call_later(self._delay, self.park)
        return spare

    def give_back(self, spare: ParkedPty | None) -> None:
        """A taken process that was not used (the create failed first): as good as before."""
        if spare is None:
            return
        if self.parked is None and not self._closed:
            self.parked = spare
        else:
            spare.discard()

    def close(self) -> None:
        """Discard the parked process; none is parked after."""
        self._closed = True
        if self._due is not None:
            self._due.cancel()
            self._due = None
        if self.parked is not None:
            self.parked.discard()
            self.parked = None
