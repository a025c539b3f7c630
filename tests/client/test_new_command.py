"""``hearth new [--name N] [-d] [-- COMMAND ...]``: the program to run is the client's choice,
as with ``client.terminals.create(command=...)`` (SPEC §6)."""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator
from pathlib import Path

import pytest

import hearth
from tests.client.helpers import poll
from tests.client.test_attach import Tty
from tests.conftest import ALICE, RunningServer


def hearth_env(server: RunningServer, data_home: Path) -> dict[str, str]:
    """The server and token by environment: a command's own arguments come last."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
    return {**env, "HEARTH_URL": server.url, "HEARTH_TOKEN": ALICE, "XDG_DATA_HOME": str(data_home)}


class EnvTty(Tty):
    """``Tty`` with the server given by environment, so the arguments may end with a program."""

    def __init__(self, server: RunningServer, data_home: Path, *args: str) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hearth", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=hearth_env(server, data_home),
            start_new_session=True,
        )
        os.close(slave)
        self.seen = b""


@pytest.fixture
def ttys() -> Iterator[list[Tty]]:
    made: list[Tty] = []
    yield made
    for t in made:
        t.close()


def test_new_detached_runs_the_command_after_the_dashes(
    server: RunningServer, tmp_path: Path
) -> None:
    program = ["/bin/sh", "-c", "echo made-$((6*7)); exec sleep 60"]
    made = subprocess.run(
        [sys.executable, "-m", "hearth", "new", "-d", "--name", "job", "--", *program],
        capture_output=True,
        text=True,
        env=hearth_env(server, tmp_path),
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    id = made.stdout.strip()
    with hearth.Client(server.url, ALICE) as client:
        session = client.terminals.get(id)
        assert session.name == "job" and session.command == program
        poll(
            lambda: any("made-42" in e.data for e in client.terminals.history(id)),
            what="the command's output",
        )


def test_new_attaches_to_the_command_and_exits_with_its_status(
    server: RunningServer, tmp_path: Path, ttys: list[Tty]
) -> None:
    t = EnvTty(server, tmp_path, "new", "--", "/bin/sh", "-c", "echo hi-$((1+1)); read x; exit 3")
    ttys.append(t)
    t.read_until(b"hi-2")
    t.type(b"\r")
    assert t.wait() == 3
    assert b"exited with status 3" in t.seen
