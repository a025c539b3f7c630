"""A full-screen program survives a reload of the page (SPEC §9): the page draws the server's
model of the screen instead of replaying the bytes that led to it."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import ALICE, RunningServer
from tests.e2e.conftest import open_workspace, poll, shot, type_line, wait_tabs

PROGRAM = """import curses
def main(w):
    n = 0
    while True:
        w.erase()
        w.addstr(0, 0, "FULLSCREEN count=%d" % n)
        w.addstr(5, 4, "\\u4e2d\\u6587 wide", curses.A_BOLD)
        w.addstr(curses.LINES - 1, 0, "press k")
        w.move(3, 7)
        w.refresh()
        if w.getch() == ord("q"):
            break
        n += 1
curses.wrapper(main)
"""


def screen_of(server: RunningServer, id: str) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(
        f"{server.url}/api/v1/terminal/sessions/{id}/screen",
        headers={"Authorization": f"Bearer {ALICE}"},
    ).json()
    return answer


def visible(page: Any, id: str) -> dict[str, Any]:
    screen: dict[str, Any] = page.evaluate("(id) => window.hearth.screen(id)", id)
    return screen


def wait_row(page: Any, id: str, text: str) -> dict[str, Any]:
    page.wait_for_function(
        "([id, text]) => (window.hearth.screen(id)?.lines[0] || '').includes(text)",
        arg=[id, text],
    )
    return visible(page, id)


def test_a_reload_redraws_a_full_screen_program_and_typing_goes_on(
    server: RunningServer, context: Any
) -> None:
    page = open_workspace(context, server.url)
    [tab] = wait_tabs(page, 1)
    id = tab["id"]
    # an emoji two cells wide (Unicode 11) before the prompt: page and model agree on widths
    type_line(page, r"printf '\U0001F44D'")
    page.wait_for_function(
        "(id) => window.hearth.screen(id).lines.some((l) => l.startsWith('\\u{1F44D}'))", arg=id
    )
    assert visible(page, id)["cursor"] == screen_of(server, id)["cursor"]
    type_line(page, "cat > fullscreen.py")
    for line in PROGRAM.splitlines():
        page.keyboard.type(line)
        page.keyboard.press("Enter")
    page.keyboard.press("Control+D")
    type_line(page, "/usr/bin/python3 fullscreen.py")
    wait_row(page, id, "count=0")
    page.keyboard.press("k")
    before = wait_row(page, id, "count=1")
    assert before["alternate"] is True

    page.reload()
    [again] = wait_tabs(page, 1)
    assert again["id"] == id and again["screenAt"] is not None
    after = visible(page, id)
    assert after == before  # the same rows, cursor and buffer, cell for cell in text
    answer = screen_of(server, id)
    assert answer["lines"] == after["lines"] and answer["alternate"] is True
    shot(page, "fullscreen-after-reload")

    page.locator(".pane.active .xterm").click()
    page.keyboard.press("k")  # the program still reads keys, in the same screen
    assert wait_row(page, id, "count=2")["lines"][5] == before["lines"][5]
    page.keyboard.press("q")
    page.wait_for_function(
        "(id) => window.hearth.screen(id)?.alternate === false", arg=id
    )  # and leaving it restores the shell's screen


def test_a_huge_repeat_count_does_not_freeze_the_page(server: RunningServer, context: Any) -> None:
    """xterm.js inserts, deletes and scrolls lines one at a time: without a cut at the screen's
    size, "CSI 99999999 L" keeps the page (and the server's model) busy for minutes."""
    page = open_workspace(context, server.url)
    [tab] = wait_tabs(page, 1)
    id = tab["id"]
    type_line(page, "echo kept-line")
    type_line(page, r"printf '\e[2;1H\e[99999999L\e[99999999T\e[99999999Z\e[99999999I'")
    type_line(page, "echo after-$((6*7))")
    page.wait_for_function(
        "(id) => window.hearth.screen(id).lines.some((l) => l.startsWith('after-42'))", arg=id
    )
    poll(
        "the page and the model to agree",
        lambda: visible(page, id)["lines"] == screen_of(server, id)["lines"],
    )
