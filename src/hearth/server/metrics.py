"""Prometheus metrics of one app (own registry, so several apps can live in one process)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["Metrics"]

SessionCounts = Callable[[], Iterable[tuple[str, str, int]]]


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


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._session_sources: list[SessionCounts] = []
        self.registry.register(_SessionCollector(self._session_sources))
        r = self.registry
        self.websockets_open = Gauge(
            "hearth_websockets_open", "Open websockets", ["kind"], registry=r
        )
        self.bytes_streamed = Counter(
            "hearth_bytes_streamed", "Bytes sent to clients over websockets", ["kind"], registry=r
        )
        self.pool_size = Gauge("hearth_pool_size", "Kernel pool sessions", ["state"], registry=r)
        self.acquire_seconds = Histogram(
            "hearth_kernel_acquire_seconds",
            "Time to hand out a kernel session",
            ["source"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.pool_requests = Counter(
            "hearth_pool_requests",
            "Kernel acquisitions by outcome (hit, miss)",
            ["outcome"],
            registry=r,
        )
        self.kernel_events = Counter(
            "hearth_kernel_events",
            "Kernel starts, recycles, destroys and deaths",
            ["event"],
            registry=r,
        )

    def add_session_source(self, source: SessionCounts) -> None:
        """Register a callable giving (kind, status, count) rows at scrape time."""
        self._session_sources.append(source)

    def render(self) -> bytes:
        return generate_latest(self.registry)
