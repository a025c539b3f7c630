"""Kernel sessions as the web tier sees them: calls by user and session id.

``async with KernelService(settings, store=...) as kernels`` opens the pool (warm when the block
is entered) and an HTTP client for downloads. A session of another user is answered exactly as a
missing one. Nothing here knows HTTP: the web tier turns these calls into answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, Self

from jupyter_client.kernelspec import KernelSpecManager

from hearth.config import Settings
from hearth.errors import BadRequest, NotFound, SessionClosed, storage_error
from hearth.kernels import files as fileops
from hearth.kernels.beneath import FileStream
from hearth.kernels.channels import ChannelRelay
from hearth.kernels.connections import Connections
from hearth.kernels.egress import download_client
from hearth.kernels.kernel import kernel_environment
from hearth.kernels.paths import check_session_id, new_session_id, safe_relative_path
from hearth.kernels.pool import KernelPool, PoolConfig
from hearth.kernels.session import HostedKernelSession
from hearth.kernels.workdirs import WorkDirs
from hearth.protocol.kernels import JupyterName, KernelFile, KernelState
from hearth.protocol.outputs import ExecutionEvent
from hearth.sandbox import Sandbox
from hearth.sandbox.uids import UserUids
from hearth.store import SessionStore

__all__ = ["KernelService"]

KIND = "kernel"
# what Jupyter Server lists as a kernelspec's resources
_RESOURCES = {"kernel.js", "kernel.css", "logo-32x32.png", "logo-64x64.png", "logo-svg.svg"}


class KernelService:
    def __init__(
        self,
        settings: Settings,
        *,
        store: SessionStore | None = None,
        clock: Callable[[], float] | None = None,
        environ: Mapping[str, str] | None = None,
        sandbox: Sandbox | None = None,
    ) -> None:
        self.settings = settings
        sandbox = sandbox or Sandbox.unconfined(settings)
        self.dirs = WorkDirs(
            settings.data_dir.expanduser(),
            volume=sandbox.volume,
            group_of=UserUids(sandbox, store),  # as its terminals' home
        )
        self._store = store
        config = PoolConfig(
            target=settings.session_pool_size,
            max_kernels=settings.max_kernels,
            kernel_name=settings.default_kernel_name,
            max_concurrent_starts=settings.max_concurrent_kernel_starts,
            refill_interval=settings.session_pool_refill_interval,
            cleanup_interval=settings.kernel_cleanup_interval,
            max_idle_time=settings.session_pool_max_idle_time,
        )
        env = kernel_environment(os.environ if environ is None else environ)
        extra: dict[str, Any] = {} if clock is None else {"clock": clock}
        self.pool = KernelPool(
            config,
            self.dirs,
            env,
            forget=self._forget,
            sandbox=sandbox,
            **extra,
        )
        self._creating: dict[tuple[str, str], asyncio.Lock] = {}
        # sessions whose kernel died with a previous run of the host: records, files kept
        self._lost: dict[tuple[str, str], dict[str, Any]] = {}
        self._deleting: set[asyncio.Future[None]] = set()  # files going away
        self.connections = Connections()  # Jupyter clients', kept for their client's return
        self.kernel_names: frozenset[str] = frozenset()

    async def __aenter__(self) -> Self:
        self.kernel_names = frozenset(KernelSpecManager().find_kernel_specs())
        if self.settings.default_kernel_name not in self.kernel_names:
            raise ValueError(
                f"default_kernel_name {self.settings.default_kernel_name!r} is not an installed "
                f"kernelspec; installed: {sorted(self.kernel_names)}"
            )
        self.dirs.reset()
        self._restore_lost_records()
        async with contextlib.AsyncExitStack() as stack:
            client = download_client(self.settings.session_network, self.settings.download_timeout)
            self.http = await stack.enter_async_context(client)
            await stack.enter_async_context(self.pool)
            await stack.enter_async_context(self.connections)  # they end before the pool
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()
        if self._deleting:
            await asyncio.gather(*self._deleting, return_exceptions=True)

    def end_all(self) -> None:
        """Every session ends as if deleted (``hearth shutdown``)."""
        for user, session_id in list(self._lost):
            self.terminate(user, session_id)
        for session in self.pool.owned_by(None):
            self.pool.release(session)

    # -- records --------------------------------------------------------------------------------

    def _restore_lost_records(self) -> None:
        """Sessions of a previous run: their kernels are gone (SPEC §8), their files are not.
        They are listed ``dead``, ``closed_reason: "host_lost"``, until deleted or created again
        (a new kernel in the same directory)."""
        if self._store is None:
            return
        for record in self._store.list(KIND):
            user, sid = record["user"], record["session_id"]
            record.update(status="dead", closed_reason="host_lost")
            self._store.put(KIND, user, sid, record)
            self._lost[(user, sid)] = record

    def _lost_info(self, user: str, session_id: str) -> KernelState | None:
        record = self._lost.get((user, session_id))
        return None if record is None else self._state_of(record)

    def _not_lost(self, user: str, session_id: str) -> None:
        if (user, session_id) in self._lost:
            raise SessionClosed(
                f"Kernel session {session_id!r} lost its kernel when the server stopped; its files "
                "are kept. POST /api/v1/sessions with this session_id for a new kernel with them, "
                "or DELETE it."
            )

    def _state_of(self, record: dict[str, Any]) -> KernelState:
        """A stored record as the API shows it (the owner is implied by who asks; what it knew
        of a kernel that is gone is not shown; what an older record lacks is filled in)."""
        user, sid = record["user"], record["session_id"]
        shown = {k: v for k, v in record.items() if k not in ("user", "execution_state")}
        shown.setdefault("kernel_name", self.settings.default_kernel_name)
        shown.setdefault("working_dir", str(self.dirs.of(user, sid)))
        shown.setdefault("created_at", 0.0)
        shown.setdefault("last_activity", shown["created_at"])
        return KernelState(**{**shown, "connections": 0, "execution_state": "dead"})

    def _forget(self, user: str, session_id: str) -> None:
        if self._store is not None:
            self._store.delete(KIND, user, session_id)

    def _save(self, session: HostedKernelSession) -> None:
        if self._store is not None and session.owner and session.session_id:
            record = {**self.info(session).model_dump(mode="json"), "user": session.owner}
            self._store.put(KIND, session.owner, session.session_id, record)

    def _find(self, user: str, session_id: str) -> HostedKernelSession:
        self._not_lost(user, session_id)
        session = self.pool.find(user, session_id)
        if session is None:
            raise NotFound(
                f"No kernel session {session_id[:80]!r}: create it with POST /api/v1/sessions."
            )
        return session

    @staticmethod
    def info(s: HostedKernelSession) -> KernelState:
        return KernelState(
            session_id=s.session_id or s.uid,
            status=s.status.value,
            kernel_name=s.kernel_name,
            working_dir=str(s.working_dir),
            files=[KernelFile(**f) for f in s.files],
            created_at=s.created_at,
            last_activity=s.last_activity,
            from_pool=s.from_pool,
            execution_count=s.execution_count,
            execution_state=s.execution_state,
            connections=s.connections,
            jupyter=None if s.jupyter is None else JupyterName(**s.jupyter),
        )

    # -- calls ----------------------------------------------------------------------------------

    def get(self, user: str, session_id: str) -> KernelState:
        return self._lost_info(user, session_id) or self.info(self._find(user, session_id))

    def sessions(self, user: str) -> list[KernelState]:
        """The caller's sessions, newest first."""
        mine = [self.info(s) for s in self.pool.owned_by(user)]
        mine += [self._state_of(r) for (u, _), r in self._lost.items() if u == user]
        return sorted(mine, key=lambda i: i.created_at, reverse=True)

    def pool_state(self) -> dict[str, int]:
        return self.pool.pool_state()

    def stats(self) -> dict[str, Any]:
        """The pool's counters and gauges, as plain data (for the server's metrics)."""
        counts = self.pool.counts()
        return {
            **self.pool.stats.snapshot(),
            "pool": {"ready": counts.ready, "starting": counts.starting, "active": counts.users},
            "sessions": [list(row) for row in self.pool.status_counts()],
        }

    def execute(
        self, user: str, session_id: str, code: str, timeout: float | None = None
    ) -> AsyncGenerator[ExecutionEvent, None]:
        """The events of running ``code`` (looked up now, so a wrong id fails before streaming)."""
        if timeout is not None and not timeout > 0:
            raise BadRequest(f"timeout must be a positive number of seconds, got {timeout}.")
        return self._find(user, session_id).execute(code, timeout)

    async def interrupt(self, user: str, session_id: str) -> KernelState:
        session = self._find(user, session_id)
        await session.interrupt()
        return self.info(session)

    async def restart(self, user: str, session_id: str) -> KernelState:
        session = self._find(user, session_id)
        await session.restart()
        return self.info(session)

    def channels(
        self, user: str, session_id: str, client_session: str | None = None
    ) -> ChannelRelay:
        """A Jupyter client's connection to the session's channels (SPEC §10). A client that
        names its Jupyter session gets back the connection it left, if it is still kept, or
        takes over the one it still holds (its old websocket's end may not have come yet)."""
        session = self._find(user, session_id)
        session.touch()
        key = (user, session_id, client_session) if client_session else None
        return self.connections.connect(session, key)

    def annotate(self, user: str, session_id: str, jupyter: dict[str, str] | None) -> KernelState:
        """Name the session as a Jupyter session (its id, path, name and type), or unname it."""
        session = self._find(user, session_id)
        session.jupyter = jupyter
        session.touch()
        self._save(session)
        return self.info(session)

    def kernelspecs(self) -> dict[str, Any]:
        """The installed kernelspecs, as Jupyter Server's ``/api/kernelspecs`` shows them."""
        specs = KernelSpecManager().get_all_specs()
        shown = {}
        for name, found in sorted(specs.items()):
            if name not in self.kernel_names:
                continue
            folder = Path(found["resource_dir"])
            resources = {
                Path(file).stem if file.startswith("logo") else file: f"/kernelspecs/{name}/{file}"
                for file in sorted(p.name for p in folder.iterdir() if p.name in _RESOURCES)
            }
            shown[name] = {"name": name, "spec": found["spec"], "resources": resources}
        return {"default": self.settings.default_kernel_name, "kernelspecs": shown}

    def open_kernelspec_file(self, name: str, path: str) -> FileStream:
        """A file of an installed kernelspec's directory (its logos, kernel.js)."""
        if name not in self.kernel_names:
            raise NotFound(f"No kernelspec {name[:80]!r}; GET /api/kernelspecs lists them.")
        folder = Path(KernelSpecManager().get_kernel_spec(name).resource_dir)
        return fileops.open_file(folder, safe_relative_path(path))

    def terminate(self, user: str, session_id: str) -> None:
        """Recycle the session into the pool, or destroy it when the pool is full."""
        if self._lost.pop((user, session_id), None) is not None:
            self._forget(user, session_id)
            trashed = self.dirs.throw_away(self.dirs.of(user, session_id))
            deleting = asyncio.ensure_future(self.dirs.delete(trashed))
            self._deleting.add(deleting)
            deleting.add_done_callback(self._deleting.discard)
            return
        self.pool.release(self._find(user, session_id))

    def _readable_dir(self, user: str, session_id: str) -> Path:
        """A session's working dir for reading: a lost session's too (its files are kept)."""
        if (user, session_id) in self._lost:
            return self.dirs.of(user, session_id)
        session = self._find(user, session_id)
        session.touch()
        return session.working_dir

    async def list_files(self, user: str, session_id: str) -> list[dict[str, Any]]:
        folder = self._readable_dir(user, session_id)
        return await asyncio.to_thread(fileops.list_files, folder)

    def open_file(self, user: str, session_id: str, path: str) -> FileStream:
        """A file of the session's working dir, opened now, as a byte stream."""
        folder = self._readable_dir(user, session_id)
        return fileops.open_file(folder, safe_relative_path(path))

    async def write_file(
        self, user: str, session_id: str, path: str, chunks: AsyncIterator[bytes]
    ) -> dict[str, Any]:
        session = self._find(user, session_id)
        session.touch()
        rel = safe_relative_path(path)
        limit = self.settings.max_download_bytes
        return await fileops.write_file(session.working_dir, rel, chunks, limit)

    # -- create ---------------------------------------------------------------------------------

    async def create(
        self,
        user: str,
        session_id: str | None = None,
        files: list[dict[str, Any]] | None = None,
        kernel_name: str | None = None,
    ) -> tuple[KernelState, bool]:
        """Reuse the caller's session ``session_id`` (fetching only files it does not have yet)
        or hand out a new one with its files; returns (info, created)."""
        requests = fileops.parse_file_requests(files or [])
        name = kernel_name or self.settings.default_kernel_name
        if name not in self.kernel_names:
            raise BadRequest(
                f"No kernelspec {name[:80]!r} is installed; installed: {sorted(self.kernel_names)}."
            )
        sid = check_session_id(session_id) if session_id is not None else new_session_id()
        async with self._creating_lock((user, sid)):
            session = self.pool.find(user, sid)
            created = session is None
            lost = self._lost.pop((user, sid), None)
            if session is None and lost is not None:  # a new kernel, in its kept directory
                session = await self._revive(user, sid, name, requests, lost)
            elif session is None:
                session = await self._new_session(user, sid, name, requests)
            else:
                await self._download_missing(session, requests)
                session.touch()
            try:
                self._save(session)
            except Exception as exc:
                full = storage_error(exc)
                if full is None:
                    raise
                if created and lost is None:  # no kernel is left running without its record
                    self.pool.release(session)
                raise full from None
            return self.info(session), created

    @contextlib.asynccontextmanager
    async def _creating_lock(self, key: tuple[str, str]) -> AsyncIterator[None]:
        lock = self._creating.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and self._creating.get(key) is lock:
                del self._creating[key]

    async def _download(self, request: fileops.FileRequest, root: Path) -> dict[str, Any]:
        s = self.settings
        return await fileops.download(
            self.http, request, root, s.max_download_bytes, s.download_timeout
        )

    async def _download_missing(
        self, session: HostedKernelSession, requests: list[fileops.FileRequest]
    ) -> None:
        have = {f["url"] for f in session.files}
        for request in requests:
            if request.url in have:
                continue
            entry = await self._download(request, session.working_dir)
            session.files = [f for f in session.files if f["path"] != entry["path"]] + [entry]
            have.add(request.url)

    async def _revive(
        self,
        user: str,
        sid: str,
        name: str,
        requests: list[fileops.FileRequest],
        lost: dict[str, Any],
    ) -> HostedKernelSession:
        """A new kernel for a lost session, in its kept directory (a file the create asks for
        again is downloaded anew and wins)."""
        kept = self.dirs.new_incoming_dir() / "files"
        try:
            os.rename(self.dirs.of(user, sid), kept)  # out of the hand-out's way
        except FileNotFoundError:
            kept.mkdir()  # its directory is gone: a new kernel with no files, then
        try:
            session = await self._new_session(user, sid, name, requests)
        except BaseException:
            os.rename(kept, self.dirs.of(user, sid))
            self._lost[(user, sid)] = lost
            raise
        await asyncio.to_thread(self.dirs.merge, kept, session.working_dir, False)
        kept.parent.rmdir()
        fresh = {f["path"] for f in session.files}
        session.files = [f for f in lost.get("files", []) if f["path"] not in fresh] + session.files
        return session

    async def _new_session(
        self, user: str, sid: str, name: str, requests: list[fileops.FileRequest]
    ) -> HostedKernelSession:
        """Files are fetched first into a staging directory, so that a failed download costs no
        kernel; then a session is handed out and the files moved into its directory."""
        self.pool.check_room(name)  # fail fast, before downloading
        entries: list[dict[str, Any]] = []
        staged = self.dirs.new_incoming_dir() if requests else None
        try:
            if staged is not None:
                for request in requests:
                    entry = await self._download(request, staged)
                    entries = [e for e in entries if e["path"] != entry["path"]] + [entry]
            session = await self.pool.hand_out(user, sid, name)
            if staged is not None:
                await asyncio.to_thread(self.dirs.merge, staged, session.working_dir)
        finally:
            if staged is not None:
                await self.dirs.delete(staged)
        session.files = entries
        return session
