"""``/metrics`` (SPEC §1) shows every metric from a fresh server's first scrape, at zero, not
only those something has happened to (a dashboard or an alert on a missing series sees nothing)."""

from __future__ import annotations

import httpx

from tests.conftest import RunningServer

SERIES = (
    "hearth_sessions",  # by kind and status
    "hearth_pool_size",
    "hearth_pool_requests_total",
    "hearth_kernel_events_total",
    "hearth_kernel_acquire_seconds_bucket",  # the acquisition latency histogram
    "hearth_bytes_streamed_total",
    "hearth_websockets_open",
)


def test_a_fresh_servers_first_scrape_has_every_metric(server: RunningServer) -> None:
    text = httpx.get(f"{server.url}/metrics").text
    samples = [line.split("{")[0].split()[0] for line in text.splitlines() if line[:1] != "#"]
    assert [name for name in SERIES if name not in samples] == []
    for kind in ("terminal", "kernel", "jupyter"):
        assert f'hearth_websockets_open{{kind="{kind}"}} 0.0' in text
        assert f'hearth_bytes_streamed_total{{kind="{kind}"}} 0.0' in text
    assert 'hearth_kernel_acquire_seconds_count{source="pool"} 0.0' in text
