"""A terminal session: its source of bytes (a process on a local PTY, or a PTY channel on
another machine), its output buffer, its history and its viewers.

The source is read whether or not anyone watches.

Flow control (which viewer holds the shell back, and when the PTY is read) is decided by
:class:`hearth.terminals.flow.FlowControl`, a pure module; this class applies its decisions: it
trims the buffer to the holders' floor, pauses and resumes the reader, runs the stall timer and
tells released viewers what they missed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pydantic import TypeAdapter

from hearth.contract.terminals import Resized, TerminalInfo, TerminalStatus, ViewerCount
from hearth.terminals.attachment import Attachment
from hearth.terminals.buffer import OutputBuffer
from hearth.terminals.flow import FlowControl
from hearth.terminals.history import EntryType, History
from hearth.terminals.outlog import OutputLog
from hearth.terminals.screen import Screen
from hearth.terminals.source import Source

__all__ = ["TerminalInfo", "TerminalSession", "TerminalStatus"]

log = logging.getLogger("hearth.terminals")

STALL_TIMEOUT = 2.0
LOG_FLUSH_DELAY = 0.005  # seconds gathered output may wait for the log when no viewer pulls it
OOM_CHECK_INTERVAL = 0.5  # seconds between looks at the cgroup's OOM kills, while output flows


_INFO_JSON: TypeAdapter[TerminalInfo] = TypeAdapter(TerminalInfo)


class TerminalSession:
    def __init__(
        self,
        *,
        id: str,
        user: str,
        name: str,
        command: list[str],
        source: Source | None,
        rows: int,
        cols: int,
        buffer: OutputBuffer,
        history: History,
        timeout: float,
        clock: Callable[[], float],
        on_buffer_change: Callable[[int], None] = lambda delta: None,
        log: OutputLog | None = None,
        closed_reason: str | None = None,
        protocol: str = "local",
        connection_id: str | None = None,
    ) -> None:
        """``source`` None: a session restored from its log with nothing left to read (its
        host was lost; ``closed_reason`` says so)."""
        self.id = id
        self.user = user
        self.name = name
        self.command = command
        self.source = source
        self.protocol = protocol
        self.connection_id = connection_id
        self.rows = rows
        self.cols = cols
        self.buffer = buffer
        self.history = history
        self.timeout = timeout
        self._clock = clock
        self._on_buffer_change = on_buffer_change
        self.created_at = self.last_activity = clock()
        self.exit_code: int | None = None
        self.exit_reason: str | None = None  # why the sandbox ended it, if it did
        self.closed_reason = closed_reason
        self.log = log
        self.screen: Screen | None = None  # its screen model (SPEC §9), if the host has one
        self._log_timer: asyncio.TimerHandle | None = None
        self._oom_reported = 0  # OOM kills already told in the history
        self._oom_checked = float("-inf")
        self.drained = False  # every byte the process wrote is in the buffer
        self.bulk = False  # the last read was large: output is streaming
        self.attachments: set[Attachment] = set()
        self.flow: FlowControl[Attachment] = FlowControl(max(256 * 1024, buffer.max_bytes))
        self._loop = asyncio.get_running_loop()
        self._reading = False
        self._stall_timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._listed: tuple[tuple[object, ...], bytes] | None = None  # see info_json
        if source is None:
            self.drained = True
            return
        source.start(self._on_output)
        self._resume_reading()
        source.exited.add_done_callback(self._on_exit)

    # --- state -----------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self.exit_code is None and self.source is not None

    @property
    def status(self) -> TerminalStatus:
        if not self.alive:
            return TerminalStatus.CLOSED
        return TerminalStatus.ACTIVE if self.attachments else TerminalStatus.DISCONNECTED

    @property
    def expires_at(self) -> float | None:
        return None if self.attachments else self.last_activity + self.timeout

    def info(self) -> TerminalInfo:
        return TerminalInfo(
            id=self.id,
            name=self.name,
            user=self.user,
            protocol=self.protocol,
            status=self.status,
            alive=self.alive,
            exit_code=self.exit_code,
            created_at=self.created_at,
            last_activity=self.last_activity,
            expires_at=self.expires_at,
            rows=self.rows,
            cols=self.cols,
            viewers=len(self.attachments),
            output_start=self.buffer.start,
            output_end=self.buffer.end,
            command=list(self.command),
            closed_reason=self.closed_reason,
            connection_id=self.connection_id,
            exit_reason=self.exit_reason,
        )

    def info_json(self) -> bytes:
        """``info()`` as JSON, made again only when something it shows changed: a list of
        thousands of mostly idle sessions costs a comparison each (SPEC §12)."""
        state = (
            self.name,
            self.exit_code,
            self.source is not None,
            len(self.attachments),
            self.last_activity,
            self.timeout,
            self.rows,
            self.cols,
            self.buffer.start,
            self.buffer.end,
            self.closed_reason,
            self.exit_reason,
        )
        if self._listed is None or self._listed[0] != state:
            self._listed = (state, _INFO_JSON.dump_json(self.info()))
        return self._listed[1]

    def touch(self) -> None:
        self.last_activity = self._clock()

    def output_since(self, offset: int | None) -> tuple[bytes, int] | None:
        """The output from ``offset`` (None: from the oldest byte buffered) to the end, and the
        end's offset; None if ``offset`` has left the buffer. What the screen model is fed."""
        buffer = self.buffer
        start = buffer.start if offset is None else offset
        if start < buffer.start:
            return None
        return buffer.read(start, buffer.end - start), buffer.end

    def read_output(self, offset: int, length: int) -> bytes:
        """The still-buffered part of output range [offset, offset + length)."""
        start = max(offset, self.buffer.start)
        return self.buffer.read(start, offset + length - start)

    # --- viewers ---------------------------------------------------------------------------

    def attach(self, since: int | None) -> Attachment:
        attachment = Attachment(self, since)
        self.attachments.add(attachment)
        self.flow.attach(attachment, attachment.offset)
        self.touch()
        self._broadcast_viewers()
        return attachment

    def detach(self, attachment: Attachment) -> None:
        if attachment in self.attachments:
            self.attachments.discard(attachment)
            self.flow.detach(attachment)
            self.touch()
            self._broadcast_viewers()
            self._relieve()

    def _broadcast_viewers(self) -> None:
        event = ViewerCount(len(self.attachments))
        for a in self.attachments:
            a.push(event)

    # --- input -----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue input for the process; what the PTY can't take now is written when it can."""
        if not self.alive or self._closing:
            raise BrokenPipeError("the session's process has exited")
        if not data:
            return
        self.touch()
        self.history.add(EntryType.INPUT, self.buffer.end, self.last_activity, data)
        assert self.source is not None  # alive
        self.source.write(data)

    @property
    def pending_input(self) -> int:
        return self.source.pending_input if self.source is not None else 0

    def resize(self, rows: int, cols: int, by: int | None = None) -> None:
        """The last resize wins; the other viewers are told."""
        self.rows, self.cols = rows, cols
        if self.source is not None and self.alive:
            self.source.resize(rows, cols)
        if self.screen is not None:
            self.screen.resize(rows, cols)
        self.history.add(EntryType.SYSTEM, self.buffer.end, self._clock(), f"resize {cols}x{rows}")
        for a in self.attachments:
            if a.viewer != by:
                a.push(Resized(rows, cols))

    # --- output ----------------------------------------------------------------------------

    def _on_output(self, data: bytes, bulk: bool) -> None:
        self.bulk = bulk
        self._append(data)
        if self.last_activity - self._oom_checked >= OOM_CHECK_INTERVAL:
            self._check_oom()
        buffer = self.buffer
        released = self.flow.output(buffer.pinned_bytes, buffer.start + buffer.pinned_bytes)
        if released:
            self._release(released)
        elif not self.flow.reading:
            self._pause_reading()
            self._restart_stall_timer()

    def _append(self, data: bytes) -> None:
        before = len(self.buffer)
        self.last_activity = now = self._clock()
        if self.screen is not None and self.screen.cold and not self.buffer.fits(data):
            self.screen.warm()  # from all of its output, before the buffer drops some
        self.buffer.append(data, floor=self.flow.floor())
        if self.log is not None:
            self.log.append(data)
            if self.log.pending and self._log_timer is None:
                self._log_timer = self._loop.call_later(LOG_FLUSH_DELAY, self.flush_log)
        if self.screen is not None:
            self.screen.output(data, self.buffer.end, streaming=self.bulk)
        self.history.add_output(self.buffer.end - len(data), len(data), now)
        self.history.forget_before(self.buffer.start)
        self._on_buffer_change(len(self.buffer) - before)
        for a in self.attachments:
            a.notify()

    def flush_log(self) -> None:
        """Write the gathered output to the log: before a viewer gets any of it, and soon after
        output stops."""
        if self._log_timer is not None:
            self._log_timer.cancel()
            self._log_timer = None
        if self.log is not None:
            self.log.flush()

    def _check_oom(self) -> None:
        """Say in the history when the memory limit killed a process of the session (its shell
        goes on: it prints "Killed", which is the output that brings us here)."""
        self._oom_checked = self.last_activity
        kills = self.source.oom_kills() if self.source is not None else 0
        if kills > self._oom_reported:
            self._oom_reported = kills
            self.history.add(
                EntryType.SYSTEM,
                self.buffer.end,
                self._clock(),
                f"a process was killed for going over the session's {self._memory_limit()}",
            )

    def _memory_limit(self) -> str:
        limit = self.source.memory_limit if self.source is not None else 0
        return f"memory limit ({limit >> 20} MiB)"

    def on_progress(self, attachment: Attachment) -> None:
        """An attachment's output was delivered (acked); it may hold again, free the reader."""
        self.flow.progress(attachment, attachment.acked, self.buffer.end)
        if self._stall_timer is not None:
            self._restart_stall_timer()
        self._relieve()

    def _relieve(self) -> None:
        before = len(self.buffer)
        self.buffer.trim(self.flow.floor())
        self.history.forget_before(self.buffer.start)
        self._on_buffer_change(len(self.buffer) - before)
        if self.flow.relieved(self.buffer.pinned_bytes):
            self._resume_reading()

    def _restart_stall_timer(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
        self._stall_timer = self._loop.call_later(STALL_TIMEOUT, self._on_stall)

    def _on_stall(self) -> None:
        self._stall_timer = None
        stalled = self.flow.stalled(self.buffer.end)
        log.info("viewers stalled", extra={"session": self.id, "count": len(stalled)})
        self._release(stalled)

    def _release(self, attachments: list[Attachment]) -> None:
        for a in attachments:
            a.notify()
        self._relieve()

    def _pause_reading(self) -> None:
        if self._reading and self.source is not None:
            self._reading = False
            self.source.pause_reading()

    def _resume_reading(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        if self.source is not None and not self._reading and not self.drained and not self._closing:
            self._reading = True
            self.source.resume_reading()

    # --- end -------------------------------------------------------------------------------

    def _on_exit(self, exited: asyncio.Future[int]) -> None:
        if exited.cancelled():
            return
        self._drain()
        self.exit_code = exited.result()
        assert self.source is not None
        what = f"exited {self.exit_code}"
        if self.source.oom_kills() > self._oom_reported:  # the last of it: its shell, likely
            self.exit_reason = self._memory_limit()
            what += f": a process was killed for going over the session's {self.exit_reason}"
        elif self.source.exit_reason:
            self.exit_reason = self.source.exit_reason
            what += f": {self.exit_reason}"
        self.history.add(EntryType.SYSTEM, self.buffer.end, self._clock(), what)
        self.touch()
        log.info("exited", extra={"session": self.id, "exit_code": self.exit_code})
        for a in self.attachments:
            a.notify()

    def _drain(self) -> None:
        """Take what the source still had when it ended, then hang it up."""
        assert self.source is not None
        self._pause_reading()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        if not self._closing:
            self.source.drain(lambda data, bulk: self._append(data))
        self.drained = True
        self.flush_log()

    async def aclose(self, grace: float) -> None:
        """End the source (a process: SIGHUP, grace, SIGKILL, reap) and every viewer."""
        self._closing = True
        self._pause_reading()
        try:
            if self.source is not None:
                await asyncio.shield(self.source.terminate(grace))
        finally:
            self.drained = True
            self.flush_log()
            for a in list(self.attachments):
                a.closed = True
                a.notify()
            self.attachments.clear()
