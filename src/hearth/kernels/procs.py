"""The processes of one kernel: watch its exit, and kill all it left behind (Linux /proc).

A kernel starts as the leader of its own session and process group (jupyter_client launches it
with ``start_new_session``). Its children normally stay in that group, but a child can move to a
group or session of its own (``setsid``, daemons). So "the whole process group" is killed
generously: every process whose group or session is the kernel's, plus every process that still
carries the kernel's marker variable in its environment. The sweep runs while the kernel is
not yet reaped, so its pid (the group and session id) cannot have been reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

__all__ = ["ExitWatch", "is_gone", "kill_everything", "signal_group"]

_PROC = Path("/proc")


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, session) of ``pid``, or None if it is gone."""
    try:
        raw = (_PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()
    return fields[0].decode(), int(fields[2]), int(fields[3])


def is_gone(pid: int) -> bool:
    """The process has exited (a zombie counts as gone: it runs nothing)."""
    stat = _stat(pid)
    return stat is None or stat[0] in ("Z", "X")


def _carries(pid: int, marker: bytes) -> bool:
    try:
        environ = (_PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return False
    return marker in environ.split(b"\0")


def _leftovers(leader: int, marker: bytes) -> list[int]:
    me = os.getpid()
    found = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) in (me, leader):
            continue
        pid = int(entry.name)
        stat = _stat(pid)
        if stat is None or stat[0] in ("Z", "X"):
            continue
        if leader in (stat[1], stat[2]) or _carries(pid, marker):
            found.append(pid)
    return found


def signal_group(leader: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(leader, signum)


def kill_everything(leader: int, marker: bytes) -> int:
    """SIGKILL the kernel's group, then sweep until nothing of it runs; returns how many strays
    the sweep found. Blocking (it reads /proc): run it in a thread."""
    signal_group(leader, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(leader, signal.SIGKILL)
    strays = 0
    for _ in range(5):
        found = _leftovers(leader, marker)
        if not found:
            break
        strays += len(found)
        for pid in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    return strays


class ExitWatch:
    """Resolves ``exited`` when the process ends, without reaping it (pidfd, or /proc polling
    where pidfd is missing)."""

    def __init__(self, pid: int, poll_interval: float = 0.25) -> None:
        self.pid = pid
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._loop = asyncio.get_running_loop()
        self._poll_interval = poll_interval
        self._fd: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        try:
            self._fd = os.pidfd_open(pid)
        except (OSError, AttributeError):
            self._poll()
        else:
            self._loop.add_reader(self._fd, self._fire)

    def _poll(self) -> None:
        if is_gone(self.pid):
            self._fire()
        else:
            self._timer = self._loop.call_later(self._poll_interval, self._poll)

    def _fire(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
