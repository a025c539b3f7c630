"""What the kernel pool counts, as plain data: the web tier's metrics ask the session host for
it when scraped (``host.metrics``), so nothing calls back across the seam."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ACQUIRE_BUCKETS", "EVENTS", "OUTCOMES", "SOURCES", "PoolStats"]

# seconds: upper bounds of the hand-out latency histogram
ACQUIRE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_LE = (*(repr(float(b)) for b in ACQUIRE_BUCKETS), "+Inf")  # Prometheus's "le" labels


@dataclass
class _Latency:
    buckets: list[int] = field(default_factory=lambda: [0] * (len(ACQUIRE_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect_left(ACQUIRE_BUCKETS, seconds)] += 1
        self.total += seconds
        self.count += 1


EVENTS = ("start", "recycle", "destroy", "death")
OUTCOMES = ("hit", "miss")
SOURCES = ("pool", "claim", "cold")  # where a handed-out kernel came from


class PoolStats:
    """Every series is there from the start, at zero: a scrape of a fresh server shows each
    metric, not only those something has happened to."""

    def __init__(self) -> None:
        self.events: Counter[str] = Counter(dict.fromkeys(EVENTS, 0))
        self.requests: Counter[str] = Counter(dict.fromkeys(OUTCOMES, 0))
        self._acquire: dict[str, _Latency] = {source: _Latency() for source in SOURCES}

    def kernel_event(self, event: str) -> None:
        self.events[event] += 1

    def acquired(self, source: str, seconds: float) -> None:
        self._acquire.setdefault(source, _Latency()).observe(seconds)
        self.requests["hit" if source == "pool" else "miss"] += 1

    def snapshot(self) -> dict[str, Any]:
        """Plain data (JSON): counters, and per source the histogram's cumulative counts."""
        acquire = {}
        for source, latency in self._acquire.items():
            running, cumulative = 0, []
            for n in latency.buckets:
                running += n
                cumulative.append(running)
            acquire[source] = {
                "buckets": [[le, c] for le, c in zip(_LE, cumulative, strict=True)],
                "sum": latency.total,
                "count": latency.count,
            }
        return {"events": dict(self.events), "requests": dict(self.requests), "acquire": acquire}
