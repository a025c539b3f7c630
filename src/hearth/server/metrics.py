"""Prometheus metrics of one app (own registry, so several apps can live in one process)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

__all__ = ["Metrics"]

SessionCounts = Callable[[], Iterable[tuple[str, str, int]]]
KernelStats = Callable[[], dict[str, Any]]  # KernelService.stats: plain data, pulled


class _SessionCollector(Collector):
    def __init__(self, sources: list[SessionCounts]) -> None:
        self._sources = sources

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "hearth_sessions", "Sessions by kind and status", labels=["kind", "status"]
        )
        for source in self._sources:
            for kind, status, count in source():
                family.add_metric([kind, status], count)
        yield family


class _KernelCollector(Collector):
    """The kernel pool's counters, read from its snapshot at scrape time."""

    def __init__(self, sources: list[KernelStats]) -> None:
        self._sources = sources

    def collect(self) -> Iterable[Metric]:
        if not self._sources:
            return
        stats = self._sources[0]()
        size = GaugeMetricFamily("hearth_pool_size", "Kernel pool sessions", labels=["state"])
        for state, n in stats["pool"].items():
            size.add_metric([state], n)
        yield size
        requests = CounterMetricFamily(
            "hearth_pool_requests", "Kernel acquisitions by outcome (hit, miss)", labels=["outcome"]
        )
        for outcome, n in stats["requests"].items():
            requests.add_metric([outcome], n)
        yield requests
        events = CounterMetricFamily(
            "hearth_kernel_events", "Kernel starts, recycles, destroys and deaths", labels=["event"]
        )
        for event, n in stats["events"].items():
            events.add_metric([event], n)
        yield events
        acquire = HistogramMetricFamily(
            "hearth_kernel_acquire_seconds", "Time to hand out a kernel session", labels=["source"]
        )
        for source, h in stats["acquire"].items():
            acquire.add_metric([source], [(le, n) for le, n in h["buckets"]], h["sum"])
        yield acquire


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._session_sources: list[SessionCounts] = []
        self.registry.register(_SessionCollector(self._session_sources))
        self._kernel_sources: list[KernelStats] = []
        self.registry.register(_KernelCollector(self._kernel_sources))
        r = self.registry
        self.websockets_open = Gauge(
            "hearth_websockets_open", "Open websockets", ["kind"], registry=r
        )
        self.bytes_streamed = Counter(
            "hearth_bytes_streamed", "Bytes sent to clients over websockets", ["kind"], registry=r
        )

    def add_session_source(self, source: SessionCounts) -> None:
        """Register a callable giving (kind, status, count) rows at scrape time."""
        self._session_sources.append(source)

    def add_kernel_source(self, source: KernelStats) -> None:
        """Register the kernel service's ``stats`` (pulled at scrape time)."""
        self._kernel_sources.append(source)

    def render(self) -> bytes:
        return generate_latest(self.registry)
