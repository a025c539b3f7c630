"""Fixtures of the cluster tests: a real Redis (tests/cluster/redis.py) and real nodes sharing it
(tests/cluster/nodes.py)."""

from __future__ import annotations

from tests.cluster.nodes import cluster  # noqa: F401  (a fixture)
from tests.cluster.redis import redis_server  # noqa: F401  (a fixture)
