"""A session's launch description, and the command line that starts it (pure: no I/O).

A :class:`Launch` says what runs and what it may touch: its argv, environment, working
directory, the paths it sees (read-only or writable), the uid it runs as, its network and the
cgroup it enters. :func:`command` turns it into one argv for any spawner (a PTY, jupyter_client's
``Popen``), so every kind of session is sandboxed the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Literal

__all__ = ["HELPER_ENV", "SECCOMP_FD", "Bind", "Launch", "Limits", "command"]

Network = Literal["host", "none"]

# The whole environment of the helpers (sh, bwrap, prlimit, setsid, setpriv, env): system
# programs found in system directories, nothing a session can name.
HELPER_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}

# Enter each cgroup, then become the rest of the argv ("$@").
_ENTER_CGROUPS = (
    'for f do case $f in --) shift; break;; esac; echo 0 > "$f" || exit 126; shift; done; exec "$@"'
)
# bwrap reads the seccomp filter from this descriptor; the first argument names its file.
SECCOMP_FD = 9
_OPEN_FILTER = f'exec {SECCOMP_FD}<"$1" || exit 126; shift; '


@dataclass(frozen=True, slots=True)
class Bind:
    """``source`` seen at ``dest`` inside (the same path unless told otherwise)."""

    source: str
    dest: str = ""
    writable: bool = False

    @property
    def target(self) -> str:
        return self.dest or self.source


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-session limits; 0 means none."""

    memory: int = 0  # bytes
    pids: int = 0
    cpu: float = 0.0  # cores

    @property
    def any(self) -> bool:
        return bool(self.memory or self.pids or self.cpu)


@dataclass(frozen=True, slots=True)
class Launch:
    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: str
    system: Sequence[Bind] = ()  # read-only system paths (and symlinks, see ``links``)
    links: Mapping[str, str] = field(default_factory=dict)  # path -> symlink target inside
    hide: Sequence[str] = ()  # paths covered by an empty tmpfs (the data dir under /opt, …)
    mask: Sequence[str] = ()  # files covered by /dev/null (a config file with tokens)
    binds: Sequence[Bind] = ()  # the session's own paths, after the hiding
    uid: int | None = None  # run as this uid (the server is root); None: the server's own
    gid: int | None = None
    user_namespace: bool = False  # the server is not root: bwrap maps its uid in a user ns
    network: Network = "host"
    terminal: bool = False  # the PTY on stdin becomes the session's controlling terminal
    cgroup_procs: Sequence[str] = ()  # ``cgroup.procs`` files to enter before anything runs
    rlimits: Limits | None = None  # only where no cgroup holds the limits
    open_files: int = 0  # the session's soft RLIMIT_NOFILE (the server raised its own); 0: its
    open_files_hard: int = 0  # and its hard one (``session_nofile_limit``); 0: the spawner's
    bubblewrap: bool = True  # False: only the limits (setting ``sandbox = "none"``)
    seccomp: str = ""  # the seccomp filter's file (a BPF program) for bwrap; "": none
    unset_env: Sequence[str] = ()  # what the spawner adds to ``env`` that must not go in


def _under(path: str, top: str) -> bool:
    """``path`` is ``top`` or inside it (both absolute and normal: string checks, as pathlib's
    cost a millisecond per terminal start)."""
    return path == top or path.startswith(top.rstrip("/") + "/")


