"""Signing in, and the sessions panel: a session started on one device, attached on another."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import ALICE, RunningServer
from tests.e2e.conftest import (
    open_workspace,
    poll,
    same_bytes,
    screen_text,
    shot,
    type_line,
    wait_tabs,
    wait_text,
)

DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "workspace.png"


def test_a_session_from_another_device_is_attached_from_the_sessions_panel(
    server: RunningServer, make_context: Callable[[], Any]
) -> None:
    laptop = open_workspace(make_context(), server.url)
    [started] = wait_tabs(laptop, 1)
    type_line(laptop, "echo from-the-laptop")
    wait_text(laptop, started["id"], "from-the-laptop", count=2)

    # Another device, no token yet: it is asked for, a wrong one is refused.
    phone = open_workspace(make_context(), server.url, token=None)
    form = phone.locator(".token-form")
    form.locator("input").fill("not-the-token")
    form.locator("button").click()
    phone.wait_for_function(
        "() => document.querySelector('.token-form .error').textContent.includes('refused')"
    )
    form.locator("input").fill(ALICE)
    form.locator("button").click()
    form.wait_for(state="detached")
    [own] = wait_tabs(phone, 1)
    assert own["id"] != started["id"]

    phone.locator('[data-action="sessions"]').click()
    row = phone.locator(f'.session-row[data-session-id="{started["id"]}"]')
    row.wait_for()
    assert row.locator(".badge").inner_text() == "active"  # the laptop is connected
    assert "active just now" in row.locator(".session-meta").inner_text()
    row.locator("button").click()
    _, attached = wait_tabs(phone, 2)
    assert attached["id"] == started["id"]
    wait_text(phone, started["id"], "from-the-laptop", count=2)
    assert phone.locator(".tab.active").get_attribute("data-session-id") == started["id"]
    # Both devices watch the same shell: typing on one shows on the other.
    type_line(phone, "echo from-the-phone")
    wait_text(laptop, started["id"], "from-the-phone", count=2)
    phone.wait_for_function(
        "(id) => window.hearth.tabs().find((t) => t.id === id).viewers === 2", arg=started["id"]
    )
    shot(phone, "sessions-panel")

    if os.environ.get("HEARTH_DOCS_SCREENSHOT"):
        type_line(
            phone,
            "printf '\\e[1;33mHearth\\e[0m: this shell keeps running when the tab closes.\\n'"
            "; ls -la --color=always /etc | head -n 12",
        )
        wait_text(phone, started["id"], "keeps running", count=2)
        DOCS_SHOT.parent.mkdir(exist_ok=True)
        phone.screenshot(path=str(DOCS_SHOT))


def test_a_tab_whose_server_stopped_says_so_and_keeps_its_output(
    make_server: Callable[..., RunningServer], context: Any
) -> None:
    server = make_server()
    page = open_workspace(context, server.url)
    [tab] = wait_tabs(page, 1)
    type_line(page, "echo before-the-stop")
    wait_text(page, tab["id"], "before-the-stop", count=2)
    server.stop()
    # the same address again, the same data dir: the page reconnects by itself
    make_server(data_dir=server.settings.data_dir, port=server.port)
    page.wait_for_function(
        "(id) => window.hearth.tabs().find((t) => t.id === id).state === 'exited'", arg=tab["id"]
    )
    label = page.locator(f'.tab[data-session-id="{tab["id"]}"] .tab-state').inner_text()
    assert label == "lost when the server stopped (output kept)"
    assert screen_text(page, tab["id"]).count("before-the-stop") == 2  # nothing lost or repeated
    page.locator('[data-action="sessions"]').click()
    row = page.locator(f'.session-row[data-session-id="{tab["id"]}"]')
    row.wait_for()
    assert "lost when the server stopped" in row.inner_text()
    shot(page, "lost-session")


def test_a_restart_of_the_web_server_is_a_reconnect_to_the_same_shell(
    server: RunningServer, context: Any
) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page = open_workspace(context, server.url)
    [tab] = wait_tabs(page, 1)
    id = tab["id"]
    type_line(page, "MINE=kept-$((40+2))")
    type_line(page, "echo set-$MINE")
    wait_text(page, id, "set-kept-42")
    server.restart_web()  # the session host, and the shell in it, go on

    def answered() -> bool:
        # a line typed while the tab is reconnecting is lost, as on any cut: type until answered
        type_line(page, "echo again-$MINE")
        try:
            page.wait_for_function(
                "(id) => (window.hearth.text(id) || '').includes('again-kept-42')",
                arg=id,
                timeout=1000,
            )
        except PlaywrightTimeout:
            return False
        return True

    poll("the same shell through the new web server", answered)
    same_bytes(server, page, id)  # nothing lost, none twice
