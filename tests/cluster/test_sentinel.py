"""A cluster whose Redis is found through Sentinel (``redis+sentinel://…/service``), as the
README's deployment has it for Redis's own failover: a real sentinel (``redis-server
--sentinel``) watching the test's Redis."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.cluster.nodes import StartCluster, api, wait_for_nodes
from tests.cluster.redis import Redis
from tests.cluster.test_placement import SLEEPER
from tests.served import free_port

SERVICE = "hearth"


@pytest.fixture
def sentinel(redis_server: Redis, tmp_path: Path) -> Iterator[str]:
    """A sentinel watching ``redis_server`` as ``hearth``; its ``redis+sentinel://`` URL."""
    port = free_port()
    config = tmp_path / "sentinel.conf"  # sentinel rewrites its file: one of its own
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor {SERVICE} 127.0.0.1 {redis_server.port} 1\n"
    )
    log = (tmp_path / "sentinel.log").open("w")
    proc = subprocess.Popen(["redis-server", str(config), "--sentinel"], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with redis.Redis(port=port, socket_timeout=1) as client:
                    if client.execute_command("SENTINEL", "get-master-addr-by-name", SERVICE):
                        break
            except redis.ConnectionError:
                pass
            assert proc.poll() is None, (tmp_path / "sentinel.log").read_text()
            assert time.monotonic() < deadline, "the sentinel did not answer"
            time.sleep(0.05)
        yield f"redis+sentinel://127.0.0.1:{port}/{SERVICE}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_nodes_find_their_redis_through_sentinel(
    cluster: StartCluster, sentinel: str, redis_server: Redis
) -> None:
    through = {"HEARTH_CLUSTER_REDIS_URL": sentinel}
    a, b = cluster(2, env={"a": through, "b": through})
    wait_for_nodes([a, b])
    with api(a) as via_a:
        made = via_a.post(
            "/api/v1/terminal/sessions", json={"id": "s", "node": "b", "command": SLEEPER}
        )
        assert made.status_code == 201, made.text
        assert via_a.get("/api/v1/terminal/sessions/s").json()["node"] == "b"
    with redis_server.client() as client:  # the master Sentinel named is the one written
        assert client.hget("hearth:where", "t/alice/s") == b"b"
