"""The sandbox in force: what every session process is started in (SPEC §7).

Built once at start-up from the settings and what the machine offers (bwrap, cgroups, libseccomp,
root or not), then asked for a :class:`Prepared` launch per process: a terminal's shell or a
kernel.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from hearth.config import Settings
from hearth.errors import RLIMITS_ONLY, UNSANDBOXED_USERS, SandboxUnavailable
from hearth.fds import session_nofile
from hearth.sandbox.accounts import Account, AccountFiles
from hearth.sandbox.cgroups import Cgroups, SessionCgroup, read_plan
from hearth.sandbox.launch import HELPER_ENV, Bind, Launch, Limits, command

# The disk and seccomp modules are the session host's alone: the web tier, which imports this
# module for its types, loads neither.
if TYPE_CHECKING:
    from hearth.sandbox.disk import Volume

__all__ = [
    "KERNEL_RUNTIME",
    "UNSANDBOXED_USERS",
    "Prepared",
    "Sandbox",
    "SandboxUnavailable",
    "system_view",
]

log = logging.getLogger("hearth.sandbox")

SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
SEARCH_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
KERNEL_UID_OFFSET = 100_000  # terminal users: base+1 …; kernels: base+100000 …
SCREEN_MODEL_UID_OFFSET = 0  # the screen model: base itself
# A kernel's runtime directory is also seen here, inside its sandbox: its channels' Unix sockets
# get a short path there, whatever the data directory's (a socket's path fits in 107 bytes).
KERNEL_RUNTIME = "/run/hearth-kernel"

LimitsMode = Literal["cgroup2", "cgroup1", "rlimit", "none"]


@dataclass(frozen=True, slots=True)
class Prepared:
    """One process's launch, ready for a spawner: ``command(argv)``, its env and cwd."""

    launch: Launch
    cgroup: SessionCgroup | None
    memory_limit: int

    @property
    def sandboxed(self) -> bool:
        return self.launch.bubblewrap

    @property
    def env(self) -> dict[str, str]:
        """The session's environment (set inside, by the command's last step)."""
        return dict(self.launch.env)

    @property
    def spawn_env(self) -> dict[str, str]:
        """The environment the spawner gives the command: the helpers' only, when sandboxed."""
        return dict(HELPER_ENV) if self.launch.bubblewrap else dict(self.launch.env)

    def command(self, argv: Sequence[str]) -> list[str]:
        return command(dataclasses.replace(self.launch, argv=list(argv)))

    def hand_over(self, path: Path) -> None:
        """Give a file the server wrote for the session to the session's uid."""
        if self.launch.bubblewrap and self.launch.uid is not None:
            os.chown(path, self.launch.uid, self.launch.gid or self.launch.uid)

    def oom_kills(self) -> int:
        return self.cgroup.oom_kills() if self.cgroup is not None else 0

    def release(self, tries: int = 20) -> None:
        """Remove the cgroup; the sandbox's last processes may take a moment to die, so
        this retries from the event loop (every 0.1 s) when there is one."""
        if self.cgroup is None:
            return
        if self.cgroup.remove(last_try=tries <= 1) or tries <= 1:
            return
        try:
            asyncio.get_running_loop().call_later(0.1, self.release, tries - 1)
        except RuntimeError:
            self.cgroup.remove()


def system_view(
    paths: Sequence[str], python: Sequence[str], exists: Mapping[str, str | None]
) -> tuple[list[Bind], dict[str, str]]:
    """Read-only binds and symlinks that show the system and Python to a session (pure).

    ``exists`` maps a path to its symlink target, ``""`` for a real directory, None if absent."""
    binds: list[Bind] = []
    links: dict[str, str] = {}
    for path in paths:
        target = exists.get(path)
        if target is None:
            continue
        if target:
            links[path] = target
        else:
            binds.append(Bind(path))
    covered = [b.source for b in binds]
    for path in python:
        if not any(Path(path).is_relative_to(c) for c in covered):
            binds.append(Bind(path))
            covered.append(path)
    return binds, links


def hidden_under(binds: Sequence[Bind], private: Sequence[Path]) -> list[str]:
    """The private paths (the data directory, config files) that a bind would show (pure)."""
    return [str(p) for p in private if any(p.is_relative_to(b.source) for b in binds)]


