"""Terminals in the browser: typing, tabs, reload, a closed page, a cut network, a deleted
session. Each compares what the page wrote with the server's own buffer, byte for byte."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
from websockets.sync.client import connect

from tests.conftest import ALICE, RunningServer
from tests.e2e.conftest import (
    open_workspace,
    poll,
    same_bytes,
    server_output,
    shot,
    tabs,
    type_line,
    wait_tabs,
    wait_text,
    written_bytes,
    written_offset,
)
from tests.e2e.proxy import CuttableProxy


def test_typing_echo_hi_shows_hi(server: RunningServer, context: Any) -> None:
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


def history_inputs(server: RunningServer, id: str) -> list[str]:
    answer = httpx.get(
        f"{server.url}/api/v1/terminal/sessions/{id}/history",
        headers={"Authorization": f"Bearer {ALICE}"},
    )
    answer.raise_for_status()
    return [e["data"] for e in answer.json() if e["type"] == "input"]


def test_two_tabs_survive_a_reload_with_their_output_names_and_no_stray_replies(
    server: RunningServer, context: Any
) -> None:
    page = open_workspace(context, server.url)
    [first] = wait_tabs(page, 1)
    # A live query is answered (xterm replies to the cursor-position request)… Echo is off
    # before the query: a reply that comes back before `read` turns it off would be echoed.
    type_line(
        page,
        r"stty -echo; printf '\e[6n'; read -rs -d R reply; stty echo; echo got-reply-${#reply}",
    )
    assert re.search(r"^got-reply-[1-9]", wait_text(page, first["id"], "got-reply-", count=2), re.M)
    type_line(page, "echo before-reload")
    wait_text(page, first["id"], "before-reload", count=2)

    # A second tab from the keyboard, renamed by double-click.
    page.locator(".pane.active .xterm").click()
    page.keyboard.press("Alt+Shift+KeyN")
    one, second = wait_tabs(page, 2)
    assert one["id"] == first["id"]
    type_line(page, "echo in-the-second-tab")
    wait_text(page, second["id"], "in-the-second-tab", count=2)
    page.locator(f'.tab[data-session-id="{second["id"]}"] .tab-name').dblclick()
    page.locator(".tab-rename").fill("builds")
    page.keyboard.press("Enter")
    poll("the rename to reach the server", lambda: _name(server, second["id"]) == "builds")
    page.locator(f'.tab[data-session-id="{first["id"]}"]').click()
    page.wait_for_function(
        "(id) => localStorage.getItem('terminal_active_session') === id", arg=first["id"]
    )
    inputs_before = len(history_inputs(server, first["id"]))

    page.reload()
    one, two = wait_tabs(page, 2)
    assert (one["id"], two["id"]) == (first["id"], second["id"])
    assert two["name"] == "builds"
    assert page.locator(f'.tab[data-session-id="{second["id"]}"] .tab-name').inner_text() == (
        "builds"
    )
    assert page.locator(".tab.active").get_attribute("data-session-id") == first["id"]
    wait_text(page, first["id"], "before-reload", count=2)
    wait_text(page, second["id"], "in-the-second-tab", count=2)
    notice = page.locator('.pane.active .notice[data-kind="info"]')
    assert "Restored" in notice.first.inner_text()
    # …and the reload redraws the screen (SPEC §9) instead of replaying the query: nothing is
    # answered twice (the replay of a server without a screen model drops such answers; see
    # test_a_large_history_replays_exactly_with_a_progress_bar).
    assert one["screenAt"] is not None and one["suppressed"] == 0

    type_line(page, "echo after-reload")
    wait_text(page, first["id"], "after-reload", count=2)
    assert "".join(history_inputs(server, first["id"])[inputs_before:]) == "echo after-reload\r"
    for tab in (one, two):
        same_bytes(server, page, tab["id"])
    shot(page, "reload")


def _name(server: RunningServer, id: str) -> str:
    answer = httpx.get(
        f"{server.url}/api/v1/terminal/sessions/{id}",
        headers={"Authorization": f"Bearer {ALICE}"},
    )
    name: str = answer.json()["name"]
    return name


def test_a_closed_page_misses_nothing_and_repeats_nothing(
    server: RunningServer, context: Any
) -> None:
    page = open_workspace(context, server.url)
    [tab] = wait_tabs(page, 1)
    id = tab["id"]
    type_line(
        page, "for i in $(seq 1 400); do echo line-$i; sleep 0.005; done; echo loop-$((40+2))-done"
    )
    wait_text(page, id, "line-20\n")
    page.close()  # while the loop prints
    poll(
        "the loop to finish on the server",
        lambda: b"loop-42-done" in server_output(server, "alice", id)[2],
    )

    context.add_init_script(
        "try { window.__storedAtLoad = localStorage.getItem('terminal_sessions'); } catch (e) {}"
    )
    page = context.new_page()
    page.goto(f"{server.url}/")  # the token is remembered: no ?token= needed
    [again] = wait_tabs(page, 1)
    assert again["id"] == id
    text = wait_text(page, id, "loop-42-done")
    data = same_bytes(server, page, id)
    numbers = [int(m) for m in re.findall(r"^line-(\d+)$", text, re.M)]
    assert numbers == list(range(1, 401)), "every line once, in order"
    remembered = page.evaluate("JSON.parse(window.__storedAtLoad)[0].offset")
    assert 0 < remembered < len(data)
    notice = page.locator('.pane.active .notice[data-kind="info"]').first.inner_text()
    assert "arrived while you were away" in notice, notice
    shot(page, "closed-page")


def test_a_cut_connection_reconnects_by_itself_from_its_offset(
    server: RunningServer, context: Any
) -> None:
    with CuttableProxy(server.port) as proxy:
        page = open_workspace(context, proxy.url)
        [tab] = wait_tabs(page, 1)
        id = tab["id"]
        type_line(page, "echo before-cut")
        wait_text(page, id, "before-cut", count=2)

        proxy.pause()
        indicator = page.locator(f'.tab[data-session-id="{id}"] .indicator')
        page.wait_for_function(
            '(id) => document.querySelector(`.tab[data-session-id="${id}"]`)'
            ".dataset.state === 'reconnecting'",
            arg=id,
        )
        assert page.locator(f'.tab[data-session-id="{id}"] .tab-state').inner_text() == (
            "reconnecting…"
        )
        shot(page, "reconnecting")
        # Meanwhile, output arrives that the page must get once it is back.
        with connect(
            f"{server.ws_url}/api/v1/terminal/ws/{id}?token={ALICE}&reconnect=true"
        ) as other:
            other.recv(timeout=10)
            other.send(b"echo during-cut-$((1+1))\r")
            poll(
                "the output during the cut",
                lambda: b"during-cut-2" in server_output(server, "alice", id)[2],
            )
        proxy.resume()
        page.wait_for_function(
            '(id) => document.querySelector(`.tab[data-session-id="${id}"]`)'
            ".dataset.state === 'connected'",
            arg=id,
        )
        assert indicator.get_attribute("data-state") == "connected"
        wait_text(page, id, "during-cut-2")
        type_line(page, "echo after-cut")
        wait_text(page, id, "after-cut", count=2)
        data = same_bytes(server, page, id)
        assert data.count(b"during-cut-2\r\n") == 1
        assert proxy.connections >= 2


def test_a_session_deleted_elsewhere_is_replaced_with_a_notice(
    server: RunningServer, context: Any
) -> None:
    page = open_workspace(context, server.url)
    [tab] = wait_tabs(page, 1)
    old = tab["id"]
    auth = {"Authorization": f"Bearer {ALICE}"}
    httpx.delete(f"{server.url}/api/v1/terminal/sessions/{old}", headers=auth).raise_for_status()
    page.wait_for_function(
        "(old) => { const t = window.hearth.tabs();"
        " return t.length === 1 && t[0].id !== old && t[0].state === 'connected'; }",
        arg=old,
    )
    [new] = tabs(page)
    notice = page.locator('.pane.active .notice[data-kind="warn"]').first.inner_text()
    assert old in notice and "started a new one" in notice, notice
    stored = page.evaluate("JSON.parse(localStorage.getItem('terminal_sessions'))")
    assert [s["id"] for s in stored] == [new["id"]]
    type_line(page, "echo in-the-new-one")
    wait_text(page, new["id"], "in-the-new-one", count=2)
    shot(page, "replaced")

    # The same when the page was away: the remembered session is gone at load time.
    page.close()
    httpx.delete(f"{server.url}/api/v1/terminal/sessions/{new['id']}", headers=auth)
    page = open_workspace(context, server.url)
    page.wait_for_function(
        "(old) => { const t = window.hearth.tabs();"
        " return t.length === 1 && t[0].id !== old && t[0].state === 'connected'; }",
        arg=new["id"],
    )
    notice = page.locator('.pane.active .notice[data-kind="warn"]').first.inner_text()
    assert new["id"] in notice and "no longer exists" in notice, notice


def test_output_lost_during_a_long_cut_is_reported_and_the_rest_is_exact(
    make_server: Callable[..., RunningServer], context: Any
) -> None:
    server = make_server(max_buffer_size=50)
    with CuttableProxy(server.port) as proxy:
        page = open_workspace(context, proxy.url)
        [tab] = wait_tabs(page, 1)
        id = tab["id"]
        type_line(page, "echo before-cut")
        wait_text(page, id, "before-cut", count=2)
        proxy.pause()
        page.wait_for_function(
            "(id) => window.hearth.tabs().find((t) => t.id === id).state !== 'connected'", arg=id
        )
        with connect(
            f"{server.ws_url}/api/v1/terminal/ws/{id}?token={ALICE}&reconnect=true"
        ) as other:
            other.recv(timeout=10)
            other.send(b"seq 1 300; echo seq-$((1+1))-done\r")
            poll(
                "the output during the cut",
                lambda: b"seq-2-done" in server_output(server, "alice", id)[2],
            )
        proxy.resume()
        warning = page.locator('.pane.active .notice[data-kind="warn"]').first
        assert "were lost while this tab was away" in warning.inner_text()
        text = wait_text(page, id, "seq-2-done")
        _, end, data = server_output(server, "alice", id)
        poll("the page to catch up", lambda: written_offset(page, id) >= end)
        assert written_bytes(page, id).endswith(data)  # the kept part, exactly once
        numbers = [int(m) for m in re.findall(r"^(\d+)$", text, re.M)]
        assert numbers == list(range(numbers[0], 301)) and numbers[0] > 1


def test_a_large_history_replays_exactly_with_a_progress_bar(
    make_server: Callable[..., RunningServer], context: Any
) -> None:
    """A server without a screen model replays the buffer on a reload."""
    server = make_server(
        max_buffer_size=100_000, max_buffer_bytes=4 * 1024 * 1024, screen_model=False
    )
    page = open_workspace(context, server.url)
    [tab] = wait_tabs(page, 1)
    id = tab["id"]
    # ~1.5 MB of output: query answers in it (cursor position reports) must not be sent back.
    type_line(
        page,
        r"for i in $(seq 1 12); do head -c 96000 /dev/zero | tr '\0' x | fold -w 120;"
        r" printf '\e[6n\n'; done; echo big-$((1+1))-done",
    )
    poll(
        "the output on the server",
        lambda: b"big-2-done" in server_output(server, "alice", id)[2],
        timeout=60,
    )
    context.add_init_script(
        """try { window.__progressSeen = false;
          new MutationObserver(() => {
            const p = document.querySelector('.pane .progress');
            if (p && !p.hidden) window.__progressSeen = true;
          }).observe(document, {subtree: true, attributes: true, childList: true});
        } catch (e) {}"""
    )
    page.reload()
    wait_tabs(page, 1)
    wait_text(page, id, "big-2-done")
    data = same_bytes(server, page, id)
    assert len(data) > 1_000_000
    assert page.evaluate("window.__progressSeen") is True
    [after] = tabs(page)
    assert after["screenAt"] is None
    assert after["suppressed"] > 0  # the replayed cursor-position queries are not answered
    assert page.locator(".pane.active .progress").is_hidden()


def test_an_exited_shell_shows_its_exit_code(server: RunningServer, context: Any) -> None:
    page = open_workspace(context, server.url)
    [tab] = wait_tabs(page, 1)
    type_line(page, "exit 3")
    item = page.locator(f'.tab[data-session-id="{tab["id"]}"]')
    page.wait_for_function(
        '(id) => document.querySelector(`.tab[data-session-id="${id}"]`).dataset.state'
        " === 'exited'",
        arg=tab["id"],
    )
    assert item.locator(".tab-state").inner_text() == "exited (3)"
    assert item.locator(".indicator").get_attribute("data-state") == "exited"
    # It stays: an exited session is not mistaken for a deleted one.
    page.reload()
    page.wait_for_function("() => window.hearth.tabs()[0]?.state === 'exited'")
    assert tabs(page)[0]["id"] == tab["id"]
