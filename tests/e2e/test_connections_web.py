"""Tabs on saved connections (SPEC §11) in the workspace, against a real sshd on 127.0.0.1: one
is opened from the "▾" menu by keyboard, runs on that machine and says where, also after a
reload; a failed login is said in the page, and leaves no tab."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ALICE, RunningServer
from tests.e2e.conftest import open_workspace, shot, tabs, type_line, wait_tabs, wait_text
from tests.ssh import sshd as ssh_fixtures
from tests.ssh.sshd import Sshd

# the real sshd of the SSH tests (tests/ssh/conftest.py), as fixtures of this module
sshd_server = ssh_fixtures.sshd_server
sshd = ssh_fixtures.sshd


def save_connection(server: RunningServer, at: Sshd, password: str) -> dict[str, Any]:
    answer = httpx.post(
        f"{server.url}/api/v1/connections",
        headers={"Authorization": f"Bearer {ALICE}"},
        json={
            "id": "box",
            "name": "test box",
            "host": at.host,
            "port": at.port,
            "username": at.password_user,
            "auth": {"password": password},
        },
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    saved: dict[str, Any] = answer.json()
    return saved


def server_sessions(server: RunningServer) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{server.url}/api/v1/terminal/sessions",
        headers={"Authorization": f"Bearer {ALICE}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    sessions: list[dict[str, Any]] = answer.json()
    return sessions


def test_a_tab_on_a_saved_connection_runs_there_and_says_where(
    server: RunningServer, sshd: Sshd, context: Any
) -> None:
    page = open_workspace(context, server.url)
    [local] = wait_tabs(page, 1)
    assert local["connectionId"] is None and local["where"] is None
    assert page.locator(f'.tab[data-session-id="{local["id"]}"] .tab-host').is_hidden()

    # None saved yet: the menu says so, and how to save one.
    page.locator(".tab-more").click()
    menu = page.locator('.menu[role="menu"]')
    menu.get_by_text("No saved connections yet.").wait_for()
    assert "POST /api/v1/connections" in menu.inner_text()
    shot(page, "connection-menu-empty")
    page.keyboard.press("Escape")
    menu.wait_for(state="hidden")

    save_connection(server, sshd, sshd.password)
    user_at_host = f"{sshd.password_user}@{sshd.host}"
    # From the terminal, by keyboard: Alt+Shift+C opens the menu on the first connection.
    page.locator(".pane.active .xterm").click()
    page.keyboard.press("Alt+Shift+KeyC")
    item = menu.locator('.menu-item[data-connection-id="box"]')
    item.wait_for()
    assert item.inner_text().split("\n") == ["test box", f"{user_at_host}:{sshd.port}"]
    shot(page, "connection-menu")
    page.wait_for_function("() => document.activeElement.dataset.connectionId === 'box'")
    page.keyboard.press("Enter")

    _, remote = wait_tabs(page, 2)
    assert remote["connectionId"] == "box" and remote["where"] == user_at_host
    assert remote["name"] == "test box"
    tab = page.locator(f'.tab[data-session-id="{remote["id"]}"]')
    assert tab.get_attribute("aria-selected") == "true"
    assert tab.locator(".tab-host").inner_text() == user_at_host
    assert "test box" in tab.locator(".tab-host").get_attribute("title")
    type_line(page, "echo I am $(whoami)")
    wait_text(page, remote["id"], f"I am {sshd.password_user}")
    assert f"ssh {user_at_host}:{sshd.port}" in page.locator(".statusbar").inner_text()
    [info] = [s for s in server_sessions(server) if s["id"] == remote["id"]]
    assert info["protocol"] == "ssh" and info["connection_id"] == "box"

    # After a reload the tab still says where it runs, and so does the sessions panel.
    page.reload()
    wait_tabs(page, 2)
    wait_text(page, remote["id"], f"I am {sshd.password_user}")
    assert tab.locator(".tab-host").inner_text() == user_at_host
    page.locator('[data-action="sessions"]').click()
    row = page.locator(f'.session-row[data-session-id="{remote["id"]}"]')
    row.locator(".session-host").wait_for()
    assert row.locator(".session-host").inner_text() == f"ssh {user_at_host}:{sshd.port}"
    local_row = page.locator(f'.session-row[data-session-id="{local["id"]}"]')
    assert local_row.locator(".session-host").count() == 0
    shot(page, "connection-tab")


def test_a_failed_login_is_said_and_leaves_no_tab(
    server: RunningServer, sshd: Sshd, context: Any
) -> None:
    wrong = "not-" + sshd.password
    save_connection(server, sshd, wrong)
    page = open_workspace(context, server.url)
    [local] = wait_tabs(page, 1)

    page.locator(".tab-more").click()
    page.locator('.menu-item[data-connection-id="box"]').click()
    notice = page.locator('.notice[data-kind="error"]', has_text="Authentication failed")
    notice.wait_for()
    text = notice.inner_text()
    assert "Could not open a terminal on “test box”" in text
    assert f"{sshd.password_user}@{sshd.host}:{sshd.port}" in text  # the server's detail
    assert wrong not in page.content()
    page.locator(".tab-pending").wait_for(state="detached")
    assert [t["id"] for t in tabs(page)] == [local["id"]]
    assert page.locator(".tab").count() == 1
    assert [s["id"] for s in server_sessions(server)] == [local["id"]]
    shot(page, "connection-failed")


def test_a_tab_whose_session_is_closed_elsewhere_reopens_on_the_same_connection(
    server: RunningServer, sshd: Sshd, context: Any
) -> None:
    save_connection(server, sshd, sshd.password)
    page = open_workspace(context, server.url)
    wait_tabs(page, 1)
    page.locator(".tab-more").click()
    page.locator('.menu-item[data-connection-id="box"]').click()
    _, remote = wait_tabs(page, 2)
    closed = httpx.delete(
        f"{server.url}/api/v1/terminal/sessions/{remote['id']}",
        headers={"Authorization": f"Bearer {ALICE}"},
        timeout=30,
    )
    assert closed.status_code == 204, closed.text
    page.wait_for_function(
        "(old) => window.hearth.tabs().every((t) => t.id !== old)", arg=remote["id"]
    )
    _, again = wait_tabs(page, 2)
    assert again["connectionId"] == "box" and again["where"] == f"{sshd.password_user}@{sshd.host}"
    [info] = [s for s in server_sessions(server) if s["id"] == again["id"]]
    assert info["protocol"] == "ssh" and info["connection_id"] == "box"
    type_line(page, "echo I am $(whoami)")
    wait_text(page, again["id"], f"I am {sshd.password_user}")


def test_the_operators_connection_is_offered_as_shared(
    make_server: Callable[..., RunningServer], sshd: Sshd, context: Any, tmp_path: Path
) -> None:
    key = tmp_path / "operator-key"
    key.write_text(sshd.private_key)
    key.chmod(0o600)
    shared = {
        "id": "ops",
        "name": "ops box",
        "host": sshd.host,
        "port": sshd.port,
        "username": sshd.key_user,
        "private_key_file": str(key),
        "host_key": sshd.host_key,
        "users": ["alice"],
    }
    server = make_server(connections=[shared])
    page = open_workspace(context, server.url)
    wait_tabs(page, 1)
    page.locator(".tab-more").click()
    item = page.locator('.menu-item[data-connection-id="ops"]')
    assert item.locator(".badge").inner_text() == "shared"
    item.click()
    _, remote = wait_tabs(page, 2)
    assert remote["where"] == f"{sshd.key_user}@{sshd.host}"
    type_line(page, "echo I am $(whoami)")
    wait_text(page, remote["id"], f"I am {sshd.key_user}")
