"""A bound on concurrent kernel starts, where a caller's own start goes first.

Starting kernels competes for CPU: five pool refills at once can make a user's cold start several
times slower. The gate admits at most ``limit`` starts at a time; pool refills ("background") may
use at most ``limit - 1`` of them (at least one), so a caller's start ("urgent") usually finds a
free place at once, and when it has to queue it is admitted before any waiting refill.

:class:`GateBook` is the pure bookkeeping; :class:`StartGate` puts futures around it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

__all__ = ["GateBook", "StartGate", "Ticket"]


@dataclass(eq=False)
class Ticket:
    urgent: bool
    admitted: bool = False
    waiter: asyncio.Future[None] | None = field(default=None, repr=False)


class GateBook:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a start gate needs a limit of at least 1, got {limit}")
        self.limit = limit
        self.background_limit = max(1, limit - 1)
        self.running: list[Ticket] = []
        self.waiting: list[Ticket] = []

    def request(self, urgent: bool) -> Ticket:
        ticket = Ticket(urgent)
        self.waiting.append(ticket)
        return ticket

    def promote(self, ticket: Ticket) -> None:
        """A caller now waits for this start: it becomes urgent."""
        ticket.urgent = True

    def admit(self) -> list[Ticket]:
        """Admit what fits, urgent tickets first (FIFO within a kind); returns those admitted."""
        admitted: list[Ticket] = []
        for urgent in (True, False):
            for ticket in [t for t in self.waiting if t.urgent is urgent]:
                if not self._fits(ticket):
                    break
                self.waiting.remove(ticket)
                self.running.append(ticket)
                ticket.admitted = True
                admitted.append(ticket)
        return admitted

    def done(self, ticket: Ticket) -> None:
        """The start of ``ticket`` ended (or its wait was abandoned)."""
        if ticket in self.running:
            self.running.remove(ticket)
        elif ticket in self.waiting:
            self.waiting.remove(ticket)

    def _fits(self, ticket: Ticket) -> bool:
        if len(self.running) >= self.limit:
            return False
        background = sum(1 for t in self.running if not t.urgent)
        return ticket.urgent or background < self.background_limit


class StartGate:
    def __init__(self, limit: int) -> None:
        self.book = GateBook(limit)

    @contextlib.asynccontextmanager
    async def slot(self, ticket: Ticket) -> AsyncIterator[None]:
        """Hold a place for the duration of one kernel start."""
        try:
            self._wake()
            if not ticket.admitted:
                ticket.waiter = asyncio.get_running_loop().create_future()
                await ticket.waiter
            yield
        finally:
            self.book.done(ticket)
            self._wake()

    def request(self, urgent: bool) -> Ticket:
        return self.book.request(urgent)

    def promote(self, ticket: Ticket) -> None:
        self.book.promote(ticket)
        self._wake()

    def _wake(self) -> None:
        for ticket in self.book.admit():
            if ticket.waiter is not None and not ticket.waiter.done():
                ticket.waiter.set_result(None)
