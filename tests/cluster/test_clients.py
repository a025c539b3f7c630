"""The Python client and the `hearth` command line through any node (SPEC §12): the session
objects carry the ``node`` holding them (None on a single node, whose answers and table stay as
they were), ``hearth ls`` shows a NODE column, and both keep working while a node is down
(``node_reachable`` False, ``(unreachable)``) or lost for good (``closed_reason: "node_lost"``,
which the wire models alone don't accept)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

import hearth
from hearth.client import KernelInfo, TerminalState
from hearth.errors import BadRequest, HostUnavailable
from tests.cluster.nodes import Node, StartCluster, wait_for_nodes
from tests.conftest import ALICE, RunningServer

SLEEPER = ["/bin/sh", "-c", "exec sleep 1000"]


def hearth_cli(url: str, command: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
    return subprocess.run(
        [sys.executable, "-m", "hearth", command, "--url", url, "--token", ALICE, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def table(url: str) -> list[list[str]]:
    """`hearth ls` as rows of cells (cells are split on runs of two spaces or more)."""
    done = hearth_cli(url, "ls")
    assert done.returncode == 0, done.stderr
    return [re.split(r"\s{2,}", line.strip()) for line in done.stdout.splitlines()]


def node_up(via: Node, name: str) -> bool:
    nodes = httpx.get(f"{via.url}/healthz", timeout=5).json()["nodes"]
    return any(n["name"] == name and n["reachable"] for n in nodes)


def poll(what: str, check: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def by_id(items: list[Any], field: str = "id") -> dict[str, Any]:
    return {getattr(i, field): i for i in items}


# --- one node: nothing changes --------------------------------------------------------------


def test_a_single_node_answers_without_a_node(server: RunningServer) -> None:
    with hearth.Client(server.url, ALICE) as client:
        made = client.terminals.create(id="solo", command=SLEEPER)
        assert made.node is None and made.node_reachable
        assert client.terminals.get("solo").node is None
        assert [t.node for t in client.terminals.list()] == [None]
        with pytest.raises(BadRequest):  # no cluster: no node to name
            client.terminals.create(command=SLEEPER, node="b")
    assert table(server.url)[0] == ["KIND", "ID", "NAME", "STATUS", "DETAIL", "AGE"]
    listed = json.loads(hearth_cli(server.url, "ls", "--json").stdout)
    [solo] = listed["terminals"]
    assert "node" not in solo and "node_reachable" not in solo
    assert solo["id"] == "solo"
    assert set(solo) == set(made.model_dump()) - {"node", "node_reachable"}


# --- two nodes ------------------------------------------------------------------------------


async def test_sessions_say_their_node_through_any_node_and_while_it_is_down(
    cluster: StartCluster,
) -> None:
    a, b = cluster(2)
    wait_for_nodes([a, b])
    with hearth.Client(a.url, ALICE) as via_a:
        on_b = via_a.terminals.create(id="on-b", command=SLEEPER, node="b")
        on_a = via_a.terminals.create(id="on-a", command=SLEEPER, node="a")
        assert (on_b.node, on_a.node) == ("b", "a")
        assert on_b.node_reachable and isinstance(on_b, TerminalState)
        assert via_a.terminals.get("on-b").node == "b"
        kernel = via_a.kernels.create(session_id="k-on-b", node="b")
        assert kernel.info.node == "b" and isinstance(kernel.info, KernelInfo)
        with pytest.raises(BadRequest):
            via_a.terminals.create(command=SLEEPER, node="nowhere")
    async with hearth.AsyncClient(b.url, ALICE) as via_b:
        listed = by_id(await via_b.terminals.list())
        assert {i: t.node for i, t in listed.items()} == {"on-b": "b", "on-a": "a"}
        assert all(t.node_reachable for t in listed.values())
        assert (await via_b.terminals.get("on-a")).node == "a"
        assert [k.info.node for k in await via_b.kernels.list()] == ["b"]

    # the command line: a NODE column, and `new --node`
    made = hearth_cli(a.url, "new", "--node", "b", "-d", "--", *SLEEPER)
    assert made.returncode == 0, made.stderr
    new_id = made.stdout.strip()
    rows = table(b.url)
    assert rows[0] == ["KIND", "ID", "NAME", "NODE", "STATUS", "DETAIL", "AGE"]
    nodes = {r[1]: r[3] for r in rows[1:]}
    assert nodes == {"on-b": "b", "on-a": "a", new_id: "b", "k-on-b": "b"}
    dumped = json.loads(hearth_cli(a.url, "ls", "--json").stdout)
    assert {t["id"]: t["node"] for t in dumped["terminals"]} == {
        "on-b": "b",
        "on-a": "a",
        new_id: "b",
    }
    assert [(k["session_id"], k["node"]) for k in dumped["kernels"]] == [("k-on-b", "b")]

    # b's web server stops (its sessions go on in its session host): listed as unreachable
    b.kill_web()
    with hearth.Client(a.url, ALICE) as via_a:

        def b_down() -> dict[str, TerminalState] | None:
            listed = by_id(via_a.terminals.list())
            return listed if not listed["on-b"].node_reachable else None

        listed = poll("b's sessions listed as unreachable", b_down)
        assert listed["on-b"].node == "b" and listed["on-b"].status != "closed"
        assert listed["on-a"].node_reachable
        [k] = via_a.kernels.list()
        assert (k.info.node, k.info.node_reachable) == ("b", False)
        with pytest.raises(HostUnavailable):
            via_a.terminals.get("on-b")
        poll("a to see b's lease gone", lambda: not node_up(a, "b"))
        with pytest.raises(HostUnavailable):  # asked for by name: not placed elsewhere
            via_a.terminals.create(command=SLEEPER, node="b")
    nodes = {r[1]: r[3] for r in table(a.url)[1:]}
    assert nodes["on-b"] == nodes[new_id] == nodes["k-on-b"] == "b (unreachable)"
    assert nodes["on-a"] == "a"

    # back: reachable again, nothing lost
    b.restart_web()
    with hearth.Client(a.url, ALICE) as via_a:
        poll(
            "b's sessions reachable again",
            lambda: all(t.node_reachable for t in via_a.terminals.list()),
        )
        assert via_a.terminals.get("on-b").alive


def test_a_node_lost_for_good_closes_its_sessions_in_the_lists(cluster: StartCluster) -> None:
    a, b = cluster(2, env={"a": {"HEARTH_NODE_LOST_TIMEOUT": "1"}})
    wait_for_nodes([a, b])
    with hearth.Client(a.url, ALICE) as via_a:
        via_a.terminals.create(id="doomed", command=SLEEPER, node="b")
        via_a.terminals.create(id="kept", command=SLEEPER, node="a")
        via_a.kernels.create(session_id="k-doomed", node="b")
        b.kill_web()

        def lost() -> dict[str, TerminalState] | None:
            listed = by_id(via_a.terminals.list())
            return listed if listed["doomed"].closed_reason == "node_lost" else None

        listed = poll("b's sessions closed as node_lost", lost)
        doomed = listed["doomed"]
        assert (doomed.status, doomed.node, doomed.node_reachable) == ("closed", "b", False)
        assert listed["kept"].status != "closed" and listed["kept"].closed_reason is None
        [k] = via_a.kernels.list()
        assert (k.info.closed_reason, k.info.status, k.info.node) == ("node_lost", "closed", "b")
    rows = {r[1]: r for r in table(a.url)[1:]}
    assert rows["doomed"][3:6] == ["b (unreachable)", "closed", "lost with node b (gone for good)"]
    assert rows["k-doomed"][3:6] == [
        "b (unreachable)",
        "closed",
        "lost with node b (gone for good)",
    ]
    assert rows["kept"][3:5] == ["a", "disconnected"]  # no viewer


def test_a_create_naming_a_node_just_gone_answers_503_at_once(cluster: StartCluster) -> None:
    # a long lease: a still sees b up when its web server is gone, so the create is relayed
    a, b = cluster(2, env_all={"HEARTH_NODE_LEASE_S": "15"})
    wait_for_nodes([a, b])
    b.kill_web()
    answer = httpx.post(
        f"{a.url}/api/v1/terminal/sessions",
        headers={"Authorization": f"Bearer {ALICE}"},
        json={"command": SLEEPER, "node": "b"},
        timeout=10,
    )
    assert answer.status_code == 503, answer.text
    assert "Retry-After" in answer.headers
