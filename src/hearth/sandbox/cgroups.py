"""A cgroup per session: where the session cgroups go and what they write (pure), and the thin
I/O that makes and removes them.

cgroup v2 is used when its tree offers the memory and pids controllers, v1 otherwise. Session
cgroups go under the host's own, in ``hearth-<tag>`` (named after the data directory, so two
servers never share one); in v2 a host that shares its cgroup's leaf first moves itself into
``hearth-<tag>/server``, since a cgroup with processes can't hand controllers to its children.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hearth.sandbox.launch import Limits

__all__ = ["CgroupLayout", "Cgroups", "SessionCgroup", "limit_files", "plan"]

log = logging.getLogger("hearth.sandbox")

Version = Literal["cgroup2", "cgroup1"]
CONTROLLERS = ("memory", "pids", "cpu")
CPU_PERIOD = 100_000  # µs
# Every session's cgroup gets the same CPU weight, whatever it runs (SPEC §7.1): 40 processes in
# one session share what one process in another gets. These are the kernels' defaults, written
# so that the cgroup is made in the cpu controller too.
CPU_WEIGHT_V2 = "100"
CPU_SHARES_V1 = "1024"


@dataclass(frozen=True, slots=True)
class CgroupLayout:
    version: Version
    bases: Mapping[str, str]  # controller ("" for v2's single tree) -> hearth's directory


def _own_paths(proc_self_cgroup: str) -> dict[str, str]:
    """``/proc/self/cgroup`` as {controller: path}; v2's line is under ``""``."""
    paths: dict[str, str] = {}
    for line in proc_self_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for name in controllers.split(",") if controllers else [""]:
            paths[name] = path
    return paths


def _mounts(proc_mounts: str) -> tuple[str | None, dict[str, str]]:
    """The cgroup2 mount point and the v1 mount point of each controller."""
    v2: str | None = None
    v1: dict[str, str] = {}
    for line in proc_mounts.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        point, kind, options = fields[1], fields[2], fields[3].split(",")
        if kind == "cgroup2" and v2 is None:
            v2 = point
        elif kind == "cgroup":
            for name in CONTROLLERS:
                if name in options:
                    v1.setdefault(name, point)
    return v2, v1


def plan(
    proc_self_cgroup: str, proc_mounts: str, v2_controllers: str, tag: str
) -> CgroupLayout | None:
    """Where session cgroups would go; None when neither version offers memory or pids::

        v2:  <mount><own cgroup>/hearth-<tag>/<session>/{memory.max, pids.max, cpu.max}
        v1:  <memory mount><own memory cgroup>/hearth-<tag>/<session>/memory.limit_in_bytes
             <pids mount><own pids cgroup>/hearth-<tag>/<session>/pids.max          (and cpu)

    ``v2_controllers`` is the content of ``cgroup.controllers`` of the server's v2 cgroup
    (empty when there is none)."""
    own = _own_paths(proc_self_cgroup)
    v2, v1 = _mounts(proc_mounts)
    available = set(v2_controllers.split())
    if v2 is not None and "" in own and {"memory", "pids"} <= available:
        return CgroupLayout("cgroup2", {"": _join(v2, own[""], f"hearth-{tag}")})
    bases = {c: _join(v1[c], own[c], f"hearth-{tag}") for c in CONTROLLERS if c in v1 and c in own}
    if "memory" in bases or "pids" in bases:
        return CgroupLayout("cgroup1", bases)
    return None


def _join(mount: str, path: str, leaf: str) -> str:
    return str(Path(mount) / path.lstrip("/") / leaf)


def limit_files(layout: CgroupLayout, limits: Limits) -> dict[str, list[tuple[str, str]]]:
    """What to write, per controller, into a session's cgroup for ``limits`` (in order): the
    limits set, and an equal CPU weight always."""
    writes: dict[str, list[tuple[str, str]]] = {}
    if layout.version == "cgroup2":
        files: list[tuple[str, str]] = []
        if limits.memory:
            files += [("memory.max", str(limits.memory)), ("memory.swap.max", "0")]
            files.append(("memory.oom.group", "0"))
        if limits.pids:
            files.append(("pids.max", str(limits.pids)))
        files.append(("cpu.weight", CPU_WEIGHT_V2))
        if limits.cpu:
            files.append(("cpu.max", f"{round(limits.cpu * CPU_PERIOD)} {CPU_PERIOD}"))
        writes[""] = files
        return writes
    if limits.memory and "memory" in layout.bases:
        # memsw (memory + swap) exists only with swap accounting; it must not be below memory
        writes["memory"] = [
            ("memory.limit_in_bytes", str(limits.memory)),
            ("memory.memsw.limit_in_bytes", str(limits.memory)),
        ]
    if limits.pids and "pids" in layout.bases:
        writes["pids"] = [("pids.max", str(limits.pids))]
    if "cpu" in layout.bases:
        writes["cpu"] = [("cpu.shares", CPU_SHARES_V1)]
        if limits.cpu:
            quota = round(limits.cpu * CPU_PERIOD)
            writes["cpu"] += [
                ("cpu.cfs_period_us", str(CPU_PERIOD)),
                ("cpu.cfs_quota_us", str(quota)),
            ]
    return writes


