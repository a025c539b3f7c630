"""The few btrfs ioctls that per-user disk limits need: make a subvolume, find its id, make a
quota group, limit it and put a subvolume in it. Each is one system call (tens of µs), cheap
enough for a kernel's hand-out; ``btrfs`` the program costs a process start each.

The argument layouts are those of ``linux/btrfs.h`` (``btrfs_ioctl_vol_args``,
``btrfs_ioctl_ino_lookup_args``, ``btrfs_ioctl_qgroup_{create,limit,assign}_args``).
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct

__all__ = [
    "NO_LIMIT",
    "SUBVOLUME_ROOT",
    "assign",
    "create_qgroup",
    "limit_qgroup",
    "make_subvolume",
    "no_copy_on_write",
    "qgroup",
    "subvolume_id",
]

_MAGIC = 0x94
_NAME_MAX = 4087  # btrfs_ioctl_vol_args.name holds 4088 bytes with its NUL
SUBVOLUME_ROOT = 256  # the inode number of every subvolume's root directory
_LIMIT_MAX_RFER = 1  # BTRFS_QGROUP_LIMIT_MAX_RFER


def _io(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (_MAGIC << 8) | nr


_SUBVOL_CREATE = _io(1, 14, 4096)
_INO_LOOKUP = _io(3, 18, 4096)
_QGROUP_ASSIGN = _io(1, 41, 24)
_QGROUP_CREATE = _io(1, 42, 16)
_QGROUP_LIMIT = _io(2, 43, 48)


def qgroup(level: int, number: int) -> int:
    """The id of quota group ``level/number``."""
    return (level << 48) | number


def _ioctl(path: str | os.PathLike[str], request: int, arg: bytearray) -> bytearray:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, request, arg)
    finally:
        os.close(fd)
    return arg


_FS_IOC_GETFLAGS = 0x80086601
_FS_IOC_SETFLAGS = 0x40086602
_FS_NOCOW_FL = 0x00800000


def no_copy_on_write(fd: int) -> None:
    """The empty file ``fd`` is rewritten in place (btrfs's ``chattr +C``); elsewhere (a file
    system that rewrites in place anyway, or can't say) nothing happens."""
    try:
        flags = bytearray(struct.pack("l", 0))
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags)
        value = struct.unpack("l", flags)[0] | _FS_NOCOW_FL
        fcntl.ioctl(fd, _FS_IOC_SETFLAGS, bytearray(struct.pack("l", value)))
    except OSError:
        pass


def make_subvolume(path: str | os.PathLike[str]) -> None:
    """A new, empty subvolume at ``path`` (its parent exists); FileExistsError if taken."""
    parent, name = os.path.split(os.fspath(path))
    raw = name.encode()
    if not raw or len(raw) > _NAME_MAX or b"/" in raw:
        raise ValueError(f"not a subvolume name: {name!r}")
    _ioctl(parent or ".", _SUBVOL_CREATE, bytearray(struct.pack("q4088s", 0, raw)))


def subvolume_id(path: str | os.PathLike[str]) -> int:
    """The id of the subvolume ``path`` is in."""
    args = _ioctl(path, _INO_LOOKUP, bytearray(struct.pack("QQ4080s", 0, SUBVOLUME_ROOT, b"")))
    return int(struct.unpack_from("Q", args)[0])


def create_qgroup(mount: str | os.PathLike[str], group: int) -> None:
    """Quota group ``group`` exists (made now or before)."""
    try:
        _ioctl(mount, _QGROUP_CREATE, bytearray(struct.pack("QQ", 1, group)))
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise


NO_LIMIT = 2**64 - 1  # as a limit: clears it


def limit_qgroup(mount: str | os.PathLike[str], group: int, max_bytes: int) -> None:
    """Everything in ``group`` together refers to at most ``max_bytes`` (:data:`NO_LIMIT`:
    as much as it likes)."""
    limit = struct.pack("QQQQQQ", group, _LIMIT_MAX_RFER, max_bytes, 0, 0, 0)
    _ioctl(mount, _QGROUP_LIMIT, bytearray(limit))


def assign(mount: str | os.PathLike[str], child: int, parent: int) -> None:
    """Quota group ``child`` counts towards ``parent`` (already so: nothing to do)."""
    try:
        _ioctl(mount, _QGROUP_ASSIGN, bytearray(struct.pack("QQQ", 1, child, parent)))
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise
