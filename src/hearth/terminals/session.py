"""A terminal session: a process on a PTY, its output buffer, its history and its viewers.

The PTY is read whether or not anyone watches, straight from the event loop's reader callback.

Flow control (which viewer holds the shell back, and when the PTY is read) is decided by
:class:`hearth.terminals.flow.FlowControl`, a pure module; this class applies its decisions: it
trims the buffer to the holders' floor, pauses and resumes the reader, runs the stall timer and
tells released viewers what they missed.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

from hearth.contract.terminals import Resized, TerminalInfo, TerminalStatus, ViewerCount
from hearth.terminals.attachment import Attachment
from hearth.terminals.buffer import OutputBuffer
from hearth.terminals.flow import FlowControl
from hearth.terminals.history import EntryType, History
from hearth.terminals.outlog import OutputLog
from hearth.terminals.pty import PtyProcess, is_eof
from hearth.terminals.screen import Screen

__all__ = ["TerminalInfo", "TerminalSession", "TerminalStatus"]

log = logging.getLogger("hearth.terminals")

READ_BYTES = 64 * 1024
BULK_READ = 2048  # a read this big means output is streaming, not echoing keystrokes
STALL_TIMEOUT = 2.0
LOG_FLUSH_DELAY = 0.005  # seconds gathered output may wait for the log when no viewer pulls it
OOM_CHECK_INTERVAL = 0.5  # seconds between looks at the cgroup's OOM kills, while output flows


class TerminalSession:
    def __init__(
        self,
        *,
        id: str,
        user: str,
        name: str,
        command: list[str],
        process: PtyProcess | None,
        rows: int,
        cols: int,
        buffer: OutputBuffer,
        history: History,
        timeout: float,
        clock: Callable[[], float],
        on_buffer_change: Callable[[int], None] = lambda delta: None,
        log: OutputLog | None = None,
        closed_reason: str | None = None,
    ) -> None:
        """``process`` None: a session restored from its log with no process left (its host was
        lost; ``closed_reason`` says so)."""
        self.id = id
        self.user = user
        self.name = name
        self.command = command
        self.process = process
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
        self._pending_input = bytearray()
        self._closing = False
        if process is None:
            self.drained = True
            return
        self._resume_reading()
        process.exited.add_done_callback(self._on_process_exit)

    # --- state -----------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self.exit_code is None and self.process is not None

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
            protocol="local",
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
        )

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
        assert self.process is not None  # alive
        if self._pending_input:
            self._pending_input += data
            return
        written = self.process.write(data)
        if written < len(data):
            self._pending_input += data[written:]
            self._loop.add_writer(self.process.fd, self._flush_input)

    @property
    def pending_input(self) -> int:
        return len(self._pending_input)

    def _flush_input(self) -> None:
        assert self.process is not None
        try:
            written = self.process.write(bytes(self._pending_input))
        except OSError:
            written = len(self._pending_input)  # the process is gone; so is its input
        del self._pending_input[:written]
        if not self._pending_input:
            self._loop.remove_writer(self.process.fd)

    def resize(self, rows: int, cols: int, by: int | None = None) -> None:
        """The last resize wins; the other viewers are told."""
        self.rows, self.cols = rows, cols
        if self.process is not None and self.alive:
            self.process.resize(rows, cols)
        if self.screen is not None:
            self.screen.resize(rows, cols)
        self.history.add(EntryType.SYSTEM, self.buffer.end, self._clock(), f"resize {cols}x{rows}")
        for a in self.attachments:
            if a.viewer != by:
                a.push(Resized(rows, cols))

    # --- output ----------------------------------------------------------------------------

    def _on_readable(self) -> None:
        assert self.process is not None
        try:
            data = os.read(self.process.fd, READ_BYTES)
        except BlockingIOError:
            return
        except OSError as exc:
            if not is_eof(exc):
                log.warning("read failed", extra={"session": self.id, "error": str(exc)})
            self._pause_reading()
            return
        if not data:
            self._pause_reading()
            return
        self.bulk = len(data) >= BULK_READ
        if self.bulk:
            data = self._read_more(data)
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

    def _read_more(self, data: bytes) -> bytes:
        """Streaming output: what else the PTY has now, up to READ_BYTES in all. A PTY hands
        over at most ~4 KiB a read, and everything after the read (the buffer, the log, the
        screen model, a frame to each viewer) costs per call: one call for several reads."""
        assert self.process is not None
        parts, total = [data], len(data)
        while total < READ_BYTES:
            try:
                more = os.read(self.process.fd, READ_BYTES - total)
            except OSError:  # nothing yet, or the end: the next wake-up sees it
                break
            if not more:
                break
            parts.append(more)
            total += len(more)
            if len(more) < BULK_READ:
                break
        return parts[0] if len(parts) == 1 else b"".join(parts)

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
        launch = self.process.launch if self.process is not None else None
        if launch is None or launch.cgroup is None:
            return
        kills = launch.oom_kills()
        if kills > self._oom_reported:
            self._oom_reported = kills
            self.history.add(
                EntryType.SYSTEM,
                self.buffer.end,
                self._clock(),
                f"a process was killed for going over the session's {self._memory_limit()}",
            )

    def _memory_limit(self) -> str:
        launch = self.process.launch if self.process is not None else None
        return f"memory limit ({(launch.memory_limit if launch else 0) >> 20} MiB)"

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
        if self._reading and self.process is not None:
            self._reading = False
            self._loop.remove_reader(self.process.fd)

    def _resume_reading(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        if (
            self.process is not None
            and not self._reading
            and not self.drained
            and not self._closing
        ):
            self._reading = True
            self._loop.add_reader(self.process.fd, self._on_readable)

    # --- end -------------------------------------------------------------------------------

    def _on_process_exit(self, exited: asyncio.Future[int]) -> None:
        if exited.cancelled():
            return
        self._drain()
        self.exit_code = exited.result()
        assert self.process is not None
        if self.process.oom_kills > self._oom_reported:  # the last of it: its shell, likely
            self.exit_reason = self._memory_limit()
        what = f"exited {self.exit_code}"
        if self.exit_reason:
            what += f": a process was killed for going over the session's {self.exit_reason}"
        self.history.add(EntryType.SYSTEM, self.buffer.end, self._clock(), what)
        self.touch()
        log.info("exited", extra={"session": self.id, "exit_code": self.exit_code})
        for a in self.attachments:
            a.notify()

    def _drain(self) -> None:
        """Read what the process wrote before it exited, then hang up the PTY."""
        assert self.process is not None
        self._pause_reading()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        while not self._closing:
            try:
                data = os.read(self.process.fd, READ_BYTES)
            except OSError:
                break
            if not data:
                break
            self._append(data)
        self.drained = True
        self.flush_log()
        self.process.close_fd()

    async def aclose(self, grace: float) -> None:
        """Terminate the process session (SIGHUP, grace, SIGKILL, reap) and end every viewer."""
        self._closing = True
        self._pause_reading()
        try:
            if self.process is not None:
                await asyncio.shield(self.process.terminate(grace))
        finally:
            self.drained = True
            self.flush_log()
            self._pending_input.clear()
            for a in list(self.attachments):
                a.closed = True
                a.notify()
            self.attachments.clear()