def oom_kills(text: str) -> int:
    """The ``oom_kill`` count of ``memory.events`` (v2) or ``memory.oom_control`` (v1)."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return 0


# -- I/O ---------------------------------------------------------------------------------------


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


@dataclass(frozen=True, slots=True)
class SessionCgroup:
    dirs: Mapping[str, Path]  # controller -> this session's directory
    version: Version

    @property
    def procs(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs.values()]

    def oom_kills(self) -> int:
        memory = self.dirs.get("" if self.version == "cgroup2" else "memory")
        if memory is None:
            return 0
        name = "memory.events" if self.version == "cgroup2" else "memory.oom_control"
        try:
            return oom_kills((memory / name).read_text())
        except OSError:
            return 0

    def remove(self, last_try: bool = True) -> bool:
        """Remove the directories once their processes are gone; False while some remain."""
        done = True
        for path in self.dirs.values():
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                done = False
                if last_try:
                    log.warning("cgroup not removed", extra={"path": str(path), "error": str(exc)})
        return done


class Cgroups:
    """Makes session cgroups under ``layout``; ``open()`` proves it can, or raises OSError."""

    def __init__(self, layout: CgroupLayout) -> None:
        self.layout = layout

    def open(self) -> None:
        for base in self.layout.bases.values():
            path = Path(base)
            path.mkdir(exist_ok=True)
            for stale in path.iterdir():  # sessions of a previous run, empty by now
                if stale.is_dir() and stale.name != "server":
                    with contextlib.suppress(OSError):
                        stale.rmdir()
            if self.layout.version == "cgroup2":
                self._delegate_v2(path)

    def _delegate_v2(self, base: Path) -> None:
        parent = base.parent
        available = set((parent / "cgroup.controllers").read_text().split())
        enable = " ".join(f"+{c}" for c in CONTROLLERS if c in available)
        try:
            _write(parent / "cgroup.subtree_control", enable)
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            # The server sits in the parent: move it into a leaf of its own, then retry.
            server = base / "server"
            server.mkdir(exist_ok=True)
            _write(server / "cgroup.procs", str(os.getpid()))
            _write(parent / "cgroup.subtree_control", enable)
        _write(base / "cgroup.subtree_control", enable)

    def close(self) -> None:
        """At shutdown: remove what is left empty (sessions' cgroups whose removal was still
        being retried, then Hearth's own). A v2 base holding the server's leaf stays."""
        for base in self.layout.bases.values():
            path = Path(base)
            with contextlib.suppress(OSError):
                for child in path.iterdir():
                    if child.is_dir() and child.name != "server":
                        with contextlib.suppress(OSError):
                            child.rmdir()
            with contextlib.suppress(OSError):
                path.rmdir()

    def create(self, name: str, limits: Limits) -> SessionCgroup:
        writes = limit_files(self.layout, limits)
        dirs: dict[str, Path] = {}
        for controller, base in self.layout.bases.items():
            if controller not in writes:
                continue
            path = Path(base) / name
            path.mkdir(exist_ok=True)
            dirs[controller] = path
            for file, value in writes[controller]:
                try:
                    _write(path / file, value)
                except FileNotFoundError:
                    continue  # e.g. memsw without swap accounting, memory.swap.max without swap
        return SessionCgroup(dirs, self.layout.version)


def read_plan(tag: str, proc: Path = Path("/proc")) -> CgroupLayout | None:
    """:func:`plan` for this machine."""
    own = (proc / "self" / "cgroup").read_text()
    mounts = (proc / "self" / "mounts").read_text()
    v2_controllers = ""
    v2, _ = _mounts(mounts)
    own_v2 = _own_paths(own).get("")
    if v2 is not None and own_v2 is not None:
        with contextlib.suppress(OSError):
            v2_controllers = (Path(v2) / own_v2.lstrip("/") / "cgroup.controllers").read_text()
    return plan(own, mounts, v2_controllers, tag)
