"""Moving a mount inside a running sandbox, from outside it (Linux).

A sandboxed pooled kernel's cwd is the root of the bind mount of its working directory.
``getcwd`` names a directory from where its mount is mounted, so moving that mount
(``MS_MOVE``) to the session's path inside the kernel's mount namespace, at hand-out and before
any user's code has run there, makes that path the kernel's cwd with nothing run in the kernel.
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import os
import subprocess
import threading

from hearth.sandbox.launch import HELPER_ENV
from hearth.sandbox.procs import init_of

__all__ = ["MoveFailed", "move_command", "move_mount"]

_NS_GET_USERNS = 0xB701  # _IO(0xb7, 0x1), linux/nsfs.h
_CLONE_FS = 0x200
_CLONE_NEWNS = 0x20000
_MS_MOVE = 0x2000
_libc = ctypes.CDLL(None, use_errno=True)


class MoveFailed(OSError):
    """The mount could not be moved (the message says why)."""


def move_command(mount_ns: int, user_ns: int, source: str, target: str) -> list[str]:
    """The argv that moves the mount at ``source`` to ``target`` in the mount namespace open
    as descriptor ``mount_ns``, with the powers of the user namespace ``user_ns`` (pure)."""
    return [
        "nsenter",
        f"--mount=/proc/self/fd/{mount_ns}",
        f"--user=/proc/self/fd/{user_ns}",
        "--preserve-credentials",
        *("mount", "--no-mtab", "--move", "--", source, target),
    ]


async def move_mount(outer: int, source: str, target: str) -> None:
    """Move the mount at ``source`` to ``target`` (an existing directory) inside the sandbox
    whose outer bwrap is ``outer``; paths as the sandbox sees them. The namespace is that of
    the sandbox's init (the outer bwrap stays in the host's).

    Entering a mount namespace (``setns``) needs a thread that shares no file-system state with
    others, and the capabilities of the user namespace that owns it:

    - a root host owns the sandbox's mount namespace already: a throwaway thread unshares its
      file-system state, enters the namespace, moves the mount and ends (namespaces are per
      thread: nothing of the move outlives it). About 0.2 ms;
    - a plain user's host must also enter the user namespace that owns it (``NS_GET_USERNS``),
      which a multi-threaded process may not: a child does it all (:func:`move_command`), about
      3 ms. That user namespace is not the one the sandbox's processes are in: bwrap maps uid 0
      in a first one (to mount ``/dev``'s devpts) and runs the session in a second, nested one,
      which has no power over the mounts.
    """
    init = init_of(outer)
    if init is None:
        raise MoveFailed(f"the sandbox of process {outer} has no init: it is gone")
    what = f"moving {source} to {target} in the sandbox failed"
    fds: list[int] = []
    try:
        mount_ns = os.open(f"/proc/{init}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        fds.append(mount_ns)
        owner = fcntl.ioctl(mount_ns, _NS_GET_USERNS)
        fds.append(owner)
        if _same(os.fstat(owner), os.stat("/proc/self/ns/user")):
            _move_in_a_thread(mount_ns, source, target)
            return
        child = await asyncio.to_thread(  # subprocess.run: a vfork, not a copy of the host
            subprocess.run,
            move_command(mount_ns, owner, source, target),
            env=HELPER_ENV,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=fds,
        )
    except OSError as exc:
        raise MoveFailed(f"{what}: {exc}") from exc
    finally:
        for fd in fds:
            os.close(fd)
    if child.returncode != 0:
        why = child.stderr.decode(errors="replace").strip() or f"status {child.returncode}"
        raise MoveFailed(f"{what}: {why}")


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _move_in_a_thread(mount_ns: int, source: str, target: str) -> None:
    """The move, by a new thread that ends with it (a pool's would be reused), joined at once:
    it takes three system calls."""
    errors: list[OSError] = []

    def move() -> None:
        try:
            _check("unshare", _libc.unshare(_CLONE_FS))
            _check("setns", _libc.setns(mount_ns, _CLONE_NEWNS))
            _check("mount", _libc.mount(source.encode(), target.encode(), None, _MS_MOVE, None))
        except OSError as exc:
            errors.append(exc)

    thread = threading.Thread(target=move, name="hearth-mount-move", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def _check(step: str, result: int) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{step}: {os.strerror(errno)}")
