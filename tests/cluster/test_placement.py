"""Creates on any node land on the node with the most headroom (or the one named), and every
node then answers for the session (SPEC §12)."""

from __future__ import annotations

import asyncio

import httpx

from tests.cluster.nodes import StartCluster, api, wait_for_nodes
from tests.conftest import ALICE, BOB

SLEEPER = ["/bin/sh", "-c", "exec sleep 1000"]


def test_creates_through_a_full_node_land_on_the_others_and_answer_everywhere(
    cluster: StartCluster,
) -> None:
    a, b, c = cluster(3, env={"a": {"HEARTH_MAX_TERMINALS": "1"}})
    wait_for_nodes([a, b, c])
    with api(a) as via_a:
        first = via_a.post(
            "/api/v1/terminal/sessions", json={"id": "on-a", "node": "a", "command": SLEEPER}
        )
        assert first.status_code == 201, first.text
        assert first.json()["node"] == "a"
        placed = []
        for i in range(4):
            made = via_a.post("/api/v1/terminal/sessions", json={"id": f"t{i}", "command": SLEEPER})
            assert made.status_code == 201, made.text
            placed.append(made.json()["node"])
    assert set(placed) == {"b", "c"}, placed  # a is full; b and c share the rest
    for node in (a, b, c):
        with api(node) as client:
            for i, where in enumerate(placed):
                got = client.get(f"/api/v1/terminal/sessions/t{i}")
                assert got.status_code == 200, got.text
                assert got.json()["node"] == where
            listed = {s["id"]: s["node"] for s in client.get("/api/v1/terminal/sessions").json()}
            assert listed == {"on-a": "a", **{f"t{i}": w for i, w in enumerate(placed)}}
    with api(c, BOB) as bob:
        assert bob.get("/api/v1/terminal/sessions/t0").status_code == 404
        assert bob.get("/api/v1/terminal/sessions").json() == []


def test_an_id_taken_on_another_node_is_a_conflict_there(cluster: StartCluster) -> None:
    a, b = cluster(2)
    wait_for_nodes([a, b])
    with api(a) as via_a, api(b) as via_b:
        made = via_a.post(
            "/api/v1/terminal/sessions", json={"id": "once", "node": "b", "command": SLEEPER}
        )
        assert made.status_code == 201, made.text
        again = via_a.post("/api/v1/terminal/sessions", json={"id": "once", "command": SLEEPER})
        assert again.status_code == 409, again.text
        assert via_b.delete("/api/v1/terminal/sessions/once").status_code == 204
        assert via_a.get("/api/v1/terminal/sessions/once").status_code == 404


async def test_one_id_created_through_two_nodes_at_once_is_one_session(
    cluster: StartCluster,
) -> None:
    a, b, c = cluster(3)
    wait_for_nodes([a, b, c])
    headers = {"Authorization": f"Bearer {ALICE}"}
    body = {"id": "race", "command": SLEEPER}
    for _ in range(5):
        async with (
            httpx.AsyncClient(base_url=a.url, headers=headers, timeout=30) as via_a,
            httpx.AsyncClient(base_url=b.url, headers=headers, timeout=30) as via_b,
        ):
            made = await asyncio.gather(
                via_a.post("/api/v1/terminal/sessions", json=body),
                via_b.post("/api/v1/terminal/sessions", json=body),
            )
            assert sorted(r.status_code for r in made) == [201, 409], [r.text for r in made]
            [winner] = [r.json()["node"] for r in made if r.status_code == 201]
            for client in (via_a, via_b):
                listed = (await client.get("/api/v1/terminal/sessions")).json()
                assert [(s["id"], s["node"]) for s in listed] == [("race", winner)]
            assert (await via_a.delete("/api/v1/terminal/sessions/race")).status_code == 204


def test_a_connection_is_saved_beside_the_one_it_jumps_through(cluster: StartCluster) -> None:
    """A terminal on a connection runs where the connection is saved, and a connection reaches
    its jump host from there: one naming a jump is saved on the jump's node, wherever asked."""
    a, b, c = cluster(3)
    wait_for_nodes([a, b, c])
    box = {"host": "127.0.0.1", "port": 9, "username": "ops", "auth": {"password": "pw"}}
    with api(a) as via_a, api(c) as via_c:
        made = via_a.post("/api/v1/connections", json={**box, "id": "bastion", "node": "b"})
        assert made.status_code == 201 and made.json()["node"] == "b", made.text
        behind = via_c.post("/api/v1/connections", json={**box, "id": "db", "jump": "bastion"})
        assert behind.status_code == 201, behind.text
        assert behind.json()["node"] == "b"
        again = via_c.post("/api/v1/connections", json={**box, "id": "bastion"})
        assert again.status_code == 409, again.text  # asked on c, answered by b, which has it