def _ancestors(path: str) -> list[str]:
    """``/a/b/c`` → ``["/a", "/a/b"]``: the parents below ``/``, outermost first."""
    parts = PurePosixPath(path).parts[1:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def _parents(targets: list[str], made: set[str], filled: list[str]) -> list[str]:
    """``--dir`` for the missing parents of ``targets``, world-traversable (bwrap would make them
    0700, which a session running as another uid could not pass)."""
    args: list[str] = []
    for target in targets:
        for path in _ancestors(target):
            if path in made:
                continue
            made.add(path)
            if any(_under(path, m) for m in filled):
                continue  # exists already: a mount point, or inside a bound system path
            args += ["--perms", "0755", "--dir", path]
    return args


def _bwrap(launch: Launch, bwrap: str) -> list[str]:
    args = [bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    args += ["--clearenv", "--setenv", "PATH", HELPER_ENV["PATH"]]
    args += ["--unshare-cgroup-try"]
    if launch.seccomp:
        args += ["--seccomp", str(SECCOMP_FD)]
    if launch.user_namespace:
        args.append("--unshare-user")
    if launch.network == "none":
        args.append("--unshare-net")
    args += ["--hostname", "hearth"]
    for name in launch.unset_env:
        args += ["--unsetenv", name]
    # /dev/shm: POSIX shared memory and semaphores (multiprocessing's locks), the sandbox's own
    # and open to its uid (bwrap's --dev makes it root's, 0755)
    # Where no cgroup charges a tmpfs's pages to the session's memory, each is as big as that.
    size = (
        ["--size", str(launch.rlimits.memory)] if launch.rlimits and launch.rlimits.memory else []
    )
    args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", *size, "--tmpfs", "/dev/shm"]
    # /tmp first: a system path under it (a venv in a clone under /tmp) is bound into the tmpfs
    args += ["--perms", "1777", *size, "--tmpfs", "/tmp"]
    made: set[str] = {"/proc", "/dev", "/tmp"}
    filled: list[str] = []  # system paths: their whole tree exists
    for bind in launch.system:
        args += _parents([bind.target], made, filled)
        args += ["--ro-bind-try", bind.source, bind.target]
        filled.append(bind.target)
        made.add(bind.target)
    for path, target in sorted(launch.links.items()):
        args += ["--symlink", target, path]
    # the hidden paths are empty tmpfs mounts: nothing under them exists any more
    filled = [f for f in filled if not any(_under(f, h) for h in launch.hide)]
    made = {m for m in made if not any(_under(m, h) for h in launch.hide)} | set(launch.hide)
    for path in launch.hide:
        args += ["--tmpfs", path]
    for path in launch.mask:
        args += ["--ro-bind", "/dev/null", path]
    # Parents first: a bind inside another one must be mounted after it.
    for bind in sorted(launch.binds, key=lambda b: PurePosixPath(b.target).parts):
        args += _parents([bind.target], made, filled)
        args += ["--bind" if bind.writable else "--ro-bind", bind.source, bind.target]
        made.add(bind.target)
    args += ["--chdir", launch.cwd, "--"]
    return args


def _inside(launch: Launch, setsid: str, setpriv: str, env: str) -> list[str]:
    args: list[str] = []
    if launch.terminal:
        args += [setsid, "--ctty"]
    if launch.uid is not None:
        gid = launch.uid if launch.gid is None else launch.gid
        args += [setpriv, f"--reuid={launch.uid}", f"--regid={gid}", "--clear-groups"]
        args += ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    unset = set(launch.unset_env)
    pairs = [f"{k}={v}" for k, v in launch.env.items() if k not in unset]
    return [*args, env, "-i", *pairs, *launch.argv]


def _prlimit(limits: Limits | None, open_files: tuple[int, int], prlimit: str) -> list[str]:
    args = [prlimit]
    if limits is not None and limits.memory:
        args.append(f"--as={limits.memory}")
    if limits is not None and limits.pids:
        args.append(f"--nproc={limits.pids}")
    if any(open_files):
        args.append("--nofile={}:{}".format(*(n or "" for n in open_files)))
    return [*args, "--"] if len(args) > 1 else []


def command(
    launch: Launch,
    *,
    bwrap: str = "bwrap",
    sh: str = "/bin/sh",
    prlimit: str = "prlimit",
    setsid: str = "setsid",
    setpriv: str = "setpriv",
    env: str = "env",
) -> list[str]:
    """The whole argv that starts ``launch`` in its sandbox. Sandboxed, the spawner gives it
    :data:`HELPER_ENV` and the session's environment is set last, by ``env -i``; unsandboxed
    (``sandbox = "none"``), the spawner gives it ``launch.env``. Sandboxed, it is::

        sh -c 'open the filter, enter the cgroup'  bwrap <namespaces, mounts, filter>
            [prlimit …]  [setsid --ctty]  [setpriv …]  env -i … argv

    - ``sh`` opens the seccomp filter's file (:mod:`hearth.sandbox.seccomp`) on descriptor 9
      for bwrap's ``--seccomp 9`` (the spawners pass only 0-2, and dash names no descriptor
      above 9): bwrap loads the filter last, so it holds for every process of the session and
      for nothing of bwrap's own setup. ``sh`` also writes ``0`` into each ``cgroup.procs``
      before it execs the rest, so no process of the session runs outside its cgroup;
    - ``prlimit`` inside the namespaces: the limits where no cgroup can be written (a user
      namespace's process count is checked against its creator's limit, where every sandbox of
      a plain host's uid counts; set inside, it counts this sandbox only), and the open-files
      limit, soft and hard (``session_nofile_limit``: a session can't raise it again);
    - ``bwrap`` builds the mount, PID, IPC and UTS namespaces (user and network ones as asked)
      with an empty root; it never forwards signals, so nobody signals it
      (:mod:`hearth.sandbox.procs`);
    - ``setsid --ctty``, for terminals: the session's shell, not bwrap, owns the PTY, so a
      hangup reaches the shell and never kills bwrap;
    - ``setpriv`` drops root to the session's uid when the host runs as root, with no
      capability and no new privileges;
    - ``env -i`` last, as the session's uid: a session's ``env`` (``PATH``, ``LD_PRELOAD``, …)
      reaches no helper that runs as root or as the host.
    """
    argv: list[str] = []
    if launch.bubblewrap and launch.seccomp:
        script = _OPEN_FILTER + _ENTER_CGROUPS
        argv += [sh, "-c", script, "sh", launch.seccomp, *launch.cgroup_procs, "--"]
    elif launch.cgroup_procs:
        argv += [sh, "-c", _ENTER_CGROUPS, "sh", *launch.cgroup_procs, "--"]
    rlimits = _prlimit(launch.rlimits, (launch.open_files, launch.open_files_hard), prlimit)
    if not launch.bubblewrap:
        return argv + rlimits + list(launch.argv)
    if launch.argv and "=" in launch.argv[0]:
        raise ValueError(f"a program path with '=' can't follow env: {launch.argv[0]!r}")
    return argv + _bwrap(launch, bwrap) + rlimits + _inside(launch, setsid, setpriv, env)
