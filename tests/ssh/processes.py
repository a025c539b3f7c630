"""Process trees read from /proc: what sshd forked for its connections, to kill them all at once
(they are not our children, and they outlive their listener)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Proc:
    """A process, told apart from a later one given the same pid by its start time."""

    pid: int
    start: int  # clock ticks after boot (field 22 of /proc/<pid>/stat)


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start) of ``pid``, None if it is gone."""
    try:
        text = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # after "pid (comm)", which may hold spaces
    return fields[0], int(fields[1]), int(fields[19])


def proc(pid: int) -> Proc | None:
    stat = _stat(pid)
    return None if stat is None else Proc(pid, stat[2])


def alive(p: Proc) -> bool:
    """Running, stopped or asleep: not gone, not a zombie, not a newer process on its pid."""
    stat = _stat(p.pid)
    return stat is not None and stat[2] == p.start and stat[0] not in "ZX"


def descendants(roots: Iterable[Proc]) -> set[Proc]:
    """Every live process below ``roots`` (not the roots themselves)."""
    children: dict[int, list[Proc]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[1], []).append(Proc(int(entry.name), stat[2]))
    found: set[Proc] = set()
    todo = [p for p in roots if alive(p)]
    while todo:
        for child in children.get(todo.pop().pid, []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _signal(p: Proc, sig: signal.Signals) -> None:
    if alive(p):
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
            os.kill(p.pid, sig)


def kill_trees(roots: Iterable[Proc], timeout: float = 10.0) -> None:
    """SIGKILL ``roots`` and everything below them, and wait until they are dead. They are
    stopped first, until no new child appears, so that none forks one while they are killed."""
    tree = {p for p in roots if alive(p)}
    while True:
        for p in tree:
            _signal(p, signal.SIGSTOP)
        grown = tree | descendants(tree)
        if grown == tree:
            break
        tree = grown
    for p in tree:
        _signal(p, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while left := [p for p in tree if alive(p)]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"still alive after SIGKILL: {left}")
        time.sleep(0.01)
