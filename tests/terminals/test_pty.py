"""PtyProcess with real processes: a session leader owning its PTY, and its teardown."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

import hearth.terminals.pty as pty_module
from hearth.terminals.pty import PtyProcess

SETSID = shutil.which("setsid")


def stat_fields(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rfind(")") + 2 :].split()


async def read_until(proc: PtyProcess, marker: bytes, timeout: float = 10) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while marker not in out:
        assert time.monotonic() < deadline, out
        try:
            out += os.read(proc.fd, 4096)
        except BlockingIOError:
            await asyncio.sleep(0.01)
    return out


@pytest.mark.parametrize(
    "setsid",
    [
        pytest.param(None, id="preexec"),
        pytest.param(
            SETSID, id="setsid-ctty", marks=pytest.mark.skipif(not SETSID, reason="no setsid")
        ),
    ],
)
async def test_child_leads_its_session_and_owns_the_pty(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, setsid: str | None
) -> None:
    monkeypatch.setattr(pty_module, "_SETSID", setsid)
    proc = PtyProcess.spawn(
        ["bash", "--norc", "--noprofile", "-i"],
        cwd=tmp_path,
        env={**os.environ, "PS1": "$ "},
        rows=30,
        cols=90,
    )
    try:
        os.write(proc.fd, b"echo pid=$$; stty size; sleep 100 & jobs\n")
        out = await read_until(proc, b"Running")
        fields = stat_fields(proc.pid)  # (setsid sets the terminal just before it execs)
        assert int(fields[3]) == proc.pid  # session id: its own
        assert int(fields[4]) != 0  # a controlling terminal
        assert f"pid={proc.pid}".encode() in out  # the pid we watch is the shell itself
        assert b"30 90" in out
        assert b"no job control" not in out
    finally:
        code = await proc.terminate(1.0)
    assert code == 128 + signal.SIGHUP


async def test_missing_program_raises_before_spawning(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        PtyProcess.spawn(
            ["no-such-program-x"], cwd=tmp_path, env=dict(os.environ), rows=24, cols=80
        )
