"""The cluster fixtures do what the cluster tests will need of them: a Redis that can be killed
and comes back empty, and nodes that share it, each with its own settings, data directory and
session host, whose web server can be killed and started again with its sessions kept."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
import redis

from tests.cluster.nodes import Node, StartCluster
from tests.cluster.redis import Redis
from tests.conftest import ALICE

H = {"Authorization": f"Bearer {ALICE}"}
SLEEPER = {"command": ["/bin/sh", "-c", "exec sleep 1000"]}


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def healthy(node: Node) -> bool:
    try:
        return httpx.get(f"{node.url}/healthz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def test_redis_answers_stops_when_killed_and_comes_back_empty(redis_server: Redis) -> None:
    with redis_server.client() as client:
        assert client.ping()
        client.set("kept?", "no")
        assert client.get("kept?") == b"no"

        redis_server.kill()
        assert not redis_server.running
        with pytest.raises(redis.exceptions.ConnectionError):
            client.ping()

        port = redis_server.port
        redis_server.restart()
        assert redis_server.running and redis_server.port == port
        assert redis_server.url == f"redis://127.0.0.1:{port}/0"
        assert client.ping()  # the client reconnects to the same address
        assert client.get("kept?") is None and client.dbsize() == 0


def test_a_stopped_redis_restarts_empty(redis_server: Redis) -> None:
    with redis_server.client() as client:
        client.set("kept?", "no")
        redis_server.stop()  # SIGTERM: Redis would save here if saving were on
        redis_server.restart()
        assert client.dbsize() == 0
    assert not (redis_server.workdir / "dump.rdb").exists()


def test_three_nodes_share_redis_each_with_its_own_settings_and_host(
    cluster: StartCluster, redis_server: Redis
) -> None:
    nodes = cluster(3, env={"c": {"HEARTH_MAX_TERMINALS": "1"}})
    assert [n.name for n in nodes] == ["a", "b", "c"]
    assert len({n.port for n in nodes}) == 3 and len({n.data_dir for n in nodes}) == 3
    for node in nodes:
        assert node.url == f"http://127.0.0.1:{node.port}" == node.served.base
        assert healthy(node), node.log()
    assert len({n.served.host_pid() for n in nodes}) == 3

    envs = [environ(n.served.proc.pid) for n in nodes]
    for node, env in zip(nodes, envs, strict=True):
        assert env["HEARTH_NODE_NAME"] == node.name
        assert env["HEARTH_ADVERTISE_URL"] == node.url
        assert env["HEARTH_CLUSTER_REDIS_URL"] == redis_server.url
        assert float(env["HEARTH_NODE_LEASE_S"]) <= 2
    secrets = {env["HEARTH_CLUSTER_SECRET"] for env in envs}
    assert len(secrets) == 1 and len(secrets.pop()) >= 16
    assert len({env["HEARTH_TOKENS"] for env in envs}) == 1

    # a node's own settings are its own: c holds one terminal, a more (each create names its
    # node, or the cluster would place the second elsewhere)
    for node, second in [(nodes[0], 201), (nodes[2], 429)]:
        here = {**SLEEPER, "node": node.name}
        with httpx.Client(base_url=node.url, headers=H, timeout=30) as c:
            assert c.post("/api/v1/terminal/sessions", json=here).status_code == 201
            assert c.post("/api/v1/terminal/sessions", json=here).status_code == second


def test_a_killed_web_server_leaves_its_host_and_sessions_for_the_next(
    cluster: StartCluster,
) -> None:
    (node,) = cluster(1)
    with httpx.Client(base_url=node.url, headers=H, timeout=30) as c:
        r = c.post("/api/v1/terminal/sessions", json=SLEEPER)
        assert r.status_code == 201, r.text
        tid = r.json()["id"]
    host = node.served.host_pid()

    node.kill_web()
    assert not healthy(node)
    assert os.path.exists(f"/proc/{host}")

    node.restart_web()
    deadline = time.monotonic() + 30
    while not healthy(node):  # it may still be reconnecting to the host
        assert time.monotonic() < deadline, node.log()
        time.sleep(0.05)
    assert node.served.host_pid() == host
    with httpx.Client(base_url=node.url, headers=H, timeout=30) as c:
        info = c.get(f"/api/v1/terminal/sessions/{tid}").json()
    assert info["id"] == tid and info["alive"] is True, info
