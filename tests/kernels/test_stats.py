"""The pool's counters as plain data (pulled by the server's metrics; JSON, to cross a socket)."""

from __future__ import annotations

import json

from hearth.kernels.stats import PoolStats


def test_counts_and_a_cumulative_histogram_as_plain_data() -> None:
    stats = PoolStats()
    stats.kernel_event("start")
    stats.kernel_event("start")
    stats.kernel_event("recycle")
    stats.acquired("pool", 0.002)
    stats.acquired("pool", 0.003)
    stats.acquired("cold", 0.7)
    snap = json.loads(json.dumps(stats.snapshot()))
    assert snap["events"] == {"start": 2, "recycle": 1, "destroy": 0, "death": 0}  # all, at zero
    assert snap["requests"] == {"hit": 2, "miss": 1}
    pool = dict(map(tuple, snap["acquire"]["pool"]["buckets"]))
    assert (pool["0.001"], pool["0.0025"], pool["0.005"], pool["+Inf"]) == (0, 1, 2, 2)
    assert snap["acquire"]["pool"]["count"] == 2
    assert abs(snap["acquire"]["pool"]["sum"] - 0.005) < 1e-9
    cold = dict(map(tuple, snap["acquire"]["cold"]["buckets"]))
    assert (cold["0.5"], cold["1.0"]) == (0, 1)
    assert snap["acquire"]["claim"]["count"] == 0  # every source from the start
