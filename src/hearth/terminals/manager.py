"""The terminal manager: every user's terminal sessions, their limits and their lifetimes.

Plain asyncio; knows nothing of HTTP. The web tier calls ``create/get/list/close/write/resize/
attach`` and turns the results into REST answers and websocket frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import secrets
import shlex
import shutil
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from hearth.config import Settings
from hearth.connections.service import Connections, check_host
from hearth.contract.terminals import (
    TerminalInfo,
    TerminalSpec,
    TerminalStatus,
    valid_session_id,
)
from hearth.errors import (
    BadRequest,
    Conflict,
    LimitReached,
    NotFound,
    ScreenUnavailable,
    SessionClosed,
    storage_error,
)
from hearth.sandbox import Prepared, Sandbox
from hearth.sandbox.uids import UserUids
from hearth.store import SessionStore
from hearth.terminals.asciicast import entry_text, render_cast
from hearth.terminals.attachment import Attachment
from hearth.terminals.buffer import OutputBuffer
from hearth.terminals.history import Entry, EntryType, History
from hearth.terminals.idle import expired
from hearth.terminals.outlog import OutputLog, read_log
from hearth.terminals.pty import ParkedPty, PtyProcess
from hearth.terminals.pty_source import PtySource
from hearth.terminals.screen import Screen, ScreenModels, open_models, snapshot_at
from hearth.terminals.session import TerminalSession
from hearth.terminals.source import Source
from hearth.terminals.spare import Spare, parked_pty
from hearth.terminals.workdir import working_dir

__all__ = ["TerminalManager"]

log = logging.getLogger("hearth.terminals")


def login_shell() -> str:
    shell = os.environ.get("SHELL")
    if not shell:
        with contextlib.suppress(KeyError):
            shell = pwd.getpwuid(os.getuid()).pw_shell
    return shell if shell and os.path.exists(shell) else "/bin/bash"


class TerminalManager:
    def __init__(
        self,
        settings: Settings,
        *,
        store: SessionStore | None = None,
        sandbox: Sandbox | None = None,
        clock: Callable[[], float] = time.time,
        connections: Connections | None = None,
    ) -> None:
        self.settings = settings
        self.connections = connections
        self._opening: set[tuple[str, str]] = set()  # SSH sessions being opened
        self.sandbox = sandbox or Sandbox.unconfined(settings)
        self._homes = settings.data_dir.expanduser().resolve() / "homes"
        self._logs = settings.data_dir.expanduser().resolve() / "terminals"
        self._clock = clock
        self._sessions: dict[tuple[str, str], TerminalSession] = {}
        self._counters: dict[str, int] = {}
        self._total_bytes = 0
        self._store = store
        self._stack = contextlib.AsyncExitStack()
        self._uids = UserUids(self.sandbox, store)
        # the next terminal's process, in its cgroup
        self.spare = Spare(partial(parked_pty, self.sandbox) if self.sandbox.parks else None)
        self.screens: ScreenModels | None = None

    # --- lifetime --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            s = self.settings
            if s.screen_model:
                models = open_models(
                    s.node_binary, s.max_buffer_size, self.sandbox, s.screen_model_idle_time
                )
                self.screens = await stack.enter_async_context(models)
            if self._store is not None:
                # The sessions of a previous host died with it (their processes were its
                # children); their output is on disk.
                for record in self._store.list("terminal"):
                    self._restore_lost(record)
            tasks = await stack.enter_async_context(asyncio.TaskGroup())
            self._cleanup_task = tasks.create_task(self._cleanup_loop())
            self._stack = stack.pop_all()
        self.spare.park()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._cleanup_task.cancel()
        self.spare.close()
        await asyncio.shield(self._close_all())
        await self._stack.__aexit__(exc_type, exc, tb)  # the cleanup loop, then the screens

    def _open_screen(self, session: TerminalSession) -> None:
        if self.screens is not None:  # cold: built when first needed (see Screen.cold)
            rows, cols = session.rows, session.cols
            end = session.buffer.end
            session.screen = self.screens.open(rows, cols, session.output_since, cold=True, end=end)

    async def _close_all(self) -> None:
        sessions = list(self._sessions.values())
        self._sessions.clear()
        if sessions:
            log.info("closing all terminals", extra={"count": len(sessions)})
            grace = self.settings.terminal_kill_grace
            await asyncio.gather(*(s.aclose(grace) for s in sessions), return_exceptions=True)
        for s in sessions:  # their records and output stay: listed as lost at the next start
            if s.log is not None:
                s.log.close()

    async def _cleanup_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.cleanup_interval)
            try:
                await self.cleanup()
            except Exception:
                log.exception("cleanup pass failed")

    # --- queries ---------------------------------------------------------------------------

    def _session(self, user: str, id: str) -> TerminalSession:
        session = self._sessions.get((user, id))
        if session is None:
            raise NotFound(f"No terminal session {id!r}; list yours at /api/v1/terminal/sessions.")
        return session

    def get(self, user: str, id: str) -> TerminalInfo:
        return self._session(user, id).info()

    def find(self, user: str, id: str) -> TerminalSession | None:
        return self._sessions.get((user, id))

    def list_sessions(self, user: str) -> list[TerminalInfo]:
        return [s.info() for s in self._mine(user)]

    def list_json(self, user: str) -> bytes:
        """``list_sessions`` as a JSON array."""
        return b"[" + b",".join(s.info_json() for s in self._mine(user)) + b"]"

    def _mine(self, user: str) -> list[TerminalSession]:
        mine = [s for (owner, _), s in self._sessions.items() if owner == user]
        return sorted(mine, key=lambda s: s.created_at, reverse=True)

    def counts(self) -> Iterator[tuple[str, str, int]]:
        by_status = dict.fromkeys(TerminalStatus, 0)
        for s in self._sessions.values():
            by_status[s.status] += 1
        for status, count in by_status.items():
            yield ("terminal", status.value, count)

    @property
    def total_buffered_bytes(self) -> int:
        return self._total_bytes

    # --- life cycle ------------------------------------------------------------------------

    async def create(self, user: str, spec: TerminalSpec) -> TerminalInfo:
        """Start a session; returns once its process runs and its reader is attached."""
        id = spec.id if spec.id is not None else self._new_id(user)
        if not valid_session_id(id):
            raise BadRequest(f"Invalid session id {id!r}: use 1–64 characters of A-Z a-z 0-9 _ -.")
        if (user, id) in self._sessions or (user, id) in self._opening:
            raise Conflict(
                f"You already have a terminal session {id!r}; attach to it or pick another id."
            )
        self._check_limits(user)
        if spec.connection_id is not None:
            return await self._create_on_connection(user, id, spec)
        command = spec.command or [login_shell()]
        spare = self.spare.take()
        try:
            launch = self._launch(user, id, spec, command[0], spare)
        except BaseException:  # a bad cwd, say: the spare is as good as before
            self.spare.give_back(spare)
            raise
        try:  # synchronous from the checks above to the registration below: no race to lose
            process = PtyProcess.spawn(
                command, launch=launch, rows=spec.rows, cols=spec.cols, parked=spare
            )
        except OSError as exc:
            if spare is not None:
                spare.discard()
            launch.release()
            raise BadRequest(f"Cannot start {command[0]!r}: {exc.strerror or exc}.") from None
        number = self._number(user)
        session = self._build(
            user,
            id,
            name=spec.name or f"Terminal {number}",
            command=command,
            source=PtySource(process, id),
            rows=spec.rows,
            cols=spec.cols,
            log=self._open_log(user, id),
        )
        return await self._register(session, f"pid {process.pid}")

    async def _create_on_connection(self, user: str, id: str, spec: TerminalSpec) -> TerminalInfo:
        """A session on a saved connection's machine: the connection opens (every failed step
        a 502 that names it, nothing left behind), then the session registers as any other."""
        assert spec.connection_id is not None
        if self.connections is None:
            raise BadRequest("This server keeps no connections.")
        if spec.cwd is not None:
            raise BadRequest(
                "cwd is for terminals on this machine: a terminal on a connection starts where "
                "its login does (give a command that changes directory instead)."
            )
        connections = self.connections
        info, auth = connections.credentials(user, spec.connection_id)
        jump = connections.credentials(user, info.jump) if info.jump is not None else None
        for hop in (info, *([jump[0]] if jump else [])):  # the setting may have changed
            check_host(hop.host, self.settings.connection_allowed_hosts)
        from hearth.connections.ssh import open_terminal  # asyncssh: 0.3 s, at first use

        key = (user, id)
        self._opening.add(key)
        try:
            source = await open_terminal(
                info,
                auth,
                command=shlex.join(spec.command) if spec.command else None,
                env=spec.env,
                rows=spec.rows,
                cols=spec.cols,
                pin=lambda id, host_key: connections.pin(user, id, host_key),
                keepalive=self.settings.connection_keepalive_interval,
                jump=jump,
            )
        finally:
            self._opening.discard(key)
        session = self._build(
            user,
            id,
            name=spec.name or f"{info.name}",
            command=list(spec.command or []),
            source=source,
            rows=spec.rows,
            cols=spec.cols,
            log=self._open_log(user, id),
            protocol="ssh",
            connection_id=info.id,
        )
        self._number(user)
        return await self._register(session, source.describe())

    async def _register(self, session: TerminalSession, where: str) -> TerminalInfo:
        """A new session recorded and listed; ``where`` it runs (a pid, a host), for the log."""
        try:
            self._record(session)
        except Exception as exc:  # a full disk, say: no process is left without its record
            if session.log is not None:
                session.log.remove()
            await session.aclose(self.settings.terminal_kill_grace)
            raise storage_error(exc) or exc from None
        self._add(session)
        log.info("created", extra={"user": session.user, "session": session.id, "at": where})
        return session.info()

    async def ensure(self, user: str, spec: TerminalSpec) -> TerminalInfo:
        """The caller's session ``spec.id`` if it exists, else a new one (never kills work)."""
        if spec.id is not None and (user, spec.id) in self._sessions:
            return self._sessions[(user, spec.id)].info()
        return await self.create(user, spec)

    async def close(self, user: str, id: str) -> None:
        session = self._session(user, id)
        await self._remove(session)

    async def end_all(self) -> None:
        """Every session ends as if deleted (``hearth shutdown``): process, record and log."""
        await asyncio.gather(*(self._remove(s) for s in list(self._sessions.values())))

    async def _remove(self, session: TerminalSession) -> None:
        key = (session.user, session.id)
        if self._sessions.get(key) is session:
            del self._sessions[key]
            self._total_bytes -= len(session.buffer)
            if self._store is not None:
                self._store.delete("terminal", session.user, session.id)
            # before the wait below: a new session of the same id may open its log meanwhile
            if session.log is not None:
                session.log.remove()
            else:
                shutil.rmtree(self._log_dir(session.user, session.id), ignore_errors=True)
            if session.screen is not None:
                session.screen.close()
        await session.aclose(self.settings.terminal_kill_grace)
        log.info("closed", extra={"user": session.user, "session": session.id})

    async def cleanup(self, user: str | None = None) -> list[str]:
        """Close and remove timed-out sessions; returns the ids removed (of ``user`` if given)."""
        now = self._clock()
        doomed = [
            s
            for s in self._sessions.values()
            if expired(now, s.last_activity, len(s.attachments), self.settings.session_timeout)
        ]
        await asyncio.gather(*(self._remove(s) for s in doomed))
        return [s.id for s in doomed if user is None or s.user == user]

    # --- operations ------------------------------------------------------------------------

    def rename(self, user: str, id: str, name: str) -> TerminalInfo:
        session = self._session(user, id)
        old, session.name = session.name, name
        try:
            self._record(session)
        except Exception:
            session.name = old  # not renamed, as the error says
            raise
        session.touch()
        return session.info()

    def touch(self, user: str, id: str) -> TerminalInfo:
        session = self._session(user, id)
        session.touch()
        return session.info()

    def write(self, user: str, id: str, data: bytes) -> None:
        session = self._session(user, id)
        if len(data) + session.pending_input > self.settings.max_input_bytes:
            raise LimitReached(
                f"Input of {len(data)} bytes exceeds what the terminal can queue "
                f"({self.settings.max_input_bytes} bytes); send it in smaller pieces."
            )
        try:
            session.write(data)
        except BrokenPipeError:
            raise SessionClosed(
                f"Terminal session {id!r} has exited; its output stays readable, open a new one "
                "to type."
            ) from None

    def resize(self, user: str, id: str, rows: int, cols: int, by: int | None = None) -> None:
        """``by``: the viewer id of the attachment that asked (it is not told of its own)."""
        self._session(user, id).resize(rows, cols, by)

    def history(
        self, user: str, id: str, since: int = 0, limit: int | None = None
    ) -> list[tuple[Entry, str]]:
        """The message history, oldest first, each entry with its text."""
        session = self._session(user, id)
        return entry_text(session.history.select(since, limit), session.read_output)

    def recording(self, user: str, id: str) -> str:
        """The buffered session as an asciicast v2 recording."""
        session = self._session(user, id)
        env = {"TERM": "xterm-256color"}
        if session.command:  # a login shell on another machine names none
            env["SHELL"] = session.command[0]
        return render_cast(
            width=session.cols,
            height=session.rows,
            started=session.created_at,
            title=session.name,
            env=env,
            entries=entry_text(session.history.select(), session.read_output),
        )

    def attach(self, user: str, id: str, since: int | None = None) -> Attachment:
        """A new viewer from ``since`` (default: the oldest buffered byte); ``aclose`` it."""
        session = self._session(user, id)
        try:
            return session.attach(since)
        except ValueError as exc:
            raise BadRequest(f"{exc}; resume from output_end or earlier.") from None

    async def screen(self, user: str, id: str) -> dict[str, Any]:
        """The session's screen as its model holds it now (SPEC §9)."""
        return await self._screen_of(self._session(user, id)).snapshot()

    async def attach_screen(
        self, user: str, id: str, size: tuple[int, int] | None = None
    ) -> tuple[Attachment, dict[str, Any]]:
        """A viewer that starts from the screen: the snapshot, and live output from its offset.
        ``size`` (rows, cols) is applied first, so the screen is drawn at the viewer's size."""
        session = self._session(user, id)
        screen = self._screen_of(session)
        await screen.ready()
        session = self._session(user, id)  # it may have been closed (or made anew) meanwhile
        screen = self._screen_of(session)
        if size is not None and size != (session.rows, session.cols):
            self.resize(user, id, *size)
        offset, answer = screen.request()  # the request and the attachment at one offset
        attachment = session.attach(offset)
        try:
            return attachment, snapshot_at(offset, await answer)
        except BaseException:
            attachment.close()
            raise

    def _screen_of(self, session: TerminalSession) -> Screen:
        if session.screen is None:
            raise ScreenUnavailable(
                "This server keeps no screen model (screen_model is off, or Node.js was not "
                "found; see the host's log): replay the output instead."
            )
        return session.screen

    # --- limits ----------------------------------------------------------------------------

    def _check_limits(self, user: str) -> None:
        s = self.settings
        if len(self._sessions) + len(self._opening) >= s.max_terminals:
            raise LimitReached(
                f"The server runs its maximum of {s.max_terminals} terminals; close one first."
            )
        mine = sum(1 for owner, _ in [*self._sessions, *self._opening] if owner == user)
        if mine >= s.max_terminals_per_user:
            raise LimitReached(
                f"You have {mine} terminal sessions, the most allowed "
                f"(max_terminals_per_user); close one first."
            )

    def _on_buffer_change(self, delta: int) -> None:
        self._total_bytes += delta
        if delta > 0 and self._total_bytes > self.settings.max_total_buffer_bytes:
            self._shed_buffers()

    def _shed_buffers(self) -> None:
        """Over max_total_buffer_bytes: drop the oldest output of idle sessions first."""
        excess = self._total_bytes - self.settings.max_total_buffer_bytes
        order = sorted(
            self._sessions.values(), key=lambda s: (len(s.attachments) > 0, s.last_activity)
        )
        for session in order:
            if excess <= 0:
                break
            if session.screen is not None:
                session.screen.warm()  # from all of its output, before some leaves
            dropped = session.buffer.drop_oldest(min(excess, len(session.buffer)))
            session.history.forget_before(session.buffer.start)
            self._total_bytes -= dropped
            excess -= dropped
            if dropped:
                log.info("shed output", extra={"session": session.id, "bytes": dropped})

    # --- helpers ---------------------------------------------------------------------------

    # --- output on disk ---------------------------------------------------------------------

    def _log_dir(self, user: str, id: str) -> Path:
        return self._logs / user / id

    def _open_log(self, user: str, id: str) -> OutputLog | None:
        if self._store is None:
            return None  # nothing would find it again
        try:
            return OutputLog(self._log_dir(user, id), self.settings.max_buffer_bytes)
        except OSError as exc:
            log.warning("no output log", extra={"session": id, "error": str(exc)})
            return None

    def _restore_lost(self, record: dict[str, Any]) -> None:
        """A session of a previous run: closed, its output replayable from its log."""
        user, id = record["user"], record["id"]
        self._number(user)
        session = self._build(
            user,
            id,
            name=record.get("name", id),
            command=list(record.get("command", [])),
            source=None,
            rows=int(record.get("rows", 24)),
            cols=int(record.get("cols", 80)),
            closed_reason="host_lost",
            protocol=record.get("protocol", "local"),
            connection_id=record.get("connection_id"),
        )
        start, data = read_log(self._log_dir(user, id))
        buffer, history, now = session.buffer, session.history, self._clock()
        buffer.skip_to(start)
        buffer.append(data)
        if len(buffer):
            history.add_output(buffer.start, len(buffer), record.get("last_activity", now))
        history.add(EntryType.SYSTEM, buffer.end, now, "host lost: the session's process is gone")
        session.created_at = float(record.get("created_at", now))
        self._add(session)

    # --- building and registering ----------------------------------------------------------

    def _number(self, user: str) -> int:
        """The user's next terminal number (a new session's default name says it)."""
        number = self._counters[user] = self._counters.get(user, 0) + 1
        return number

    def _build(
        self,
        user: str,
        id: str,
        *,
        name: str,
        command: list[str],
        source: Source | None,
        rows: int,
        cols: int,
        log: OutputLog | None = None,
        closed_reason: str | None = None,
        protocol: str = "local",
        connection_id: str | None = None,
    ) -> TerminalSession:
        """A session with this server's buffer, history, timeout and clock (``source`` None:
        one restored with its process gone)."""
        s = self.settings
        return TerminalSession(
            id=id,
            user=user,
            name=name,
            command=command,
            source=source,
            rows=rows,
            cols=cols,
            buffer=OutputBuffer(s.max_buffer_size, s.max_buffer_bytes),
            history=History(max_entries=max(1000, 4 * s.max_buffer_size)),
            timeout=s.session_timeout,
            clock=self._clock,
            on_buffer_change=self._on_buffer_change,
            log=log,
            closed_reason=closed_reason,
            protocol=protocol,
            connection_id=connection_id,
        )

    def _add(self, session: TerminalSession) -> None:
        """Register ``session``, with its screen."""
        self._open_screen(session)
        self._sessions[(session.user, session.id)] = session
        self._total_bytes += len(session.buffer)  # what it buffered before it was counted

    def _record(self, session: TerminalSession) -> None:
        if self._store is not None:
            self._store.put(
                "terminal",
                session.user,
                session.id,
                {
                    "id": session.id,
                    "user": session.user,
                    "name": session.name,
                    "command": session.command,
                    "created_at": session.created_at,
                    "rows": session.rows,
                    "cols": session.cols,
                    "protocol": session.protocol,
                    "connection_id": session.connection_id,
                },
            )

    def _new_id(self, user: str) -> str:
        while True:
            id = secrets.token_hex(6)
            if (user, id) not in self._sessions:
                return id

    def _launch(
        self, user: str, id: str, spec: TerminalSpec, shell: str, spare: ParkedPty | None
    ) -> Prepared:
        home = self._homes / user
        uid = self._uids(user)
        if self.sandbox.bubblewrap:
            self.sandbox.make_home(home, uid)
        return self.sandbox.terminal(
            user=user,
            session_id=id,
            uid=uid,
            home=home,
            cwd=working_dir(home, spec.cwd, jailed=self.sandbox.bubblewrap),
            shell=shell,
            extra_env=spec.env,
            entered=spare.cgroup if spare is not None else None,
        )
