"""Terminals start from a process parked in its cgroup ahead (hearth.sandbox.parked): what it
runs is exactly what it is told, it leaves nothing of itself to the session, and nothing of it
outlives the server."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from hearth.sandbox.parked import park_argv, resume_script
from tests.client.helpers import poll
from tests.conftest import RunningServer
from tests.sandbox.test_attacks import H_ALICE, terminal_output


def test_the_resume_script_quotes_everything_and_drops_names_sh_cannot_export() -> None:
    words = ["/usr/bin/printf", "%s|", "a b", "$(reboot)", "it's", "*"]
    env = {"A": "x'y", "BAD-NAME": "v", "B": "$HOME\nz"}
    script = resume_script(words, env)
    assert script.startswith("exec 0<&1\n")  # the PTY (stdout) becomes stdin; the pipe closes
    assert "BAD-NAME" not in script

    def run(script: str) -> bytes:  # the parked sh itself, its stdout a pipe instead of a PTY
        return subprocess.run(
            park_argv([]), input=script.encode(), capture_output=True, env={}
        ).stdout

    assert run(script) == b"a b|$(reboot)|it's|*|"
    assert run(resume_script(["/usr/bin/env"], env)) == b"A=x'y\nB=$HOME\nz\n"
    assert park_argv(["/cg/a/cgroup.procs"])[-1] == "/cg/a/cgroup.procs"


def parked_processes() -> list[int]:
    """Parked processes of this test process's session hosts (other hosts may run meanwhile:
    a benchmark's, another test run's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rpartition(")")[2].split()[1])
            if len(argv) > 2 and argv[2].endswith(b". /dev/stdin") and parent == os.getpid():
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(
    not Path("/usr/bin/bwrap").exists() and os.environ.get("CI") != "true",
    reason="needs bubblewrap (apt-get install bubblewrap)",
)
def test_a_terminal_from_the_parked_process_has_only_its_terminal_and_its_own_env(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(session_pids_limit=64)
    manager = server.core.terminals
    assert server.core.sandbox.parks
    poll(lambda: server.call(lambda: manager.spare.parked is not None), what="a parked process")
    spare_pid = server.call(lambda: manager.spare.parked.popen.pid)
    script = (
        "ls /proc/self/fd; echo ENV; env | sort; echo TTY; : > /dev/tty && echo CTTY; echo DONE"
    )
    r = httpx.post(
        f"{server.url}/api/v1/terminal/sessions",
        json={"id": "p", "command": ["/bin/sh", "-c", script], "env": {"EXTRA": "it's"}},
        headers=H_ALICE,
    )
    assert r.status_code == 201, r.text
    output = poll(
        lambda: (o := terminal_output(server, H_ALICE, "p")) and "DONE" in o and o,
        what="the shell's report",
    )
    fds, _, rest = output.partition("ENV")
    assert fds.split() == ["0", "1", "2", "3"]  # 3 is ls's own directory: no pipe left over
    env = dict(line.split("=", 1) for line in rest.split("TTY")[0].split() if "=" in line)
    assert env["EXTRA"] == "it's" and env["USER"] == "alice" and "HEARTH_TOKENS" not in env
    assert "CTTY" in output  # the PTY is its controlling terminal
    # the next terminal's process is parked again, and none is left once the server stops
    poll(
        lambda: (
            server.call(lambda: manager.spare.parked is not None and manager.spare.parked.popen.pid)
            not in (None, False, spare_pid)
        ),
        what="a new parked process",
    )
    assert parked_processes()
    server.stop()
    assert parked_processes() == []
