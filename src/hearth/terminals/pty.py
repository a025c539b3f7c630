"""A child process on a pseudo-terminal, in a session of its own.

The child is a session leader with the PTY as its controlling terminal, so job control works and
the whole session can be torn down: SIGHUP to the process group and to every process of the
session, a bounded grace, SIGKILL, reap.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import shutil
import signal
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from hearth.sandbox import Prepared
from hearth.sandbox.cgroups import SessionCgroup
from hearth.sandbox.parked import park_argv, resume_script
from hearth.sandbox.procs import kill_sandbox, signal_sandbox

__all__ = ["ParkedPty", "PtyProcess", "exit_status"]

log = logging.getLogger("hearth.terminals.pty")


def _become_terminal_owner() -> None:  # runs in the child, after setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


# util-linux's `setsid --ctty` makes the child a session leader owning the PTY, then execs the
# command. Without a preexec_fn, subprocess can start the child with vfork instead of copying the
# whole server (measured: ~4.5 ms of a create, during which the event loop is blocked).
_SETSID = shutil.which("setsid")


def set_window_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def exit_status(returncode: int) -> int:
    """A shell's view of how a process ended: its code, or 128 + the signal that killed it."""
    return 128 - returncode if returncode < 0 else returncode


class ParkedPty:
    """A PTY with a process parked on it, in a fresh session cgroup, waiting for its command
    (see :mod:`hearth.sandbox.parked`). Used once: :meth:`PtyProcess.spawn` or :meth:`discard`."""

    def __init__(self, cgroup: SessionCgroup) -> None:
        self.cgroup = cgroup
        master, slave = os.openpty()
        read, self._pipe = os.pipe()
        try:
            self.popen = subprocess.Popen(
                park_argv(cgroup.procs),
                stdin=read,  # the command comes here; then the PTY takes its place
                stdout=slave,
                stderr=slave,
                cwd="/",
                env={},
                close_fds=True,
                start_new_session=True,  # as bwrap's own: no terminal of its own, see spawn()
            )
        except BaseException:
            for fd in (master, self._pipe):
                os.close(fd)
            raise
        finally:
            os.close(slave)
            os.close(read)
        self.fd = master

    @property
    def waiting(self) -> bool:
        return self.popen.poll() is None

    def resume(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        """Hand the parked process its command; raises OSError if it is gone."""
        data = resume_script(argv, env).encode()
        try:
            while data:  # a pipe takes 64 KiB at once; a launch is a few KiB
                data = data[os.write(self._pipe, data) :]
        finally:
            self._close_pipe()

    def _close_pipe(self) -> None:
        if self._pipe >= 0:
            os.close(self._pipe)
            self._pipe = -1  # never closed twice: the number may be another file's by then

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._close_pipe()
        self.popen.kill()
        self.popen.wait()
        os.close(self.fd)
        self.cgroup.remove(last_try=True)


class PtyProcess:
    """The master side of a PTY and the process on its slave side.

    ``fd`` is the master, non-blocking; reading it is the owner's job. ``exited`` resolves to the
    exit status once the process is reaped.
    """

    def __init__(
        self, popen: subprocess.Popen[bytes], fd: int, launch: Prepared | None = None
    ) -> None:
        self._popen = popen
        self.launch = launch
        self.pid = popen.pid
        self.fd = fd
        self._loop = asyncio.get_running_loop()
        self.exited: asyncio.Future[int] = self._loop.create_future()
        self._pidfd = os.pidfd_open(self.pid)
        self._loop.add_reader(self._pidfd, self._on_exit)
        self.fd_closed = False
        self.oom_kills = 0  # processes the session's cgroup killed for memory, as of its exit

    @classmethod
    def spawn(
        cls,
        argv: Sequence[str],
        *,
        launch: Prepared | None = None,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        rows: int,
        cols: int,
        parked: ParkedPty | None = None,
    ) -> PtyProcess:
        """Start ``argv`` on a new PTY, in ``launch``'s sandbox if given (its env and cwd win),
        by ``parked`` if given (its PTY, and its cgroup, which ``launch`` must name as entered).
        Raises ``OSError`` (e.g. FileNotFoundError) if it can't."""
        if launch is not None:
            env, cwd = launch.env, Path(launch.launch.cwd)
        env = dict(os.environ if env is None else env)
        program = shutil.which(argv[0], path=env.get("PATH", os.defpath))
        if launch is not None:
            env = launch.spawn_env  # sandboxed: the helpers' only; the session's is set inside
        if program is None:
            raise FileNotFoundError(errno.ENOENT, "no such program", argv[0])
        inner = [program, *argv[1:]]
        if parked is not None:
            assert launch is not None and launch.sandboxed and not launch.launch.cgroup_procs
            set_window_size(parked.fd, rows, cols)
            parked.resume(launch.command(inner), env)
            os.set_blocking(parked.fd, False)
            return cls(parked.popen, parked.fd, launch)
        master, slave = os.openpty()
        try:
            set_window_size(slave, rows, cols)
            sandboxed = launch is not None and launch.sandboxed
            if sandboxed:
                # the shell takes the PTY inside the sandbox (setsid --ctty there); bwrap has a
                # session of its own without a terminal
                assert launch is not None
                command, use_setsid = launch.command(inner), True
            else:
                use_setsid = _SETSID is not None
                command = [_SETSID, "--ctty", *inner] if _SETSID else inner
                if launch is not None:
                    command = launch.command(command)  # only the limits
            popen = subprocess.Popen(
                command,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=cwd,
                env=env,
                close_fds=True,
                start_new_session=sandboxed or not use_setsid,
                preexec_fn=None if use_setsid else _become_terminal_owner,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        return cls(popen, master, launch)

    def resize(self, rows: int, cols: int) -> None:
        if not self.fd_closed:
            set_window_size(self.fd, rows, cols)  # the kernel sends SIGWINCH to the foreground

    def write(self, data: bytes) -> int:
        """Write what the PTY takes now; returns the count (0 when its input queue is full)."""
        try:
            return os.write(self.fd, data)
        except BlockingIOError:
            return 0

    def close_fd(self) -> None:
        """Close the master: the slave side sees a hangup."""
        if not self.fd_closed:
            self.fd_closed = True
            self._loop.remove_reader(self.fd)
            self._loop.remove_writer(self.fd)
            os.close(self.fd)

    @property
    def sandboxed(self) -> bool:
        return self.launch is not None and self.launch.sandboxed

    def signal_session(self, sig: int, asked: float | None = None) -> None:
        """Send ``sig`` to the process group and every other process of the child's session
        (in a sandbox: to every process of it; SIGKILL ends its whole PID namespace). ``asked``:
        when it was asked for (``time.monotonic()``), if earlier than now."""
        if self.sandboxed:
            if sig == signal.SIGKILL:
                kill_sandbox(self.pid)
            else:
                signal_sandbox(self.pid, sig)
            return
        for pid in _session_members(self.pid, asked) | {self.pid}:
            try:
                if pid == self.pid:
                    os.killpg(pid, sig)
                else:
                    os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    async def terminate(self, grace: float) -> int:
        """Ask (SIGHUP), wait ``grace`` seconds, force (SIGKILL), reap. Idempotent."""
        if not self.exited.done():
            log.info("hangup", extra={"pid": self.pid})
            asked = time.monotonic()  # scans /proc: off the loop, shared by the closes asked now
            await asyncio.to_thread(self.signal_session, signal.SIGHUP, asked)
            self.close_fd()
            try:
                await asyncio.wait_for(asyncio.shield(self.exited), grace)
            except TimeoutError:
                log.warning("kill after grace", extra={"pid": self.pid, "grace": grace})
        asked = time.monotonic()
        await asyncio.to_thread(self.signal_session, signal.SIGKILL, asked)  # the stragglers
        self.close_fd()
        return await self.exited

    def _on_exit(self) -> None:
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        returncode = self._popen.wait()
        if self.launch is not None:
            self.oom_kills = self.launch.oom_kills()
            self.launch.release()
        if not self.exited.done():
            self.exited.set_result(exit_status(returncode))


def _session_members(sid: int, asked: float | None = None) -> set[int]:
    """Pids whose session id is ``sid`` (Linux /proc); empty where /proc can't tell. A scan of
    /proc begun after this was asked for (``asked``, default now) serves it: closing thousands
    of terminals at once (``hearth shutdown``) scans /proc a few times, not once for each, and
    misses nothing."""
    global _scanned
    asked = time.monotonic() if asked is None else asked
    with _scanning:
        began, sessions = _scanned
        if began < asked:
            began = time.monotonic()
            sessions = _scan_sessions()
            _scanned = (began, sessions)
    return set(sessions.get(sid, ()))


def _scan_sessions() -> dict[int, set[int]]:
    """Every process's pid by its session id."""
    sessions: dict[int, set[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return sessions
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # Fields after the parenthesised command: state ppid pgrp session ...
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 3:
            sessions.setdefault(int(fields[3]), set()).add(int(name))
    return sessions


_scanning = threading.Lock()  # callers run in worker threads (the scan is off the loop)
_scanned: tuple[float, dict[int, set[int]]] = (float("-inf"), {})  # (when it began, what)


def is_eof(exc: OSError) -> bool:
    """EIO on a PTY master means every slave fd is closed: end of output."""
    return exc.errno == errno.EIO
