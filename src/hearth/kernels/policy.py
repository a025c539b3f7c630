"""The pool's bookkeeping and the idle policy: plain decisions over counts, no I/O.

The service counts its sessions into a :class:`PoolCounts` and asks :class:`PoolPolicy` what to
do; the decisions are tested on their own with plain numbers.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["Acquire", "PoolCounts", "PoolPolicy", "Release", "idle_expired"]

K = TypeVar("K")


class Acquire(enum.Enum):
    TAKE = "take"  # a ready pooled session: hand it out now (a pool hit)
    COLD = "cold"  # start a kernel for this caller, ahead of pool refills
    CLAIM = "claim"  # no room for a new kernel: wait for a pool kernel already starting
    REFUSE = "refuse"  # max_kernels reached and nothing is coming: 429


class Release(enum.Enum):
    RECYCLE = "recycle"  # fresh kernel, clean directory, back to the pool
    DESTROY = "destroy"  # the pool is full: stop the kernel for good


@dataclass(frozen=True, slots=True)
class PoolCounts:
    """Kernels by role. ``starting`` counts pool kernels on their way (fresh or recycled) that no
    caller waits for; a kernel a caller waits for counts in ``users``."""

    ready: int = 0
    starting: int = 0
    users: int = 0
    destroying: int = 0

    @property
    def pool(self) -> int:
        return self.ready + self.starting

    @property
    def total(self) -> int:
        return self.ready + self.starting + self.users + self.destroying


@dataclass(frozen=True, slots=True)
class PoolPolicy:
    target: int
    max_kernels: int

    def acquire(self, c: PoolCounts) -> Acquire:
        if c.ready:
            return Acquire.TAKE
        if c.total < self.max_kernels:
            return Acquire.COLD
        if c.starting:
            return Acquire.CLAIM
        return Acquire.REFUSE

    def refill(self, c: PoolCounts) -> int:
        """How many pool kernels to start now: up to the target, never beyond max_kernels."""
        return max(0, min(self.target - c.pool, self.max_kernels - c.total))

    def release(self, c: PoolCounts) -> Release:
        """What to do with a session its user let go (``c`` still counts it among ``users``)."""
        return Release.RECYCLE if c.pool < self.target else Release.DESTROY

    def refused_message(self, c: PoolCounts) -> str:
        return (
            f"All {self.max_kernels} kernels allowed by max_kernels are in use "
            f"({c.users} sessions, {c.pool} pooled): terminate a session or retry later."
        )


def idle_expired(last_activity: Iterable[tuple[K, float]], now: float, max_idle: float) -> list[K]:
    """The keys whose last activity is ``max_idle`` seconds old or more, oldest first."""
    expired = [(at, key) for key, at in last_activity if now - at >= max_idle]
    expired.sort(key=lambda pair: pair[0])
    return [key for _, key in expired]
