"""The workspace on many nodes (SPEC §12), in headless Chromium against two real nodes sharing a
real Redis: the page is served by node a only, a session that lives on node b opens in a tab that
says "b" and echoes what is typed through a's relay. While b's web server is down, the open
stream goes on (its session host holds it), and a page loaded meanwhile shows the tab's node as
unreachable; once b is back the tab connects and nothing is lost."""

from __future__ import annotations

from typing import Any

import httpx

from tests.cluster import nodes as cluster_nodes
from tests.cluster import redis as cluster_redis
from tests.cluster.nodes import StartCluster, wait_for_nodes
from tests.conftest import ALICE
from tests.e2e.conftest import open_workspace, shot, tabs, type_line, wait_tabs, wait_text

# the real nodes and Redis of the cluster tests (tests/cluster/conftest.py), as fixtures here
cluster = cluster_nodes.cluster
redis_server = cluster_redis.redis_server


def tab_of(page: Any, id: str) -> dict[str, Any]:
    [tab] = [t for t in tabs(page) if t["id"] == id]
    return tab


def wait_reachable(page: Any, id: str, reachable: bool) -> None:
    page.wait_for_function(
        """([id, reachable]) => {
            const item = document.querySelector(`.tab[data-session-id="${id}"] .tab-node`);
            return item && item.dataset.reachable === String(reachable);
        }""",
        arg=[id, reachable],
    )


def test_a_tab_of_a_session_on_another_node_says_so_and_echoes_through_the_relay(
    cluster: StartCluster, context: Any
) -> None:
    a, b = cluster(2)
    wait_for_nodes([a, b])
    made = httpx.post(
        f"{a.url}/api/v1/terminal/sessions",
        headers={"Authorization": f"Bearer {ALICE}"},
        json={"id": "on-b", "name": "far away", "node": "b"},
        timeout=30,
    )
    assert made.status_code == 201, made.text
    assert made.json()["node"] == "b"

    page = open_workspace(context, a.url)  # every call of the page goes to a
    [first] = wait_tabs(page, 1)  # a new terminal, placed by the cluster on a or b
    assert first["node"] in ("a", "b") and first["nodeReachable"]
    badge = page.locator(f'.tab[data-session-id="{first["id"]}"] .tab-node')
    assert badge.inner_text() == first["node"]
    assert badge.get_attribute("title") == f"on node {first['node']}"

    # The sessions panel lists the one on b with its node; attached, its tab says "b".
    page.locator('[data-action="sessions"]').click()
    row = page.locator('.session-row[data-session-id="on-b"]')
    assert row.locator(".node-badge").inner_text() == "b"
    shot(page, "cluster-sessions-panel")
    row.get_by_role("button", name="Attach").click()
    wait_tabs(page, 2)
    page.locator('.panel-head button[title="Close"]').click()
    tab = page.locator('.tab[data-session-id="on-b"]')
    node = tab.locator(".tab-node")
    assert node.inner_text() == "b" and node.is_visible()
    assert node.get_attribute("title") == "on node b"
    assert tab.get_attribute("data-node") == "b"
    assert tab_of(page, "on-b")["node"] == "b"
    assert "node b" in page.locator(".statusbar").inner_text()

    # Typed on a page served by a, echoed by the shell on b.
    type_line(page, "echo relayed-$((6 * 7))")
    wait_text(page, "on-b", "relayed-42")
    shot(page, "cluster-tab-on-node-b")
    with httpx.Client(base_url=b.url, headers={"Authorization": f"Bearer {ALICE}"}) as on_b:
        history = on_b.get("/api/v1/terminal/sessions/on-b/history").json()
        assert "relayed-42" in "".join(e["data"] for e in history)  # b itself holds it

    # b's web server stops; its session host keeps the session, and the stream already open
    # (handed over to that host, SPEC §8) goes on through a.
    b.kill_web()
    type_line(page, "echo still-$((6 * 7))")
    wait_text(page, "on-b", "still-42")

    # A page loaded now can't reach the session: its tab, restored from localStorage, says
    # which node it waits for.
    page.reload()
    tab.wait_for()
    wait_reachable(page, "on-b", False)
    assert node.inner_text() == "b"
    assert node.get_attribute("title") == "node b unreachable"
    assert tab_of(page, "on-b")["state"] in ("connecting", "reconnecting", "disconnected")
    tab.click()
    assert "node b unreachable" in page.locator(".statusbar").inner_text()
    shot(page, "cluster-node-b-unreachable")

    # b is back: the tab connects (retried at once with a click on its dot), nothing lost.
    b.restart_web()
    wait_for_nodes([a, b])
    page.wait_for_function(
        """() => {
            const t = window.hearth.tabs().find((x) => x.id === "on-b");
            if (t.state === "connected") return true;
            document.querySelector('.tab[data-session-id="on-b"] .indicator').click();
            return false;
        }""",
        polling=500,
    )
    wait_reachable(page, "on-b", True)
    assert node.get_attribute("title") == "on node b"
    text = wait_text(page, "on-b", "still-42")
    assert "relayed-42" in text
    type_line(page, "echo back-$((6 * 7))")
    wait_text(page, "on-b", "back-42")
    assert tab_of(page, "on-b")["node"] == "b"
