"""Prometheus metrics of one app (own registry, so several apps can live in one process)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from hearth.contract.calls import HostMetrics

__all__ = ["Metrics", "Tally"]


WEBSOCKET_KINDS = ("terminal", "kernel", "jupyter")


class _Snapshot:
    """What the session host said at the last scrape (``host.metrics``): plain data, pulled."""

    data: HostMetrics | None = None


class _FromHost(Collector):
    """A collector of figures from the host's snapshot."""

    def __init__(self, snapshot: _Snapshot) -> None:
        self._snapshot = snapshot


class _SessionCollector(_FromHost):
    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "hearth_sessions", "Sessions by kind and status", labels=["kind", "status"]
        )
        for kind, status, count in self._snapshot.data.sessions if self._snapshot.data else []:
            family.add_metric([kind, status], count)
        yield family


class _KernelCollector(_FromHost):
    """The kernel pool's counters, from the host's snapshot."""

    def collect(self) -> Iterable[Metric]:
        stats = self._snapshot.data.kernels if self._snapshot.data else None
        if not stats:
            return
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


class _ScreenCollector(_FromHost):
    """The screen model's counters (SPEC §9), from the host's snapshot; none when it is off."""

    def collect(self) -> Iterable[Metric]:
        stats = self._snapshot.data.screen_model if self._snapshot.data else None
        if not stats:
            return
        output = CounterMetricFamily(
            "hearth_screen_model_bytes",
            "Terminal output the screen model took (fed), or was too far behind to take and "
            "rebuilt the screen from the buffer instead (skipped)",
            labels=["fate"],
        )
        output.add_metric(["fed"], stats["fed_bytes"])
        output.add_metric(["skipped"], stats["skipped_bytes"])
        yield output
        yield GaugeMetricFamily(
            "hearth_screen_model_backlog_bytes",
            "Output sent to the screen model that it has not read yet",
            value=stats["backlog_bytes"],
        )
        yield CounterMetricFamily(
            "hearth_screen_model_restarts",
            "Times the screen model's Node.js process died and was started again",
            value=stats["restarts"],
        )


class _Figure:
    """One series of a :class:`Tally`."""

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value -= amount


class Tally:
    """A figure by websocket kind counted in this process, reported with the session host's
    (the host serves the terminal websockets handed to it)."""

    def __init__(self) -> None:
        self._figures = {kind: _Figure() for kind in WEBSOCKET_KINDS}

    def labels(self, kind: str) -> _Figure:
        return self._figures.setdefault(kind, _Figure())

    def value(self, kind: str, host: dict[str, int] | None = None) -> float:
        return self.labels(kind).value + (host or {}).get(kind, 0)

    def kinds(self) -> list[str]:
        return list(self._figures)


class _WebsocketCollector(_FromHost):
    def __init__(self, snapshot: _Snapshot, open: Tally, streamed: Tally) -> None:
        super().__init__(snapshot)
        self._open, self._streamed = open, streamed

    def collect(self) -> Iterable[Metric]:
        host = self._snapshot.data
        gauge = GaugeMetricFamily("hearth_websockets_open", "Open websockets", labels=["kind"])
        for kind in self._open.kinds():  # each series from the first scrape, at zero
            gauge.add_metric([kind], self._open.value(kind, host.websockets_open if host else None))
        yield gauge
        counter = CounterMetricFamily(
            "hearth_bytes_streamed", "Bytes sent to clients over websockets", labels=["kind"]
        )
        for kind in self._streamed.kinds():
            counter.add_metric(
                [kind], self._streamed.value(kind, host.bytes_streamed if host else None)
            )
        yield counter


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._snapshot = _Snapshot()
        self.websockets_open = Tally()
        self.bytes_streamed = Tally()
        self.registry.register(_SessionCollector(self._snapshot))
        self.registry.register(_KernelCollector(self._snapshot))
        self.registry.register(_ScreenCollector(self._snapshot))
        self.registry.register(
            _WebsocketCollector(self._snapshot, self.websockets_open, self.bytes_streamed)
        )

    def render(self, host_snapshot: HostMetrics) -> bytes:
        """The metrics, with the sessions' and the pool's from ``host_snapshot``."""
        self._snapshot.data = host_snapshot
        return generate_latest(self.registry)
