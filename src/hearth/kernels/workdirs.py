"""Where kernel sessions live on disk, and the moves between places.

::

    <data_dir>/sessions/<user>/<id>/     a user's session: the kernel's cwd
    <data_dir>/kernels/pool/<uid>/       a pooled kernel's cwd, renamed into sessions/ when taken
    <data_dir>/kernels/incoming/<rand>/  files downloaded for a session not yet handed out
    <data_dir>/kernels/trash/<rand>/     a released session's directory, deleted in the background
    <data_dir>/kernels/runtime/<rand>/   one kernel's connection file, sockets, IPython dir, log
    <data_dir>/kernels/views/<uid>/      a sandboxed pooled kernel's view of sessions/

A pooled kernel is handed out by renaming its directory: its cwd follows the rename, so it is in
its user's directory at once, with no message sent to it (a sandboxed one's mount is moved too:
:meth:`WorkDirs.show`). ``pool/`` and ``sessions/`` must stay on one file system; paths are used
as given, never resolved.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from hearth.kernels.beneath import move_in
from hearth.sandbox.disk import Volume

__all__ = ["WorkDirs"]

log = logging.getLogger("hearth.kernels")


class WorkDirs:
    def __init__(
        self,
        data_dir: Path,
        volume: Volume | None = None,
        group_of: Callable[[str], int] | None = None,
    ) -> None:
        # With a disk limit, each kernel's working and runtime directories are subvolumes of
        # the volume, given to their user's quota group (``group_of``) when the user is known.
        self._volume = volume
        self._group_of = group_of
        self.sessions = data_dir / "sessions"
        base = data_dir / "kernels"
        self.pool = base / "pool"
        self.incoming = base / "incoming"
        self.trash = base / "trash"
        self.runtime = base / "runtime"
        self.views = base / "views"

    def reset(self) -> None:
        """Start-up: what a previous run left in the kernels' own places is stale."""
        for place in (self.pool, self.incoming, self.trash, self.runtime, self.views):
            shutil.rmtree(place, ignore_errors=True)
            place.mkdir(parents=True, exist_ok=True)
        self.sessions.mkdir(parents=True, exist_ok=True)

    def of(self, user: str, session_id: str) -> Path:
        return self.sessions / user / session_id

    def _make(self, path: Path) -> None:
        if self._volume is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._volume.make_dir(path)
        else:
            path.mkdir(parents=True, exist_ok=True)

    def give(self, user: str, *paths: Path) -> None:
        """What ``paths`` hold counts towards ``user``'s disk limit from now on."""
        if self._volume is not None and self._group_of is not None:
            self._volume.give(self._group_of(user), *paths)

    def new_pool_dir(self, uid: str) -> Path:
        path = self.pool / uid
        self._make(path)
        return path

    def new_runtime_dir(self) -> Path:
        path = self.runtime / secrets.token_hex(6)
        self._make(path)
        # as jupyter_client names it to the kernel (a real path), where the disk image's link
        # would lead elsewhere inside the sandbox
        return path.resolve()

    def fresh_view(self, uid: str) -> Path:
        """An empty view of ``sessions/`` for the pooled kernel ``uid`` (bound read-only)."""
        path = self.views / uid
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(mode=0o755)
        return path

    def show(self, uid: str, user: str, session_id: str) -> None:
        """In ``uid``'s view, an empty ``<user>/<session_id>``: where its kernel's working dir is
        moved inside its sandbox when it is handed out (:mod:`hearth.sandbox.mounts`), so that
        its cwd is the working dir the API reports, by the same path."""
        view = self.views / uid
        if not view.is_dir():
            return
        (view / user).mkdir(mode=0o755, exist_ok=True)
        (view / user / session_id).mkdir(mode=0o755, exist_ok=True)

    def drop_view(self, uid: str) -> None:
        shutil.rmtree(self.views / uid, ignore_errors=True)

    def new_incoming_dir(self) -> Path:
        path = self.incoming / secrets.token_hex(6)
        path.mkdir(parents=True)
        return path

    def move_in(self, current: Path, user: str, session_id: str) -> Path:
        """Rename ``current`` (a pool or fresh directory) to the session's own directory."""
        dest = self.of(user, session_id)
        if current == dest:
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():  # left by a crash: never the directory of a live session
            self.throw_away(dest)
        if current.exists():
            os.rename(current, dest)
        else:
            self._make(dest)
        return dest

    def throw_away(self, path: Path) -> Path:
        """Rename ``path`` into the trash (instantly); delete it later with :meth:`delete`. The
        same session id can then be made again at once, out of the deletion's way."""
        trashed = self.trash / secrets.token_hex(6)
        if path.exists():
            os.rename(path, trashed)
        return trashed

    @staticmethod
    async def delete(path: Path) -> None:
        await asyncio.to_thread(shutil.rmtree, path, True)

    @staticmethod
    def merge(staged: Path, dest: Path, replace: bool = True) -> None:
        """Move every file of ``staged`` into ``dest`` (same file system; ``replace=False``: not
        over a file ``dest`` has), then drop ``staged``. ``dest`` is a session's: no symlink in
        it is followed (see :mod:`hearth.kernels.beneath`)."""
        left = 0
        for folder, _, names in os.walk(staged):
            for name in names:
                src = Path(folder, name)
                rel = PurePosixPath(src.relative_to(staged).as_posix())
                try:
                    move_in(src, dest, rel, replace=replace)
                except OSError:  # a way the session barred, no room, not a regular file
                    left += 1
        if left:
            log.warning("files not moved in", extra={"into": str(dest), "files": left})
        shutil.rmtree(staged, ignore_errors=True)