def _within(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _probe(path: str) -> str | None:
    if os.path.islink(path):
        return os.readlink(path)
    return "" if os.path.isdir(path) else None


class Sandbox:
    """Kind (bubblewrap or none), limits (cgroup2, cgroup1, rlimit or none) and seccomp filter
    (on or off) in force. ``seccomp``: the filter's BPF program, for bwrap to load."""

    def __init__(
        self,
        settings: Settings,
        *,
        bubblewrap: bool,
        cgroups: Cgroups | None,
        secret_files: Sequence[Path] = (),
        volume: Volume | None = None,
        seccomp: bytes | None = None,
    ) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir.expanduser().resolve()
        self.bubblewrap = bubblewrap
        self.root = os.geteuid() == 0
        self.limits = Limits(
            settings.session_memory_limit, settings.session_pids_limit, settings.session_cpu_limit
        )
        self._cgroups = cgroups
        self.volume = volume  # where sessions write, with each user's disk limit
        self._open_files = session_nofile(settings.session_nofile_limit)
        self.limits_mode: LimitsMode = (
            "none"
            if not self.limits.any
            else cgroups.layout.version
            if cgroups is not None
            else "rlimit"
        )
        python = sorted({sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix})
        self._system, self._links = system_view(
            SYSTEM_PATHS, python, {p: _probe(p) for p in SYSTEM_PATHS}
        )
        private = [self.data_dir, *(p.resolve() for p in secret_files)]
        hidden = hidden_under(self._system, private)
        self._hide = [h for h in hidden if Path(h) == self.data_dir or Path(h).is_dir()]
        self._mask = [h for h in hidden if h not in self._hide]
        self._accounts = AccountFiles(self.data_dir / "sandbox" / "etc")
        self._seccomp = ""  # the filter's file, under the data dir: no session sees it
        if bubblewrap and seccomp is not None:
            path = self.data_dir / "sandbox" / "seccomp.bpf"
            from hearth.sandbox.seccomp import write_filter

            write_filter(seccomp, path)
            self._seccomp = str(path)

    @classmethod
    def unconfined(cls, settings: Settings) -> Sandbox:
        """No sandbox and no limits (for a manager built without one, in tests)."""
        plain = settings.model_copy(
            update={
                "session_memory_limit": 0,
                "session_pids_limit": 0,
                "session_cpu_limit": 0,
                "session_nofile_limit": 0,
            }
        )
        return cls(plain, bubblewrap=False, cgroups=None)

    def close(self) -> None:
        """At shutdown, once every session has ended: the cgroups left empty go."""
        if self._cgroups is not None:
            self._cgroups.close()
        if self.volume is not None:
            self.volume.close()

    @property
    def rlimits_only(self) -> bool:
        """A plain user's sandboxes with limits and no cgroup to hold them: the sessions of
        every user share the server's uid, and its per-uid kernel limits (SPEC §7.1)."""
        return self.bubblewrap and not self.root and self.limits_mode == "rlimit"

    @property
    def kind(self) -> str:
        return "bubblewrap" if self.bubblewrap else "none"

    @property
    def disk_limit(self) -> str:
        """How ``session_disk_limit`` is enforced: ``"qgroup"`` (btrfs quota groups) or
        ``"none"``."""
        return "qgroup" if self.volume is not None and self.volume.limit else "none"

    @property
    def seccomp(self) -> bool:
        return bool(self._seccomp)

    def status(self) -> dict[str, Any]:
        return {
            "sandbox": self.kind,
            "limits": self.limits_mode,
            "seccomp": "on" if self.seccomp else "off",
            "disk_limit": self.disk_limit,
        }

    def describe(self) -> dict[str, Any]:
        """What the start-up log says."""
        return {
            **self.status(),
            "network": self.settings.session_network,
            "memory_limit": self.limits.memory,
            "pids_limit": self.limits.pids,
            "cpu_limit": self.limits.cpu,
            "disk_limit_bytes": self.volume.limit if self.volume else 0,
            "nofile_limit": self._open_files[1] or "the server's",
            "uids": f"from {self.settings.sandbox_uid_base}" if self.root else "the server's",
        }

    # -- launches ---------------------------------------------------------------------------

    def _prepare(
        self,
        name: str,
        *,
        env: Mapping[str, str],
        cwd: Path,
        binds: Sequence[Bind],
        uid: int | None,
        terminal: bool,
        entered: SessionCgroup | None = None,
    ) -> Prepared:
        cgroup = entered
        if cgroup is None and self._cgroups is not None:
            cgroup = self._cgroups.create(name, self.limits)
        rlimits = self.limits if self.limits_mode == "rlimit" else None
        launch = Launch(
            argv=[],
            env=env,
            cwd=str(cwd),
            system=self._system,
            links=self._links,
            hide=self._hide,
            mask=self._mask,
            binds=binds,
            uid=uid if self.root else None,
            user_namespace=not self.root,
            network=self.settings.session_network,
            terminal=terminal,
            cgroup_procs=cgroup.procs if cgroup is not None and entered is None else (),
            rlimits=rlimits,
            open_files=self._open_files[0],
            open_files_hard=self._open_files[1],
            bubblewrap=self.bubblewrap,
            seccomp=self._seccomp,
        )
        return Prepared(launch, cgroup, self.limits.memory)

    @property
    def parks(self) -> bool:
        """Terminals start faster from a process parked in its cgroup ahead (see
        :mod:`hearth.sandbox.parked`): sandboxed, with cgroups."""
        return self.bubblewrap and self._cgroups is not None

    def spare_cgroup(self) -> SessionCgroup:
        """A session cgroup for a parked process, before anyone asks for the session."""
        assert self._cgroups is not None
        return self._cgroups.create(f"t-spare-{secrets.token_hex(4)}", self.limits)

    def make_home(self, home: Path, uid: int) -> None:
        """The home of the user whose terminals run as ``uid``: a subvolume in their disk quota
        group where the limit is enforced (``uid`` names the group: one per user)."""
        if self.volume is not None:
            home.parent.mkdir(parents=True, exist_ok=True)
            self.volume.make_dir(home, mode=0o700)
            self.volume.give(uid, home)
        home.mkdir(parents=True, exist_ok=True, mode=0o700)

    def terminal_uid(self, index: int) -> int:
        return self.settings.sandbox_uid_base + 1 + index

    def kernel_uid(self, slot: int) -> int:
        return self.settings.sandbox_uid_base + KERNEL_UID_OFFSET + slot

    def terminal(
        self,
        *,
        user: str,
        session_id: str,
        uid: int,
        home: Path,
        cwd: Path,
        shell: str,
        extra_env: Mapping[str, str],
        entered: SessionCgroup | None = None,
    ) -> Prepared:
        """A terminal of ``user``: their home is writable, ``$HOME`` and the default cwd.
        ``entered``: the cgroup a parked process of it is in already."""
        self._own(home, uid)
        env = self._environment(home=home, user=user, shell=shell, extra=extra_env)
        env["TERM"] = "xterm-256color"
        env.setdefault("COLORTERM", "truecolor")
        binds = [Bind(str(home), writable=True)]
        binds += self._account(Account(user, uid, str(home), shell))
        return self._prepare(
            f"t-{user}-{session_id}",
            env=env,
            cwd=cwd,
            binds=binds,
            uid=uid,
            terminal=True,
            entered=entered,
        )

    def screen_model(self, node: Path, script: Path) -> Prepared:
        """The screen model's Node.js (it parses every session's output, so it is treated as
        hostile as they are): as a uid of its own, without network, nothing writable, and of
        the server's files only its script (and ``node`` where it is outside the system's)."""
        binds = [Bind(str(script))]
        if not any(_within(str(node), bind.target) for bind in self._system):
            binds.append(Bind(str(node)))
        launch = Launch(
            argv=[],
            env={"PATH": SEARCH_PATH, "HOME": "/tmp", "LANG": "C.UTF-8"},
            cwd="/tmp",
            system=self._system,
            links=self._links,
            hide=self._hide,
            mask=self._mask,
            binds=binds,
            uid=self.settings.sandbox_uid_base + SCREEN_MODEL_UID_OFFSET if self.root else None,
            user_namespace=not self.root,
            network="none",
            bubblewrap=self.bubblewrap,
            seccomp=self._seccomp,
        )
        return Prepared(launch, None, 0)

    def kernel(
        self,
        *,
        key: str,
        uid: int,
        cwd: Path,
        runtime_dir: Path,
        env: Mapping[str, str],
        views: Sequence[Bind] = (),
    ) -> Prepared:
        """A kernel: its working directory and runtime directory (connection file, and its
        channels' sockets: also at :data:`KERNEL_RUNTIME`) only."""
        self._own(cwd, uid)
        self._own(runtime_dir, uid, recursive=True)
        clean = self._environment(home=Path("/tmp"), user="kernel", shell="/bin/sh", extra={})
        clean.update(env)
        binds = [
            Bind(str(cwd), writable=True),
            Bind(str(runtime_dir), writable=True),
            Bind(str(runtime_dir), KERNEL_RUNTIME, writable=True),
            *views,
        ]
        binds += self._account(Account("kernel", uid, "/tmp", "/bin/sh"))
        prepared = self._prepare(
            f"k-{key}", env=clean, cwd=cwd, binds=binds, uid=uid, terminal=False
        )
        # jupyter_client tells the kernel the server's pid to watch; inside its own PID
        # namespace the kernel's parent is never that pid, and it would exit at once.
        unset = (*prepared.launch.unset_env, "JPY_PARENT_PID")
        return dataclasses.replace(
            prepared, launch=dataclasses.replace(prepared.launch, unset_env=unset)
        )

    def _environment(
        self, *, home: Path, user: str, shell: str, extra: Mapping[str, str]
    ) -> dict[str, str]:
        if not self.bubblewrap:  # no sandbox: the server's environment minus its settings
            env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
            env.update(extra)
            return env
        env = {
            "HOME": str(home),
            "USER": user,
            "LOGNAME": user,
            "SHELL": shell,
            "PATH": SEARCH_PATH,
            "LANG": os.environ.get("LANG", "C.UTF-8"),
        }
        env.update(extra)
        return env

    def _account(self, account: Account) -> list[Bind]:
        """The session's uid named in /etc/passwd and /etc/group (as root: a uid of its own; a
        plain server's sessions are its own uid, which the system names already)."""
        if not (self.root and self.bubblewrap):
            return []
        passwd, group = self._accounts.files(account)
        return [Bind(str(passwd), "/etc/passwd"), Bind(str(group), "/etc/group")]

    def _own(self, path: Path, uid: int, recursive: bool = False) -> None:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not (self.root and self.bubblewrap):
            return
        os.chown(path, uid, uid)
        if recursive:
            for folder, dirs, files in os.walk(path):
                for name in dirs + files:
                    os.chown(os.path.join(folder, name), uid, uid, follow_symlinks=False)


# -- choosing what is in force ------------------------------------------------------------------


def _bwrap_works(bwrap: str, root: bool) -> str:
    """'' if bwrap can build a sandbox here, else why not."""
    args = [bwrap, "--ro-bind", "/", "/", "--unshare-pid", "--proc", "/proc", "--dev", "/dev"]
    if not root:
        args.append("--unshare-user")
    try:
        done = subprocess.run([*args, "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return "" if done.returncode == 0 else done.stderr.decode(errors="replace").strip()


def open_sandbox(
    settings: Settings, secret_files: Sequence[Path] = (), users: int | None = None
) -> Sandbox:
    """The sandbox for ``settings``, or SandboxUnavailable naming the fix. ``users``: how many
    users the web tier serves (default: those of ``settings.tokens``)."""
    root = os.geteuid() == 0
    bubblewrap = False
    if settings.sandbox != "none":
        bwrap = shutil.which("bwrap")
        why = "bwrap is not installed" if bwrap is None else _bwrap_works(bwrap, root)
        if why and settings.sandbox == "bubblewrap":
            raise SandboxUnavailable(
                f"sandbox = 'bubblewrap' but {why}. Install bubblewrap (Debian: apt-get install "
                "bubblewrap) and allow unprivileged user namespaces, or run as root."
            )
        if why:
            log.warning("no sandbox", extra={"reason": why})
        bubblewrap = not why
    served = len(set(settings.tokens.values())) if users is None else users
    if not bubblewrap and served > 1 and settings.sandbox != "none":
        raise SandboxUnavailable(UNSANDBOXED_USERS)
    # opened even with no limit set: each session's cgroup is its equal share of the CPU
    cgroups = _open_cgroups(settings)
    seccomp = _seccomp_filter() if bubblewrap else None
    sandbox = Sandbox(
        settings,
        bubblewrap=bubblewrap,
        cgroups=cgroups,
        secret_files=secret_files,
        seccomp=seccomp,
    )
    if served > 1 and sandbox.rlimits_only and settings.session_limits != "rlimit":
        raise SandboxUnavailable(RLIMITS_ONLY)
    from hearth.sandbox.disk import VolumeUnavailable, open_volume

    try:
        sandbox.volume, why = open_volume(
            settings.data_dir.expanduser().resolve(), settings.session_disk_limit, served
        )
    except VolumeUnavailable as exc:
        sandbox.close()
        raise SandboxUnavailable(str(exc)) from exc
    if sandbox.volume is None and settings.session_disk_limit:
        log.warning("no disk limit", extra={"reason": why})
    return sandbox


def _seccomp_filter() -> bytes | None:
    """The sessions' seccomp filter (built once per process: at start-up), or None and a
    warning: sessions then run without one, and ``/healthz`` says ``"seccomp": "off"``."""
    from hearth.sandbox.seccomp import SeccompUnavailable, compile_filter, rules

    try:
        return compile_filter(rules())
    except SeccompUnavailable as exc:
        log.warning("no seccomp filter", extra={"reason": str(exc)})
        return None


def _open_cgroups(settings: Settings) -> Cgroups | None:
    data_dir = str(settings.data_dir.expanduser().resolve())
    tag = hashlib.sha256(data_dir.encode()).hexdigest()[:8]
    try:
        layout = read_plan(tag)
        if layout is None:
            log.warning("limits by rlimit", extra={"reason": "no cgroup memory or pids controller"})
            return None
        cgroups = Cgroups(layout)
        cgroups.open()
        return cgroups
    except OSError as exc:
        log.warning("limits by rlimit", extra={"reason": f"cgroups not writable: {exc}"})
        return None
