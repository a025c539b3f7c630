"""A terminal tab while other things happen: typing during a replay goes to the shell (only
xterm's answers to queries in old output are held back), and a resize made by another viewer is
shown until this tab is used again."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx
from websockets.sync.client import connect

from tests.conftest import ALICE, RunningServer
from tests.e2e.conftest import (
    open_workspace,
    poll,
    server_output,
    shot,
    tabs,
    type_line,
    wait_tabs,
    wait_text,
    written_bytes,
)

AUTH = {"Authorization": f"Bearer {ALICE}"}
TYPED = "echo typed-$((6*7))\r"


def history(server: RunningServer, id: str, kind: str) -> list[str]:
    answer = httpx.get(f"{server.url}/api/v1/terminal/sessions/{id}/history", headers=AUTH)
    answer.raise_for_status()
    return [e["data"] for e in answer.json() if e["type"] == kind]


def tab(page: Any, id: str) -> dict[str, Any]:
    return next(t for t in tabs(page) if t["id"] == id)


class HeldReplay:
    """Routes the page's terminal websocket through the test: after ``hello`` and the first
    output frame, what the server sends is held until ``release`` (a slow network in the middle
    of a replay), while what the page sends goes through."""

    def __init__(self) -> None:
        self.held: list[str | bytes] = []
        self.holding = True
        self.page_ws: Any = None

    def route(self, ws: Any) -> None:
        self.page_ws = ws
        server = ws.connect_to_server()
        outputs = 0

        def from_server(message: str | bytes) -> None:
            nonlocal outputs
            if self.holding and outputs >= 1:
                self.held.append(message)
                return
            outputs += isinstance(message, bytes)
            ws.send(message)

        server.on_message(from_server)

    def release(self) -> None:
        self.holding = False
        for message in self.held:
            self.page_ws.send(message)
        self.held.clear()


def test_typing_during_a_replay_reaches_the_shell(
    make_server: Callable[..., RunningServer], context: Any
) -> None:
    """A reload replays the buffer where the server keeps no screen model."""
    server = make_server(
        max_buffer_size=100_000, max_buffer_bytes=4 * 1024 * 1024, screen_model=False
    )
    page = open_workspace(context, server.url)
    [first] = wait_tabs(page, 1)
    id = first["id"]
    # ~1 MB of history with cursor-position queries in it: answered now, as the shell reads
    # them, and never again when the history is replayed.
    type_line(
        page,
        r"for i in $(seq 1 8); do head -c 96000 /dev/zero | tr '\0' x | fold -w 120;"
        r" printf '\e[6n'; read -rs -d R reply; echo; done; echo big-$((1+1))-done",
    )
    wait_text(page, id, "big-2-done")
    inputs_before = len(history(server, id, "input"))

    def typed_since(count: int) -> str:
        return "".join(history(server, id, "input")[count:])

    held = HeldReplay()
    page.route_web_socket(re.compile(r".*/api/v1/terminal/ws/.*"), held.route)
    page.reload()
    page.wait_for_function(
        "(id) => { const t = window.hearth.tabs().find((x) => x.id === id);"
        " return t && t.state === 'connected' && t.replaying && t.written > 0"
        " && t.written === t.received; }",
        arg=id,
    )  # the replay began and waits for the rest, held back on the way
    type_line(page, "echo typed-$((6*7))")
    poll("the typed line at the shell", lambda: typed_since(inputs_before) == TYPED)
    assert tab(page, id)["replaying"]  # it was typed while the replay ran
    shot(page, "typed-during-replay")

    held.release()
    wait_text(page, id, "typed-42")
    _, end, data = server_output(server, "alice", id)
    poll("the page to catch up", lambda: tab(page, id)["written"] >= end)
    assert written_bytes(page, id) == data
    after = tab(page, id)
    assert not after["replaying"] and after["suppressed"] >= 8  # the old queries, unanswered
    assert typed_since(inputs_before) == TYPED  # and no answer to an old query


def size_on_server(server: RunningServer, id: str) -> tuple[int, int]:
    info = httpx.get(f"{server.url}/api/v1/terminal/sessions/{id}", headers=AUTH).json()
    return info["rows"], info["cols"]


def test_a_resize_by_another_viewer_is_shown_until_this_tab_is_used(
    server: RunningServer, context: Any
) -> None:
    page = open_workspace(context, server.url)
    [first] = wait_tabs(page, 1)
    id = first["id"]

    def fitted_size() -> tuple[int, int] | None:
        """The page's own size, once it fitted its pane and the server has it too (the page may
        draw the session's screen before its first fit: the size it then sends wins)."""
        t = tab(page, id)
        size = (t["rows"], t["cols"])
        return size if t["fitted"] and size == size_on_server(server, id) else None

    own = poll("the page's size on the server", fitted_size)
    assert own != (20, 70)
    with connect(f"{server.ws_url}/api/v1/terminal/ws/{id}?token={ALICE}&reconnect=true") as other:
        assert json.loads(other.recv(timeout=10))["type"] == "hello"
        other.send(json.dumps({"type": "resize", "rows": 20, "cols": 70}))
        page.wait_for_function(
            "(id) => { const t = window.hearth.tabs().find((x) => x.id === id);"
            " return t.rows === 20 && t.cols === 70; }",
            arg=id,
        )
        shot(page, "resized-elsewhere")
        assert size_on_server(server, id) == (20, 70)

        # Typing here makes this tab's own size win again, as the last resize does.
        type_line(page, "stty size")
        wait_text(page, id, f"{own[0]} {own[1]}")
        assert (tab(page, id)["rows"], tab(page, id)["cols"]) == own
        assert size_on_server(server, id) == own
        resizes = [e for e in history(server, id, "system") if e.startswith("resize ")]
        # the other viewer's, then this tab's: the page never sent the other's size back
        assert resizes[-2:] == ["resize 70x20", f"resize {own[1]}x{own[0]}"], resizes
