"""Faults of a cluster (SPEC §12): Redis killed or restarted empty, a node's web server killed,
a node gone for good, a name used twice. Nothing is lost, each state is reported, and the
cluster recovers without an operator."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.cluster.nodes import Node, StartCluster, api, node_env, wait_for_nodes
from tests.cluster.redis import Redis
from tests.cluster.test_placement import SLEEPER
from tests.conftest import ALICE
from tests.served import HEARTH, free_port, shutdown, unmount_volume
from tests.server.termclient import TermClient, close_code_of

TERMINALS = "/api/v1/terminal/sessions"


def poll(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def health(node: Node) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{node.url}/healthz", timeout=10).json()
    return answer


def listed(node: Node) -> dict[str, dict[str, Any]]:
    with api(node) as client:
        return {s["id"]: s for s in client.get(TERMINALS).json()}


def test_without_redis_nodes_serve_their_own_and_recover_when_it_comes_back_empty(
    cluster: StartCluster, redis_server: Redis
) -> None:
    a, b = cluster(2)
    wait_for_nodes([a, b])
    with api(a) as via_a:
        made = via_a.post(TERMINALS, json={"id": "kept", "node": "b", "command": SLEEPER})
        assert made.status_code == 201, made.text
        assert via_a.get(f"{TERMINALS}/kept").json()["node"] == "b"

    redis_server.kill()
    poll(lambda: health(a).get("cluster") == "degraded", "a reports the cluster degraded")
    with api(b) as via_b:  # b serves its own session
        assert via_b.get(f"{TERMINALS}/kept").status_code == 200
    with api(a) as via_a:  # a can't look it up: try again later, not "no such session"
        answer = via_a.get(f"{TERMINALS}/kept")
        assert answer.status_code == 503, answer.text
        assert int(answer.headers["retry-after"]) >= 1
        here = via_a.post(TERMINALS, json={"id": "while-down", "command": SLEEPER})
        assert here.status_code == 201, here.text  # a create is made here meanwhile

    redis_server.restart()  # empty: the nodes write their part again
    poll(lambda: health(a).get("cluster") == "ok" and health(b).get("cluster") == "ok", "ok")
    with api(a) as via_a, api(b) as via_b:
        got = poll(lambda: via_a.get(f"{TERMINALS}/kept").status_code == 200, "a finds b's")
        assert got
        assert via_a.get(f"{TERMINALS}/kept").json()["node"] == "b"
        assert via_b.get(f"{TERMINALS}/while-down").json()["node"] == "a"


async def test_a_killed_web_server_leaves_its_sessions_listed_unreachable_then_back_whole(
    cluster: StartCluster,
) -> None:
    """b's web server dies: its session host keeps the sessions, and the websocket a relays
    (handed to b's host) goes on streaming; b's sessions are listed unreachable and calls for
    them answer 503 until b is back."""
    a, b = cluster(2)
    wait_for_nodes([a, b])
    with api(a) as via_a:
        command = ["/bin/sh", "-c", "read go; seq 1 3000; echo EN''D; exec sleep 1000"]
        made = via_a.post(TERMINALS, json={"id": "far", "node": "b", "command": command})
        assert made.status_code == 201, made.text
    ws_a = f"ws://127.0.0.1:{a.port}"
    viewer = await TermClient.connect(ws_a, "far", ALICE, reconnect="true")
    await viewer.frame("replay_done")

    b.kill_web()
    info = poll(lambda: listed(a).get("far", {}).get("node_reachable") is False, "unreachable")
    assert info
    with api(a) as via_a:
        answer = via_a.get(f"{TERMINALS}/far")
        assert answer.status_code == 503 and int(answer.headers["retry-after"]) >= 1, answer.text
    path = f"/api/v1/terminal/ws/far?token={ALICE}&reconnect=true"
    assert await close_code_of(ws_a, path) == 1013  # try again later
    await viewer.send(b"go\n")
    text = (await viewer.read_until(b"END\r\n")).decode()
    numbers = [int(n) for n in text.replace("\r", "\n").split("\n") if n.isdigit()]
    assert numbers == list(range(1, 3001))

    b.restart_web()
    wait_for_nodes([a, b])
    poll(lambda: listed(a)["far"].get("node_reachable", True) is True, "reachable again")
    end = viewer.next_offset
    again = await TermClient.connect(ws_a, "far", ALICE, reconnect="true", since=end)
    assert again.hello["replay_from"] == end and again.hello["missed_bytes"] == 0
    await again.close()
    await viewer.close()


def test_a_node_gone_for_good_has_its_sessions_closed_as_node_lost(cluster: StartCluster) -> None:
    a, b = cluster(2, env_all={"HEARTH_NODE_LOST_TIMEOUT": "3"})
    wait_for_nodes([a, b])
    with api(a) as via_a:
        made = via_a.post(TERMINALS, json={"id": "gone", "node": "b", "command": SLEEPER})
        assert made.status_code == 201, made.text
        poll(lambda: "gone" in listed(b), "b listed it")
    b.kill_web()
    lost = poll(lambda: listed(a).get("gone", {}).get("closed_reason") == "node_lost", "lost")
    assert lost
    item = listed(a)["gone"]
    assert item["status"] == "closed" and item["node"] == "b" and item["node_reachable"] is False
    with api(a) as via_a:
        assert via_a.get(f"{TERMINALS}/gone").status_code == 404
    lost_nodes = [n for n in health(a)["nodes"] if n["lost"]]
    assert [n["name"] for n in lost_nodes] == ["b"]


def test_a_second_node_with_a_name_in_use_is_refused(
    cluster: StartCluster, redis_server: Redis, tmp_path: Any
) -> None:
    (a,) = cluster(1)
    wait_for_nodes([a])
    port = free_port()
    env = node_env(redis_server, "a", port, a.env["HEARTH_CLUSTER_SECRET"])
    twin = tmp_path / "twin"
    try:
        proc = subprocess.run(
            [*HEARTH, "serve", "--port", str(port), "--data-dir", str(twin)],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
    finally:  # its session host started before it was refused
        shutdown(twin)
        unmount_volume(twin)
    assert proc.returncode != 0
    assert "Hearth is serving" not in proc.stdout
    assert "runs as 'a'" in proc.stderr and "node_name" in proc.stderr, proc.stderr[-2000:]
    assert health(a)["cluster"] == "ok"  # the first is untouched
