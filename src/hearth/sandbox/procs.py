"""Signals for the processes of a sandbox (Linux /proc; blocking: run off the event loop).

bwrap runs as two processes: the *outer* one (what the spawner started, in the server's PID
namespace) and the sandbox's init (PID 1 inside). Neither forwards signals and both die of the
default ones, and bwrap's ``--die-with-parent`` turns the outer one's death into SIGKILL for
everything inside. So a polite signal goes to the processes of the sandbox *except* bwrap's two,
and the forced end is one SIGKILL to the init: the kernel then kills every process of its PID
namespace, including those that left their process group or session.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

__all__ = ["init_of", "kill_sandbox", "signal_sandbox"]

_PROC = Path("/proc")


def _ppid(pid: int) -> int | None:
    try:
        raw = (_PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    return int(raw[raw.rfind(b")") + 2 :].split()[1])


def init_of(outer: int) -> int | None:
    """The sandbox's PID 1 (as the server sees it): the outer bwrap's child."""
    with contextlib.suppress(OSError, ValueError):
        children = (_PROC / str(outer) / "task" / str(outer) / "children").read_text().split()
        if children:
            return int(children[0])
    for entry in _PROC.iterdir():
        if entry.name.isdigit() and _ppid(int(entry.name)) == outer:
            return int(entry.name)
    return None


def _members(init: int) -> list[int]:
    try:
        namespace = os.readlink(_PROC / str(init) / "ns" / "pid")
    except OSError:
        return []
    found = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == init:
            continue
        with contextlib.suppress(OSError):
            if os.readlink(entry / "ns" / "pid") == namespace:
                found.append(int(entry.name))
    return found


def signal_sandbox(outer: int, signum: int) -> int:
    """Send ``signum`` to every process inside the sandbox but its init; returns how many."""
    init = init_of(outer)
    if init is None:
        return 0
    sent = 0
    for pid in _members(init):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)
            sent += 1
    return sent


def kill_sandbox(outer: int) -> None:
    """SIGKILL everything in the sandbox (its init, hence its whole PID namespace)."""
    init = init_of(outer)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(outer if init is None else init, signal.SIGKILL)
