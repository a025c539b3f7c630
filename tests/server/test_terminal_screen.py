"""The screen on reconnect (SPEC §9), against tmux as the independent reference: the same
deterministic programs run in a tmux pane and in Hearth at the same size, and

- ``GET …/screen`` gives the rows ``tmux capture-pane`` gives, the cursor and the alternate flag;
- its ``data``, played into a fresh tmux pane, redraws the same rows, scrollback, cursor and modes;
- ``restore=screen`` on the websocket sends that screen, then live output from its offset.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from hearth.terminals.screen import _family
from tests.conftest import ALICE, BOB, RunningServer
from tests.server.termclient import TermClient, close_code_of
from tests.server.test_terminal_ws import make, poll_info, rest
from tests.server.tmux import Tmux

API = "/api/v1/terminal"
ROWS, COLS = 24, 80
PYTHON = "/usr/bin/python3"  # the system's: a sandboxed session's uid can run it

CURSES = """
import curses, time
def main(w):
    curses.start_color(); curses.use_default_colors()
    curses.init_pair(1, curses.COLOR_RED, -1)
    w.addstr(0, 0, "TOP LEFT")
    w.addstr(5, 10, "colour", curses.color_pair(1) | curses.A_BOLD)
    w.addstr(10, 3, "wide: \\u4e2d\\u6587\\u5b57 and after")
    w.addstr(23, 0, "READY")
    w.move(12, 20)
    w.refresh()
    time.sleep(600)
curses.wrapper(main)
"""
# Styles, colours of the three kinds, erased cells in a colour, gaps never written, a line that
# wraps, a wide character at the edge, then enough lines to scroll.
STYLES = (
    r"printf '\033[1mbold\033[0m \033[2mdim\033[0m \033[3mitalic\033[0m \033[4munder\033[0m "
    r"\033[5mblink\033[0m \033[7minverse\033[0m \033[9mstrike\033[0m\n';"
    r"printf '\033[31mred\033[0m \033[92mbright\033[0m \033[38;5;208mo256\033[0m "
    r"\033[38;2;10;200;30mrgb\033[0m \033[44mbg\033[0m \033[48;5;22mbg256\033[0m "
    r"\033[48;2;90;0;90mbgrgb\033[0m\n';"
    r"printf '\033[45merased in colour\033[K\033[0m\n';"
    r"printf 'gap\033[20Cafter the gap\n';"
    r"printf '%0150d\n' 7;"
    r"printf '%079d\343\201\202wide\n' 0;"
    r"seq 1 40; printf READY; sleep 600"
)
PROGRAMS: dict[str, list[str]] = {
    "styles": ["/bin/sh", "-c", STYLES],
    "curses": [PYTHON, "-c", CURSES],
    "scrolled": ["/bin/sh", "-c", "seq 1 300; printf READY; sleep 600"],
    "modes": [
        "/bin/sh",
        "-c",
        r"printf '\033[?2004h\033[?1h\033[?1000h\033[?1006h\033[?25l\033[3;20r"
        r"\033[1;1Hfirst\033[5;7HREADY\033[7;3H'; sleep 600",
    ],
}


@pytest.fixture
def tmux(tmp_path: Path) -> Any:
    t = Tmux(tmp_path)
    yield t
    t.kill()


async def screen_of(server: RunningServer, id: str, marker: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    async with rest(server) as c:
        while True:
            r = await c.get(f"{API}/sessions/{id}/screen")
            assert r.status_code == 200, r.text
            screen: dict[str, Any] = r.json()
            if any(marker in line for line in screen["lines"]):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{marker!r} never on screen: {await _state(c, id, r.text)}")
            await asyncio.sleep(0.05)


async def _state(c: httpx.AsyncClient, id: str, screen: str) -> str:
    """What a failure needs to tell a slow session from a model that lags: the session (alive,
    its output's end) beside the screen (its offset)."""
    session = (await c.get(f"{API}/sessions/{id}")).text
    return f"session {session}; screen {screen[:600]}"


@pytest.mark.parametrize("program", sorted(PROGRAMS))
async def test_the_screen_is_what_tmux_shows(
    server: RunningServer, tmux: Tmux, tmp_path: Path, program: str
) -> None:
    argv = PROGRAMS[program]
    await make(server, program, argv, rows=ROWS, cols=COLS)
    tmux.start("ref", argv, ROWS, COLS)
    expected = tmux.wait_for("ref", "READY")
    screen = await screen_of(server, program, "READY")
    assert (screen["rows"], screen["cols"]) == (ROWS, COLS)
    assert screen["lines"] == expected
    flags = tmux.flags("ref")
    assert screen["cursor"] == {"row": int(flags["cursor_y"]), "col": int(flags["cursor_x"])}
    assert screen["alternate"] == (flags["alternate_on"] == "1")
    assert screen["offset"] > 0

    # the redraw: played on a blank pane of the same size, it shows the same screen and modes
    drawn = tmp_path / "screen.data"
    drawn.write_text(screen["data"])
    tmux.start("redrawn", ["/bin/sh", "-c", f"cat {drawn}; sleep 600"], ROWS, COLS)
    assert tmux.wait_for("redrawn", "READY") == expected
    assert tmux.flags("redrawn") == flags
    # scrollback and attributes (colours, bold) too: -e keeps them as escape sequences
    history = tmux.run("capture-pane", "-p", "-e", "-S", "-400", "-t", "ref")
    assert tmux.run("capture-pane", "-p", "-e", "-S", "-400", "-t", "redrawn") == history


async def test_modes_the_model_keeps_are_in_the_redraw(server: RunningServer) -> None:
    await make(server, "modes", PROGRAMS["modes"], rows=ROWS, cols=COLS)
    screen = await screen_of(server, "modes", "READY")
    for mode in ("\x1b[?2004h", "\x1b[?1h", "\x1b[?1000h", "\x1b[?1006h", "\x1b[?25l"):
        assert mode in screen["data"], mode  # bracketed paste has no tmux flag to compare


async def test_restore_screen_sends_the_screen_then_live_output_from_its_offset(
    server: RunningServer,
) -> None:
    await make(server, "vi", PROGRAMS["curses"], rows=ROWS, cols=COLS)
    before = await screen_of(server, "vi", "READY")
    t = await TermClient.connect(
        server.ws_url, "vi", ALICE, reconnect="true", restore="screen", rows=ROWS, cols=COLS
    )
    screen = await t.frame("screen")
    assert screen["offset"] == before["offset"] == t.hello["replay_from"]
    assert t.hello["replay_bytes"] == 0
    assert screen["data"] == before["data"] and screen["alternate"] is True
    assert (screen["rows"], screen["cols"]) == (ROWS, COLS)
    await t.frame("replay_done")
    await t.close()

    shell = await TermClient.connect(server.ws_url, "sh", ALICE, restore="screen")
    await shell.send(b"echo one$((40+2))\n")
    await shell.read_until(b"one42")
    await shell.close()
    again = await TermClient.connect(server.ws_url, "sh", ALICE, reconnect="true", restore="screen")
    frame = await again.frame("screen")
    assert "one42" in frame["data"]
    await again.send(b"echo two$((40+3))\n")
    await again.read_until(b"two43")  # typing goes on, live output starts at the screen's offset
    assert again.first_offset == frame["offset"]
    await again.close()


async def test_since_wins_over_restore(server: RunningServer) -> None:
    t = await TermClient.connect(server.ws_url, "s", ALICE)
    await t.send(b"echo mark$((6*7))\n")
    await t.read_until(b"mark42")
    await t.close()
    again = await TermClient.connect(
        server.ws_url, "s", ALICE, reconnect="true", restore="screen", since=0
    )
    await again.read_until(b"mark42")
    assert again.first_offset == 0
    assert not any(f["type"] == "screen" for f in again.frames)
    await again.close()


async def test_a_bad_restore_is_a_4400(server: RunningServer) -> None:
    path = f"/api/v1/terminal/ws/x?token={ALICE}&restore=pixels"
    assert await close_code_of(server.ws_url, path) == 4400


async def test_another_users_screen_is_missing(server: RunningServer) -> None:
    await make(server, "mine", PROGRAMS["scrolled"])
    async with rest(server, BOB) as c:
        assert (await c.get(f"{API}/sessions/mine/screen")).status_code == 404
    async with httpx.AsyncClient(base_url=server.url) as c:
        assert (await c.get(f"{API}/sessions/mine/screen")).status_code == 401


async def test_without_a_model_the_screen_is_a_503_and_restore_replays(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(screen_model=False)
    t = await TermClient.connect(server.ws_url, "p", ALICE, restore="screen")
    await t.send(b"echo plain$((6*7))\n")
    await t.read_until(b"plain42")
    await t.close()
    async with rest(server) as c:
        r = await c.get(f"{API}/sessions/p/screen")
    assert r.status_code == 503 and "replay" in r.json()["detail"]
    again = await TermClient.connect(server.ws_url, "p", ALICE, reconnect="true", restore="screen")
    await again.read_until(b"plain42")  # replayed, as before the screen model
    assert again.first_offset == 0
    await again.close()


async def wait_screen(server: RunningServer, id: str, marker: str, timeout: float = 30) -> Any:
    """The screen once ``marker`` is on it, through 503s while the model restarts."""
    deadline = time.monotonic() + timeout
    async with rest(server) as c:
        while True:
            r = await c.get(f"{API}/sessions/{id}/screen")
            assert r.status_code in (200, 503), r.text
            if r.status_code == 200 and any(marker in line for line in r.json()["lines"]):
                return r.json()
            if time.monotonic() > deadline:
                raise AssertionError(f"{marker!r} never on screen: {await _state(c, id, r.text)}")
            await asyncio.sleep(0.05)


async def test_a_killed_model_is_started_again_and_screens_are_rebuilt(
    server: RunningServer,
) -> None:
    # a program, not a shell: what is typed before an interactive shell is ready may be dropped
    program = "echo before$((6*7)); read line; echo after$((6*7)); sleep 600"
    await make(server, "k", ["/bin/sh", "-c", program], rows=ROWS, cols=COLS)
    await wait_screen(server, "k", "before42")
    pid = server.call(lambda: server.core.terminals.screens.pid)
    os.kill(pid, signal.SIGKILL)
    t = await TermClient.connect(server.ws_url, "k", ALICE, reconnect="true")
    try:
        await t.send(b"go\n")  # output while there is no model is not lost to it
        screen = await wait_screen(server, "k", "after42")
    finally:
        await t.close()
    assert any("before42" in line for line in screen["lines"])  # rebuilt from the buffer
    assert server.call(lambda: server.core.terminals.screens.pid) not in (None, pid)


async def test_a_flood_ends_on_the_right_screen(server: RunningServer) -> None:
    """A stream of output waits in the buffer until it pauses (the model never competes with
    the shell); what left the buffer meanwhile is rebuilt from the buffer, and /metrics says
    how much that was."""
    flood = "seq 1 400000; printf '\\033[?2004hFLOOD-END'; sleep 600"
    await make(server, "f", ["/bin/sh", "-c", flood], rows=ROWS, cols=COLS)
    screen = await wait_screen(server, "f", "FLOOD-END")
    assert screen["lines"][-2:] == ["400000", "FLOOD-END"]
    assert screen["lines"][0] == str(400000 - ROWS + 2)
    assert "\x1b[?2004h" in screen["data"]
    info = await poll_info(server, "f", lambda i: True)
    assert screen["offset"] == info["output_end"]
    async with rest(server) as c:
        metrics = (await c.get("/metrics")).text
    skipped = re.search(r'hearth_screen_model_bytes_total\{fate="skipped"\} (\S+)', metrics)
    assert skipped and float(skipped[1]) > 0, metrics  # it was too far behind, and said so


HOSTILE = [
    r"printf '\033]0;'; head -c 200000 /dev/zero | tr '\0' T; printf '\007'",  # a huge title
    r"printf '\033[99999999;99999999H\033[99999999@\033[99999999b'",  # huge moves, inserts
    # counts xterm.js repeats one by one (minutes each, unless cut at the screen's size)
    r"printf '\033[99999999L\033[99999999M\033[99999999S\033[99999999T'",
    r"printf '\033[99999999I\033[99999999Z'",
    r"printf '\033[8;9999;9999t\033[3;9999;9999t'",  # window resize and move requests
    r"printf '\033P'; head -c 100000 /dev/zero | tr '\0' q; printf '\033\\'",  # a long DCS
    r"printf '\033[?1049h\033[?1049h\033[?47l\033[?1049l\033[?1047h'",  # buffer switches
    r"printf '\377\376\300\200\355\240\200'",  # invalid UTF-8
    "head -c 3000000 /dev/urandom",
]


async def test_hostile_output_leaves_the_model_working(server: RunningServer) -> None:
    """What runs inside a session is hostile: its output can't break or resize the model."""
    script = "; ".join(HOSTILE) + r"; printf '\033c\033[8;10;10tSURVIVED'; sleep 600"
    await make(server, "h", ["/bin/sh", "-c", script], rows=ROWS, cols=COLS)
    screen = await wait_screen(server, "h", "SURVIVED")
    assert (screen["rows"], screen["cols"]) == (ROWS, COLS)
    assert server.call(lambda: server.core.terminals.screens.restarts) == 0
    async with rest(server) as c:
        assert (await c.get(f"{API}/sessions/h")).json()["alive"]


async def test_a_closed_session_leaves_no_screen_behind(server: RunningServer) -> None:
    count = server.call(lambda: server.core.terminals.screens.screens)
    for n in range(3):
        await make(server, f"c{n}", PROGRAMS["scrolled"])
    assert server.call(lambda: server.core.terminals.screens.screens) == count + 3
    async with rest(server) as c:
        for n in range(3):
            assert (await c.delete(f"{API}/sessions/c{n}")).status_code == 204
    assert server.call(lambda: server.core.terminals.screens.screens) == count


async def test_without_node_the_server_runs_and_says_how_to_get_screens(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(node_binary="no-such-node-binary")
    await make(server, "n", PROGRAMS["scrolled"])
    async with rest(server) as c:
        r = await c.get(f"{API}/sessions/n/screen")
    assert r.status_code == 503 and "Node.js" in r.json()["detail"]


def _status(pid: int, field: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return line.split()[1]
    raise AssertionError(f"no {field} for {pid}")


def _node_of(outer: int) -> int:
    """The model's Node.js process among the sandbox's helpers (bwrap, setpriv, env)."""
    [node] = [
        pid
        for pid in _family(outer)
        if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"node")
    ]
    return node


def _sees(pid: int, path: Path) -> list[str]:
    """What process ``pid`` sees in ``path`` (through its root)."""
    inside = Path(f"/proc/{pid}/root") / str(path).lstrip("/")
    return sorted(p.name for p in inside.iterdir()) if inside.is_dir() else []


async def test_the_model_is_sandboxed_like_a_session(server: RunningServer) -> None:
    """It parses every session's output, so it gets a session's confinement: its own uid, no
    network, no data directory (an exploit in the emulator reaches nothing of the server's)."""
    if server.core.sandbox.kind != "bubblewrap":
        why = "needs the bubblewrap sandbox (apt-get install bubblewrap)"
        pytest.fail(why) if os.environ.get("CI") == "true" else pytest.skip(why)
    await make(server, "sb", PROGRAMS["scrolled"])
    await screen_of(server, "sb", "READY")
    node = _node_of(server.call(lambda: server.core.terminals.screens.pid))
    assert _status(node, "Uid") not in ("0", str(os.getuid()))
    assert os.readlink(f"/proc/{node}/ns/net") != os.readlink("/proc/self/ns/net")
    data_dir = server.settings.data_dir.resolve()
    assert _sees(os.getpid(), data_dir) != [] and _sees(node, data_dir) == []


async def test_a_terminal_is_in_the_model_only_once_its_screen_is_asked_for(
    server: RunningServer,
) -> None:
    """A new terminal's screen is cold: its output costs the model nothing (an emulator is
    ~300 KiB) until a screen is asked for, and the answer is the same as it would be."""
    models = server.core.terminals.screens
    assert models is not None
    before = server.call(models.census)["terminals"]
    await make(server, "cold", PROGRAMS["modes"], rows=ROWS, cols=COLS)
    async with rest(server) as c:  # its output has reached the host (a viewer could see it)
        deadline = time.monotonic() + 15
        while (await c.get(f"{API}/sessions/cold")).json()["output_end"] == 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    assert server.call(models.census)["terminals"] == before
    screen = await screen_of(server, "cold", "READY")
    assert screen["lines"][0] == "first" and screen["cursor"] == {"row": 6, "col": 2}
    assert server.call(models.census)["terminals"] == before + 1


async def test_a_screen_whose_output_outgrows_the_buffer_keeps_what_left_it(
    make_server: Callable[..., RunningServer],
) -> None:
    """A cold screen is built before its buffer drops the first byte: modes set by output the
    buffer no longer holds (the alternate screen, bracketed paste) are still on the screen."""
    server = make_server(max_buffer_size=50)
    script = r"printf '\033[?2004h\033[?1049h'; seq 1 300; printf READY; sleep 600"
    await make(server, "long", ["/bin/sh", "-c", script], rows=ROWS, cols=COLS)
    screen = await screen_of(server, "long", "READY")
    assert screen["alternate"] is True and "\x1b[?2004h" in screen["data"]
    assert screen["lines"][-2:] == ["300", "READY"]
    async with rest(server) as c:
        assert (await c.get(f"{API}/sessions/long")).json()["output_start"] > 0
