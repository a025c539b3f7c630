"""Files beneath a working directory whose contents a hostile session controls.

The server (root, often) must never follow a symlink the session planted there, not even one
swapped in between a check and a use. So a path is never resolved and then used: each component
is opened relative to its parent's descriptor with ``O_NOFOLLOW``, and the file is created,
renamed or read through the descriptor of its directory. Whatever the session does meanwhile,
what the server touches is beneath the root (a directory renamed away takes the write with it).
Directories and files the server makes there belong to the root's owner (the session's uid).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import secrets
import shutil
import stat
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from hearth.errors import BadRequest, HearthError, InsufficientStorage, NotFound

__all__ = [
    "PART",
    "FileStream",
    "move_in",
    "open_dir",
    "read_stream",
    "walk_files",
    "write_stream",
]

PART = ".part-"  # marks a file being written (hidden from listings)
# O_NONBLOCK too: a FIFO swapped in for a directory must fail the open, not block it
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a FIFO must not block
CHUNK = 64 * 1024


def _refused(rel: PurePosixPath | str, exc: OSError) -> HearthError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorage(
            f"No room for {str(rel)!r}: the server's disk is full; free space in the session or "
            "ask the administrator."
        )
    if exc.errno == errno.ENAMETOOLONG:
        return BadRequest(f"Invalid file path {str(rel)!r}: a name in it is too long.")
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EISDIR):
        return BadRequest(
            f"Invalid file path {str(rel)!r}: it goes through a symlink or a file, or is a "
            "directory; name a file inside the working directory."
        )
    return NotFound(f"No file {str(rel)!r} in the session's working directory.")


def open_dir(root: Path, parts: Sequence[str], *, create: bool = False) -> int:
    """A descriptor of ``root/parts…`` reached without following any symlink; missing
    directories are made when ``create`` (owned like ``root``). Raises OSError."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        owner = os.fstat(fd)
        for part in parts:
            try:
                child = os.open(part, _DIR, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
                child = os.open(part, _DIR, dir_fd=fd)
                _give(child, owner)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _give(fd: int, owner: os.stat_result) -> None:
    """The root's owner gets what the server made (so the session can change it)."""
    st = os.fstat(fd)
    if (st.st_uid, st.st_gid) != (owner.st_uid, owner.st_gid) and os.geteuid() == 0:
        os.fchown(fd, owner.st_uid, owner.st_gid)


async def write_stream(
    root: Path, rel: PurePosixPath, chunks: AsyncIterable[bytes], max_bytes: int
) -> int:
    """Write ``chunks`` to ``root/rel`` atomically (a temporary file, then a rename in the same
    directory descriptor); returns the size. At most ``max_bytes``."""
    *folders, name = rel.parts
    try:
        parent = open_dir(root, folders, create=True)
    except OSError as exc:
        raise _refused(rel, exc) from None
    short = name.encode()[:100].decode(errors="ignore")  # names are bytes-limited (255)
    temp = f".{short}{PART}{secrets.token_hex(4)}"
    size = 0
    try:
        try:
            fd = os.open(temp, _NEW, 0o644, dir_fd=parent)
        except OSError as exc:
            raise _refused(rel, exc) from None
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise BadRequest(f"The file is larger than the {max_bytes} bytes allowed.")
                view = memoryview(chunk)
                while view:
                    try:
                        view = view[os.write(fd, view) :]
                    except OSError as exc:
                        raise _refused(rel, exc) from None
            _give(fd, os.fstat(parent))
        finally:
            os.close(fd)
        try:
            # A symlink there is refused like one on the way (the rename would only replace the
            # link itself, never follow it: this is the API's rule, not the safety).
            if stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
                raise OSError(errno.ELOOP, "a symlink")
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _refused(rel, exc) from None
        try:
            os.replace(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
        except OSError as exc:
            raise _refused(rel, exc) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=parent)
        os.close(parent)
    return size


MAX_DEPTH = 64  # a listing goes no deeper (a deep tree would exhaust descriptors otherwise)


def walk_files(root: Path) -> list[tuple[str, os.stat_result]]:
    """Every regular file beneath ``root`` as (relative path, stat), walked by descriptors:
    each directory is opened through its parent's with ``O_NOFOLLOW`` and ``O_NONBLOCK``, so a
    directory swapped for a symlink or a FIFO meanwhile is skipped, never entered or waited on."""
    found: list[tuple[str, os.stat_result]] = []
    try:
        top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return found
    stack: list[tuple[str, int, int]] = [("", top, 0)]  # (relative path, fd, depth)
    while stack:
        prefix, fd, depth = stack.pop()
        try:
            with os.scandir(fd) as entries:
                names = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
            for name, is_dir in names:
                rel = f"{prefix}{name}"
                if is_dir:
                    if depth + 1 < MAX_DEPTH:
                        with contextlib.suppress(OSError):
                            stack.append((rel + "/", os.open(name, _DIR, dir_fd=fd), depth + 1))
                    continue
                with contextlib.suppress(OSError):
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode):
                        found.append((rel, st))
        except OSError:
            pass
        finally:
            os.close(fd)
    return found


