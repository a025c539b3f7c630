"""Per-user disk limits (SPEC §7.1): a user's subvolumes (their home, their kernels' working and
runtime directories) share one btrfs quota group limited to ``session_disk_limit``, so a write
past it fails with EDQUOT in that user's sessions only. Quota groups rather than an image per
user: a pooled kernel's directory becomes a user's by a rename, which can't cross file systems.

A data directory on a btrfs with quotas on is used as it is; otherwise, as root, the places
sessions write move into a btrfs image of its own (:func:`open_volume`), sized so that the
host's own writes always find room. Not root and no such btrfs: no limit, and it says so.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from hearth.diskspace import reserve
from hearth.sandbox import btrfs

__all__ = ["PLACES", "Volume", "VolumeUnavailable", "image_size", "open_volume"]

log = logging.getLogger("hearth.sandbox")

PLACES = ("homes", "sessions", "kernels")  # the data directory's places that sessions write
IMAGE = "volume.img"
MOUNT = "volume"
MIN_IMAGE = 256 << 20  # btrfs wants ~110 MiB for itself
_MNT_DETACH = 2
_HELPER_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


def image_size(users: int, limit: int, free: int, total: int, now: int = 0) -> int:
    """The image's size for ``users`` of ``limit`` bytes each, on a file system with ``free`` of
    ``total`` bytes left and the image at ``now`` bytes already: room for every user, but never
    what the server keeps for itself (5% of the file system, 256 MiB at least); 0 if that leaves
    too little for an image (pure)."""
    room = now + free - reserve(total)
    if room < MIN_IMAGE:
        return 0
    return max(MIN_IMAGE, min(max(1, users) * limit, room), now)


@dataclass
class Volume:
    """The btrfs file system where sessions write, mounted at ``mount``."""

    mount: Path
    limit: int  # 0: none (an image made under a limit stays in use when it is lifted)
    _groups: set[int] = field(default_factory=set)
    _root: int | None = None  # a descriptor of the mount, when we mounted it

    def make_dir(self, path: Path, mode: int = 0o755) -> None:
        """``path`` as a subvolume of its own; a plain directory already there (made before
        the limit, or by hand) becomes one, its files shared (reflinks, no copy)."""
        try:
            btrfs.make_subvolume(path)
        except FileExistsError:
            if path.is_dir() and path.stat().st_ino != btrfs.SUBVOLUME_ROOT:
                _to_subvolume(path)
            return
        path.chmod(mode)

    def give(self, user_number: int, *paths: Path) -> None:
        """What ``paths`` hold counts towards the user's limit from now on."""
        group = btrfs.qgroup(1, user_number)
        if user_number not in self._groups:
            btrfs.create_qgroup(self.mount, group)
            btrfs.limit_qgroup(self.mount, group, self.limit or btrfs.NO_LIMIT)
            self._groups.add(user_number)
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_ino != btrfs.SUBVOLUME_ROOT:
                    continue  # a plain directory: the whole volume's group is not a user's
                btrfs.assign(self.mount, btrfs.qgroup(0, btrfs.subvolume_id(path)), group)

    def close(self) -> None:
        """Unmount what we mounted (sessions have ended); lazily, so a straggler can't block.
        Through a descriptor of the mount taken at the start: the data directory may have been
        moved or removed meanwhile."""
        if self._root is None:
            return
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.umount2(f"/proc/self/fd/{self._root}".encode(), _MNT_DETACH) != 0:
                error = ctypes.get_errno()
                log.warning("disk image not unmounted", extra={"error": os.strerror(error)})
        finally:
            os.close(self._root)
            self._root = None

    def hold(self) -> None:
        """Keep a descriptor of the mount we made, to unmount it at :meth:`close`."""
        self._root = os.open(self.mount, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def open_volume(data_dir: Path, limit: int, users: int) -> tuple[Volume | None, str]:
    """The volume for ``data_dir`` (``users``: how many it serves), or None and why no limit
    can be enforced. The image is ``volume.img`` (mounted at ``volume/``); ``homes``,
    ``sessions`` and ``kernels`` are relative links into it, so every path keeps its name and a
    rename between them stays on one file system."""
    kept = (data_dir / IMAGE).exists()  # users' files are in it, limit or not
    if limit == 0 and not kept:
        return None, "session_disk_limit is 0"
    if limit and _has_quotas(data_dir):
        for place in PLACES:
            (data_dir / place).mkdir(exist_ok=True)
        return Volume(data_dir, limit), ""
    if os.geteuid() != 0:
        return None, (
            "the data directory is not on a btrfs with quotas, and only root can mount one: "
            "run as root, or put the data directory on a btrfs with 'btrfs quota enable'"
        )
    mount = data_dir / MOUNT
    volume = Volume(mount, limit)
    try:
        if not os.path.ismount(mount):  # else left by a host that was killed: ours now
            _mount_image(data_dir, mount, users, limit)
        volume.hold()
        _link_places(data_dir, mount)
    except (OSError, subprocess.CalledProcessError) as exc:
        volume.close()
        if kept or any((data_dir / place).is_symlink() for place in PLACES):
            # users' files are in the image: running without it would lose sight of them
            raise VolumeUnavailable(
                f"The data directory's disk image ({data_dir / IMAGE}) holds the sessions' "
                f"files but could not be used: {_why(exc)}. Free what it names (a loop device, "
                "disk space) and start again; Hearth does not start without it."
            ) from exc
        return None, f"no btrfs image could be made in the data directory: {_why(exc)}"
    return volume, ""


class VolumeUnavailable(Exception):
    """The disk image that holds the sessions' files can't be mounted (the message says why)."""


def _has_quotas(path: Path) -> bool:
    """``path`` is on a btrfs whose quotas are on (a quota group can be looked at)."""
    try:
        return bool(btrfs.subvolume_id(path)) and _quotas_on(path)
    except OSError:
        return False


def _quotas_on(path: Path) -> bool:
    done = subprocess.run(
        ["btrfs", "qgroup", "show", str(path)], env=_HELPER_ENV, capture_output=True
    )
    return done.returncode == 0


def _mount_image(data_dir: Path, mount: Path, users: int, limit: int) -> None:
    """Make (or grow) the image, then mount it. Its blocks are allocated ahead, not sparse: a
    btrfs whose device fails a write (the disk filled up under a sparse image) turns read-only,
    every session's writes with it. So btrfs is made and mounted without discard, which would
    hand freed blocks back to the file system."""
    image = data_dir / IMAGE
    new = not image.exists()
    now = 0 if new else image.stat().st_size
    stat = os.statvfs(data_dir)
    free, total = stat.f_bavail * stat.f_frsize, stat.f_blocks * stat.f_frsize
    size = image_size(users, limit, free, total, now)
    if not size:
        raise OSError(f"too little free space ({free >> 20} MiB) for one")
    if size > now:
        fd = os.open(image, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if new:  # on a copy-on-write file system, a rewrite would need new room again
                btrfs.no_copy_on_write(fd)
            os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)
    if size < users * limit:
        log.warning(
            "the disk image holds less than every user's limit",
            extra={"image_mib": size >> 20, "users": users, "limit_mib": limit >> 20},
        )
    if new:
        try:
            _run("mkfs.btrfs", "--quiet", "--force", "--nodiscard", str(image))
        except BaseException:
            image.unlink()
            raise
    mount.mkdir(mode=0o755, exist_ok=True)
    try:
        _run("mount", "-o", "loop,noatime,nodiscard", str(image), str(mount))
    except BaseException:
        if new:  # nothing in it yet: the next start makes it again
            image.unlink()
        raise
    try:
        if size > now and not new:
            _run("btrfs", "filesystem", "resize", "max", str(mount))
        _run("btrfs", "quota", "enable", str(mount))
    except BaseException:
        _run("umount", str(mount))
        if new:
            image.unlink()
        raise


def _link_places(data_dir: Path, mount: Path) -> None:
    """``data_dir/<place>`` leads into the image (relative links: bwrap resolves a source from
    its old root). A place already there as a directory (a data directory from before the
    limit) is copied in under a staging name first, renamed into place once whole, and only
    then replaced by its link: a start stopped half-way starts over at the next one."""
    for place in PLACES:
        inside, outside = mount / place, data_dir / place
        old = data_dir / f".{place}.old"
        if outside.is_dir() and not outside.is_symlink():
            staging = mount / f".{place}.moving"
            shutil.rmtree(staging, ignore_errors=True)  # what a stopped start left
            staging.mkdir(mode=0o755)
            _move_in(outside, staging)
            shutil.rmtree(inside, ignore_errors=True)  # not in use: no link led to it
            os.rename(staging, inside)
            os.rename(outside, old)
        inside.mkdir(mode=0o755, exist_ok=True)
        if not outside.is_symlink():
            outside.symlink_to(Path(MOUNT) / place)
        shutil.rmtree(old, ignore_errors=True)


def _to_subvolume(path: Path) -> None:
    """The plain directory ``path`` replaced by a subvolume holding the same files."""
    log.warning("a directory becomes a subvolume", extra={"path": str(path)})
    staging, old = path.with_name(f".{path.name}.subvolume"), path.with_name(f".{path.name}.old")
    shutil.rmtree(staging, ignore_errors=True)
    btrfs.make_subvolume(staging)
    _run("cp", "-a", "--reflink=auto", f"{path}/.", str(staging))
    shutil.copystat(path, staging)
    os.chown(staging, path.stat().st_uid, path.stat().st_gid)
    os.rename(path, old)
    os.rename(staging, path)
    shutil.rmtree(old, ignore_errors=True)


def _move_in(old: Path, new: Path) -> None:
    """Copy a place of an older data directory into the image, keeping owners and modes: each
    home (``homes/<user>``) and each kept working directory (``sessions/<user>/<id>``) as a
    subvolume, so that it counts towards its user's limit. What ``kernels/`` held is stale at a
    start anyway."""
    log.warning("moving into the disk image", extra={"place": str(old)})
    depth = {"homes": 1, "sessions": 2}.get(old.name, 0)
    for child in _at_depth(old, depth) if depth else ():
        target = new / child.relative_to(old)
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        btrfs.make_subvolume(target)
        _run("cp", "-a", f"{child}/.", str(target))
        shutil.copystat(child, target)
        os.chown(target, child.stat().st_uid, child.stat().st_gid)


def _at_depth(top: Path, depth: int) -> list[Path]:
    found = [top]
    for _ in range(depth):
        found = [c for d in found for c in d.iterdir() if c.is_dir() and not c.is_symlink()]
    return found


def _run(*argv: str) -> None:
    subprocess.run(argv, env=_HELPER_ENV, capture_output=True, check=True, timeout=120)


def _why(exc: BaseException) -> str:
    if isinstance(exc, subprocess.CalledProcessError):
        said = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
        return f"{Path(str(exc.cmd[0])).name}: {said[-1] if said else f'exit {exc.returncode}'}"
    return str(exc)
