"""``hearth attach`` driven through a real PTY, as a person at a terminal would use it."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import hearth
from tests.client.helpers import SHELL, poll
from tests.conftest import ALICE, RunningServer

DETACH = b"\x1c"


class Tty:
    """A ``hearth`` command on the slave side of a fresh PTY; the test holds the master."""

    def __init__(self, server: RunningServer, data_home: Path, *args: str) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        env = {**os.environ, "XDG_DATA_HOME": str(data_home)}
        env.pop("HEARTH_URL", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hearth", *args, "--url", server.url, "--token", ALICE],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.seen = b""

    def read_until(self, marker: bytes, timeout: float = 15) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{marker!r} not seen; got {self.seen[-500:]!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: the process closed the terminal
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"ended before {marker!r}; got {self.seen[-500:]!r}")
                self.seen += chunk
        return self.seen

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self, timeout: float = 15) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:  # keep draining, or a full PTY would block it
            if time.monotonic() > deadline:
                raise AssertionError("the command did not exit")
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                with contextlib.suppress(OSError):
                    self.seen += os.read(self.master, 65536)
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


@pytest.fixture
def ttys(server: RunningServer, tmp_path: Path) -> Iterator[list[Tty]]:
    made: list[Tty] = []
    yield made
    for t in made:
        t.close()


def attach(server: RunningServer, tmp_path: Path, ttys: list[Tty], *args: str) -> Tty:
    t = Tty(server, tmp_path / "xdg", "attach", *args)
    ttys.append(t)
    return t


def viewers(client: hearth.Client, id: str) -> int:
    return client.terminals.get(id).viewers


def test_attach_type_detach_and_come_back_to_only_new_output(
    server: RunningServer, tmp_path: Path, ttys: list[Tty]
) -> None:
    with hearth.Client(server.url, ALICE) as client:
        client.terminals.create(id="w", command=SHELL)
        first = attach(server, tmp_path, ttys, "w")
        poll(lambda: viewers(client, "w") == 1, what="the viewer")
        assert client.terminals.get("w").rows == 30  # the window size went with the URL
        first.type(b"echo one-$((40+2))\r")
        first.read_until(b"one-42")
        # while attached, output keeps coming: this line appears after the detach
        first.type(b"sleep 0.5; echo late-$((3*3))\r")
        first.type(DETACH)
        assert first.wait() == 0
        assert b"detached from w" in first.seen
        assert b"late-9" not in first.seen

        session = client.terminals.get("w")
        assert session.alive and session.status == "disconnected"
        poll(
            lambda: any("late-9" in e.data for e in client.terminals.history("w")),
            what="the output made while detached",
        )

        second = attach(server, tmp_path, ttys, "w")
        second.read_until(b"late-9")
        second.type(b"echo two-$((1+1))\r")
        second.read_until(b"two-2")
        assert b"one-42" not in second.seen  # nothing written twice
        assert second.seen.count(b"late-9") == 1
        second.type(DETACH)
        assert second.wait() == 0

        replayed = attach(server, tmp_path, ttys, "w", "--replay")
        replayed.read_until(b"two-2")
        assert b"one-42" in replayed.seen
        replayed.type(DETACH)
        assert replayed.wait() == 0


def _drop_websockets(server: RunningServer) -> int:
    return len(server.on_websockets(lambda conn: conn.transport.abort()))


def test_a_dropped_connection_is_resumed_printing_nothing_twice(
    server: RunningServer, tmp_path: Path, ttys: list[Tty]
) -> None:
    with hearth.Client(server.url, ALICE) as client:
        client.terminals.create(id="d", command=SHELL)
        t = attach(server, tmp_path, ttys, "d")
        poll(lambda: viewers(client, "d") == 1, what="the viewer")
        t.type(b"echo a-$((1+1))\r")
        t.read_until(b"a-2")
        t.type(b"sleep 0.5; echo during-$((2*4))\r")
        t.read_until(b"during-$((2*4))")  # the shell has the command: its output comes later
        assert _drop_websockets(server) == 1
        t.read_until(b"reconnecting")
        t.read_until(b"during-8")
        poll(lambda: viewers(client, "d") == 1, what="the viewer back")
        t.type(b"echo after-$((2+3))\r")
        t.read_until(b"after-5")
        for marker in (b"a-2", b"during-8", b"after-5"):
            assert t.seen.count(marker) == 1, marker
        t.type(DETACH)
        assert t.wait() == 0


def test_window_size_follows_sigwinch_and_exit_ends_with_its_code(
    server: RunningServer, tmp_path: Path, ttys: list[Tty]
) -> None:
    with hearth.Client(server.url, ALICE) as client:
        client.terminals.create(id="x", command=SHELL)
        t = attach(server, tmp_path, ttys, "x")
        poll(lambda: viewers(client, "x") == 1, what="the viewer")
        fcntl.ioctl(t.master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        t.proc.send_signal(signal.SIGWINCH)
        poll(lambda: client.terminals.get("x").cols == 120, what="the resize")
        t.type(b"exit 3\r")
        assert t.wait() == 3
        assert b"exited with status 3" in t.seen
        # the terminal was restored: the line discipline is cooked again
        attrs = termios.tcgetattr(t.master)
        assert attrs[3] & termios.ICANON


def test_attach_to_a_missing_session_says_so(
    server: RunningServer, tmp_path: Path, ttys: list[Tty]
) -> None:
    t = attach(server, tmp_path, ttys, "nope")
    assert t.wait() == 1
    assert b"No terminal session 'nope'" in t.seen
    assert b"Traceback" not in t.seen


def test_new_starts_a_session_and_attaches_to_it(
    server: RunningServer, tmp_path: Path, ttys: list[Tty]
) -> None:
    t = Tty(server, tmp_path / "xdg", "new", "--name", "fresh")
    ttys.append(t)
    with hearth.Client(server.url, ALICE) as client:
        [session] = poll(client.terminals.list, what="the new session")
        assert session.name == "fresh" and (session.rows, session.cols) == (30, 100)
        poll(lambda: viewers(client, session.id) == 1, what="the viewer")
        t.type(b"PS1='$ '; echo made-$((6*7))\r")
        t.read_until(b"made-42")
        t.type(DETACH)
        assert t.wait() == 0
        assert client.terminals.get(session.id).alive


def test_output_lost_while_away_is_announced_and_a_stale_offset_is_ignored(
    make_server: Callable[..., RunningServer], tmp_path: Path, ttys: list[Tty]
) -> None:
    server = make_server(max_buffer_bytes=1024, max_buffer_size=20)
    trigger = server.settings.data_dir / "homes" / "alice" / "go"  # the session sees its home
    script = f"echo first; until [ -e {trigger} ]; do sleep 0.02; done; seq 1 3000; exec cat"
    with hearth.Client(server.url, ALICE) as client:
        client.terminals.create(id="m", command=[*SHELL, "-c", script])
        first = attach(server, tmp_path, ttys, "m")
        first.read_until(b"first")
        first.type(DETACH)
        assert first.wait() == 0
        trigger.touch()
        poll(lambda: client.terminals.get("m").output_start > 100, what="the old output evicted")

        second = attach(server, tmp_path, ttys, "m")
        second.read_until(b"3000")
        assert b"lost while away" in second.seen
        assert b"first" not in second.seen
        second.type(DETACH)
        assert second.wait() == 0

        # an offset remembered for an older session of the same id is past this one's output
        client.terminals.close("m")
        client.terminals.create(id="m", command=[*SHELL, "-c", "echo reborn; exec cat"])
        third = attach(server, tmp_path, ttys, "m")
        third.read_until(b"reborn")
        third.type(DETACH)
        assert third.wait() == 0


def test_attach_without_an_offset_draws_the_sessions_screen(
    make_server: Callable[..., RunningServer], tmp_path: Path, ttys: list[Tty]
) -> None:
    """SPEC §9: a full-screen program shows as it is, in its alternate screen, though the
    bytes that drew its top row are long out of the buffer (a replay would miss them)."""
    server = make_server(max_buffer_size=20)
    program = (
        r"printf '\033[?1049h\033[1;1HDRAWN-TOP\033[5;10r\033[5;1H'; seq 1 100; "
        r"printf END-OF-SEQ; sleep 600"
    )
    with hearth.Client(server.url, ALICE) as client:
        client.terminals.create(id="tui", command=["/bin/sh", "-c", program])
        poll(
            lambda: any("END-OF-SEQ" in e.data for e in client.terminals.history("tui")),
            what="the program's output",
        )
        t = Tty(server, tmp_path / "xdg", "attach", "tui")
        ttys.append(t)
        seen = t.read_until(b"END-OF-SEQ")
        assert b"DRAWN-TOP" in seen and b"\x1b[?1049h" in seen, seen[:300]
        assert seen.index(b"\x1b[H\x1b[2J") < seen.index(b"\x1b[?1049h") < seen.index(b"DRAWN-TOP")
        t.type(DETACH)
        assert t.wait() == 0