@dataclass(frozen=True, slots=True)
class FileStream:
    """An open file of a working directory, as a byte stream (what a socket can carry)."""

    name: str
    size: int
    chunks: AsyncIterator[bytes]


def read_stream(root: Path, rel: PurePosixPath) -> FileStream:
    """``root/rel`` opened now (a regular file, no symlink on the way), read as it is sent."""
    *folders, name = rel.parts
    try:
        parent = open_dir(root, folders)
        try:
            fd = os.open(name, _READ, dir_fd=parent)
        finally:
            os.close(parent)
    except OSError as exc:
        raise _refused(rel, exc) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # a FIFO, a device: not a file to send
        os.close(fd)
        raise NotFound(f"No file {str(rel)!r} in the session's working directory.")
    os.set_blocking(fd, True)
    return FileStream(name, st.st_size, _Chunks(fd, st.st_size))


class _Chunks:
    """The file's bytes; its descriptor is closed at the end, or when it is dropped unread
    (a client gone before the body)."""

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._left = size  # what Content-Length promised: a file grown meanwhile is cut there

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        if self._fd < 0 or self._left <= 0:
            self.close()
            raise StopAsyncIteration
        data = await asyncio.to_thread(self._read)  # the bound method keeps it alive meanwhile
        if not data:
            self.close()
            raise StopAsyncIteration
        self._left -= len(data)
        return data

    def _read(self) -> bytes:
        return os.read(self._fd, min(CHUNK, self._left))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    async def aclose(self) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def move_in(src: Path, root: Path, rel: PurePosixPath, *, replace: bool = True) -> bool:
    """Move the server's file ``src`` to ``root/rel`` (same file system); False when ``rel``
    exists and ``replace`` is off. Raises OSError when the way there is refused."""
    *folders, name = rel.parts
    parent = open_dir(root, folders, create=True)
    try:
        if not replace:
            with contextlib.suppress(FileNotFoundError):
                os.stat(name, dir_fd=parent, follow_symlinks=False)
                return False
        try:
            os.replace(src, name, dst_dir_fd=parent)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            _copy_in(src, name, parent)  # into a subvolume of its own (a disk-limited one)
        owner = os.fstat(parent)
        if os.geteuid() == 0:
            os.chown(name, owner.st_uid, owner.st_gid, dir_fd=parent, follow_symlinks=False)
        return True
    finally:
        os.close(parent)


_FICLONE = 0x40049409  # linux/fs.h: share the source's blocks (btrfs, XFS), no copy


def _copy_in(src: Path, name: str, parent: int) -> None:
    """``src`` copied to ``name`` in ``parent`` (a temporary file, then a rename), then removed.
    ``src`` may be a session's own file (a lost session's kept directory): only a regular file
    is taken, never through a symlink and never a FIFO (the host would read what it leads to,
    as root, or wait for a writer forever). Its blocks are shared where the file system can
    (within one btrfs, they then count once in the user's quota group), else copied."""
    source = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    temp = f".{name.encode()[:100].decode(errors='ignore')}{PART}{secrets.token_hex(4)}"
    try:
        st = os.fstat(source)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"not a regular file: {src}")
        target = os.open(temp, _NEW, st.st_mode & 0o777, dir_fd=parent)
        try:
            try:
                fcntl.ioctl(target, _FICLONE, source)
            except OSError:
                with open(source, "rb", closefd=False) as r, open(target, "wb", closefd=False) as w:
                    shutil.copyfileobj(r, w, CHUNK)
        finally:
            os.close(target)
        os.replace(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
    finally:
        os.close(source)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=parent)
    os.unlink(src)
