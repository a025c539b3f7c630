"""The client commands of ``hearth`` as a user runs them: a real process against a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import hearth
from tests.client.helpers import SHELL
from tests.conftest import ALICE, RunningServer


def run(
    server: RunningServer, *args: str, token: str = ALICE, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
    return subprocess.run(
        [sys.executable, "-m", "hearth", *args, "--url", server.url, "--token", token],
        capture_output=True,
        text=True,
        input=stdin,
        env=env,
        timeout=60,
    )


def test_ls_new_kill(server: RunningServer) -> None:
    empty = run(server, "ls")
    assert empty.returncode == 0 and "No sessions" in empty.stdout
    with hearth.Client(server.url, ALICE) as client:
        client.terminals.create(id="shell-1", name="build", command=SHELL)
    made = run(server, "new", "--name", "second", "-d")
    assert made.returncode == 0, made.stderr
    new_id = made.stdout.strip()

    table = run(server, "ls")
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split() == ["KIND", "ID", "NAME", "STATUS", "DETAIL", "AGE"]
    assert "shell-1" in table.stdout and "build" in table.stdout and new_id in table.stdout

    listed = json.loads(run(server, "ls", "--json").stdout)
    assert {t["id"] for t in listed["terminals"]} == {"shell-1", new_id}
    assert listed["kernels"] == []

    assert run(server, "kill", "shell-1").returncode == 0
    gone = run(server, "kill", "shell-1")
    assert gone.returncode == 1
    assert gone.stderr.startswith("hearth: ") and "Traceback" not in gone.stderr
    assert len(gone.stderr.strip().splitlines()) == 1


def test_errors_are_one_line(server: RunningServer, tmp_path: Path) -> None:
    wrong = run(server, "ls", token="not-a-token")
    assert wrong.returncode == 1
    assert "--token" in wrong.stderr and "Traceback" not in wrong.stderr
    down = subprocess.run(
        [sys.executable, "-m", "hearth", "ls", "--url", "http://127.0.0.1:9", "--token", "x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert down.returncode == 1
    assert "hearth serve" in down.stderr and "http://127.0.0.1:9" in down.stderr


def test_exec_prints_outputs_and_fails_when_the_code_raises(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(session_pool_size=1)
    ok = run(server, "exec", "import sys; print('out'); print('err', file=sys.stderr); 6*7")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "out\n42\n"
    assert ok.stderr == "err\n"
    assert run(server, "ls", "--json").stdout.count('"session_id"') == 0  # its kernel is gone

    kept = run(server, "exec", "--session", "calc", "x = 5")
    assert kept.returncode == 0, kept.stderr
    from_stdin = run(server, "exec", "--session", "calc", "-", stdin="print(x + 1)\n")
    assert from_stdin.stdout == "6\n"

    failed = run(server, "exec", "--session", "calc", "raise ValueError('bad input')")
    assert failed.returncode == 1
    assert "ValueError" in failed.stderr and "bad input" in failed.stderr
    assert failed.stdout == ""
