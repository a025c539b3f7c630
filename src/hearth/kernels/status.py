"""The life cycle of a kernel session, as an enum and its legal moves (pure).

::

    starting ─▶ pooled ─▶ active ⇄ executing
        ▲                   │  ▲
        │                   ▼  │ (restart)
        │                  idle ─▶ cleaning ─▶ starting (recycle, back to the pool)
        │                   │         │
        └──── dead ◀────────┘         └─▶ closed (destroyed)

``dead`` is a kernel that exited on its own; it is restarted at once (``starting``).
``idle`` marks a session whose idle time ran out: it is being reclaimed.
"""

from __future__ import annotations

import enum

__all__ = ["IllegalTransition", "KernelLifecycle", "KernelStatus"]


class KernelStatus(enum.Enum):
    STARTING = "starting"
    POOLED = "pooled"
    ACTIVE = "active"
    EXECUTING = "executing"
    IDLE = "idle"
    CLEANING = "cleaning"
    DEAD = "dead"
    CLOSED = "closed"

    @property
    def serves_users(self) -> bool:
        """Whether a session in this state belongs to a user (and can be asked for work)."""
        return self in _USER_FACING


_USER_FACING = frozenset({KernelStatus.ACTIVE, KernelStatus.EXECUTING, KernelStatus.DEAD})

S = KernelStatus
_MOVES: dict[KernelStatus, frozenset[KernelStatus]] = {
    S.STARTING: frozenset({S.POOLED, S.ACTIVE, S.DEAD, S.CLEANING, S.CLOSED}),
    S.POOLED: frozenset({S.ACTIVE, S.DEAD, S.CLEANING, S.CLOSED}),
    S.ACTIVE: frozenset({S.EXECUTING, S.IDLE, S.STARTING, S.DEAD, S.CLEANING, S.CLOSED}),
    S.EXECUTING: frozenset({S.ACTIVE, S.STARTING, S.DEAD, S.CLEANING, S.CLOSED}),
    S.IDLE: frozenset({S.ACTIVE, S.CLEANING, S.DEAD, S.CLOSED}),
    S.DEAD: frozenset({S.STARTING, S.CLEANING, S.CLOSED}),
    S.CLEANING: frozenset({S.STARTING, S.CLOSED}),
    S.CLOSED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A call that the session's current state does not allow (a bug in the caller)."""


class KernelLifecycle:
    """The current status of one session; every move is checked against ``_MOVES``."""

    def __init__(self, name: str, status: KernelStatus = KernelStatus.STARTING) -> None:
        self.name = name
        self.status = status

    def can(self, to: KernelStatus) -> bool:
        return to is self.status or to in _MOVES[self.status]

    def move(self, to: KernelStatus, call: str) -> None:
        """Go to ``to``; ``call`` names what asked, for the error message."""
        if not self.can(to):
            raise IllegalTransition(
                f"Cannot {call} kernel session {self.name!r}: it is {self.status.value}."
            )
        self.status = to

    def __repr__(self) -> str:
        return f"KernelLifecycle({self.name!r}, {self.status.value})"
