"""The seccomp filter of every sandboxed session (SPEC §7.1, "the kernel's attack surface").

Namespaces and a dropped uid keep a session from the host's files and processes, not from the
kernel's own interfaces, and a kernel bug is a way out of any namespace. The filter is a deny
list, as Flatpak's and Docker's default profiles: it takes away what sessions have no use for
and what such escapes have used (:func:`rules`, pure), and allows the rest, so compilers, ``pip``,
threads, Node.js and git work unchanged. :func:`compile_filter` makes the BPF program with
libseccomp; bwrap loads it (``--seccomp``) last before the session's own program.
"""

from __future__ import annotations

import errno
import logging
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Rule", "SeccompUnavailable", "compile_filter", "rules", "write_filter"]

log = logging.getLogger("hearth.sandbox")

LOW32 = 0xFFFF_FFFF

# The namespace flags of clone/unshare (<linux/sched.h>; os has them from Python 3.12 only).
CLONE_NEWTIME = 0x0000_0080  # in clone()'s flags these bits are the exit signal: unshare only
CLONE_NEWNS = 0x0002_0000
CLONE_NEWCGROUP = 0x0200_0000
CLONE_NEWUTS = 0x0400_0000
CLONE_NEWIPC = 0x0800_0000
CLONE_NEWUSER = 0x1000_0000
CLONE_NEWPID = 0x2000_0000
CLONE_NEWNET = 0x4000_0000
NAMESPACES = (
    CLONE_NEWNS,
    CLONE_NEWCGROUP,
    CLONE_NEWUTS,
    CLONE_NEWIPC,
    CLONE_NEWUSER,
    CLONE_NEWPID,
    CLONE_NEWNET,
)

TIOCSTI = 0x5412
TIOCLINUX = 0x541C
FS_IOC_FSSETXATTR = 0x401C_5820
# btrfs's ioctls (type 0x94) that make, drop or freeze a subvolume or a snapshot, by number: a
# new subvolume would be in no user's quota group (see hearth.sandbox.disk), and one made
# read-only (26, SUBVOL_SETFLAGS) could no longer be handed over or deleted by the host.
# Reflinks (FICLONE…) stay: what they share counts where it is referenced.
BTRFS_SUBVOLUME_IOCTLS = (1, 14, 15, 23, 24, 26, 63)
LOW16 = 0xFFFF
AF_NETLINK = 16
NETLINK_AUDIT = 9

# Docker's: PER_LINUX, PER_LINUX32, each alone or with UNAME26, and the query.
PERSONALITY_QUERY = 0xFFFF_FFFF
PERSONALITIES = (0x0, 0x8, 0x2_0000, 0x2_0008, PERSONALITY_QUERY)

DENIED = (
    # user namespaces are refused in clone and unshare; entering one, and every way to mount
    "setns",
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsmount",
    "fsconfig",
    "fspick",
    "mount_setattr",
    # interfaces of the kernel with a record of exploits, that sessions have no use for
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "add_key",
    "keyctl",
    "request_key",
    "perf_event_open",
    "bpf",
    "userfaultfd",
    # the machine's, not a session's (root's only, except a few read-only uses)
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "settimeofday",
    "stime",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "quotactl",
    "quotactl_fd",
    "syslog",
    "vhangup",
    "iopl",
    "ioperm",
    "lookup_dcookie",
    "name_to_handle_at",
    "open_by_handle_at",
    # obsolete, or for 16-bit code
    "uselib",
    "modify_ldt",
    "vm86",
    "vm86old",
    "_sysctl",
    "nfsservctl",
    "create_module",
    "get_kernel_syms",
    "query_module",
)


class SeccompUnavailable(Exception):
    """The filter can't be built here (no libseccomp, or it refused): sessions run without."""


@dataclass(frozen=True, slots=True)
class Rule:
    """``syscall`` fails with ``error`` when ``args[i] & mask == value`` for each ``(i, mask,
    value)`` of ``when`` (always, when there is none). Rules of one call add up: any denies."""

    syscall: str
    error: int = errno.EPERM
    when: tuple[tuple[int, int, int], ...] = ()


def _personality() -> list[Rule]:
    """Deny every value but :data:`PERSONALITIES`. A rule compares an argument once, so: no bit
    but those of PER_LINUX32 (3) and UNAME26 (17) while bit 31 is clear, and all 32 bits set
    (the query) when it is set."""
    allowed = 0
    for value in PERSONALITIES[:-1]:
        allowed |= value
    top = 1 << 31
    denied = []
    for bit in range(31):
        if not allowed & (1 << bit):
            denied.append(Rule("personality", when=((0, (1 << bit) | top, 1 << bit),)))
        denied.append(Rule("personality", when=((0, (1 << bit) | top, top),)))
    return denied


def rules() -> list[Rule]:
    """The whole filter (pure). Denied calls fail with ``EPERM``, and:

    - ``clone3`` fails with ``ENOSYS``, as in Flatpak and Docker: its flags are in memory a
      filter can't read, and glibc then falls back to ``clone``, whose flags are checked (no
      namespace flag; ``unshare`` likewise).
    - ``ptrace`` stays, as in Docker's profile since Linux 4.8 (a tracer can no longer use it to
      get past the filter): a session is a PID namespace of one unprivileged uid with no
      capabilities, so it traces only its own processes, and gdb and strace work inside.
    - ``personality`` takes only Docker's values (:data:`PERSONALITIES`); never
      ``ADDR_NO_RANDOMIZE``, ``READ_IMPLIES_EXEC``, ``MMAP_PAGE_ZERO`` and the like.
    - ``ioctl``: not ``TIOCSTI`` nor ``TIOCLINUX`` (typing into a terminal, as Flatpak blocks),
      nor ``FS_IOC_FSSETXATTR`` (a file's owner could leave its project quota), nor btrfs's
      subvolume calls. The kernel reads the request, like the personality, as 32 bits: the
      rules compare only those, so bits set above them can't carry a request past.
    """
    found = [Rule(name) for name in DENIED]
    found.append(Rule("clone3", errno.ENOSYS))
    found += [Rule("clone", when=((0, flag, flag),)) for flag in NAMESPACES]
    found += [Rule("unshare", when=((0, flag, flag),)) for flag in (*NAMESPACES, CLONE_NEWTIME)]
    for request in (TIOCSTI, TIOCLINUX, FS_IOC_FSSETXATTR):
        found.append(Rule("ioctl", when=((1, LOW32, request),)))
    for number in BTRFS_SUBVOLUME_IOCTLS:
        found.append(Rule("ioctl", when=((1, LOW16, 0x9400 | number),)))
    found += _personality()
    found.append(Rule("socket", when=((0, LOW32, AF_NETLINK), (2, LOW32, NETLINK_AUDIT))))
    return found


def compile_filter(filter_rules: Iterable[Rule]) -> bytes:
    """The BPF program of ``filter_rules``, everything else allowed, for this machine's
    architecture and its 32-bit companions (x86 and x32 beside x86-64, arm beside aarch64).
    Raises :class:`SeccompUnavailable`."""
    try:
        import pyseccomp as sc  # type: ignore[import-untyped]  # loads libseccomp.so.2 now
    except (ImportError, OSError, RuntimeError) as exc:
        raise SeccompUnavailable(f"libseccomp can't be loaded ({exc})") from exc
    companions = {
        sc.Arch.X86_64: (sc.Arch.X86, sc.Arch.X32),
        sc.Arch.AARCH64: (sc.Arch.ARM,),
    }
    try:
        program = sc.SyscallFilter(sc.ALLOW)
        for arch in companions.get(sc.system_arch(), ()):
            program.add_arch(arch)
        unknown = []
        for rule in filter_rules:
            number = sc.resolve_syscall(sc.Arch.NATIVE, rule.syscall)
            if number == -1:  # newer than this libseccomp (others: absent on this arch only)
                unknown.append(rule.syscall)
                continue
            args = [sc.Arg(i, sc.MASKED_EQ, mask, value) for i, mask, value in rule.when]
            program.add_rule(sc.ERRNO(rule.error), number, *args)
        if unknown:
            reason = f"unknown to this libseccomp, so allowed: {', '.join(unknown)}"
            log.warning("seccomp filter incomplete", extra={"reason": reason})
        with tempfile.TemporaryFile() as out:
            program.export_bpf(out)
            out.seek(0)
            bpf: bytes = out.read()
    except (OSError, ValueError) as exc:
        raise SeccompUnavailable(f"libseccomp could not build the filter ({exc})") from exc
    return bpf


def write_filter(bpf: bytes, path: Path) -> None:
    """Write ``bpf`` to ``path`` (only the server reads it), unless it holds it already; a
    session starting meanwhile reads the old file or the new one."""
    try:
        if path.read_bytes() == bpf:
            return
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    temp = path.with_suffix(".new")
    with open(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
        out.write(bpf)
    os.replace(temp, path)
