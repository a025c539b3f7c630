"""A terminal's bytes from a process on a local PTY: the master is read straight from the event
loop's reader callback, whether or not anyone watches."""

from __future__ import annotations

import asyncio
import logging
import os

from hearth.terminals.pty import PtyProcess, is_eof
from hearth.terminals.source import Sink

__all__ = ["PtySource"]

log = logging.getLogger("hearth.terminals")

READ_BYTES = 64 * 1024
BULK_READ = 2048  # a read this big means output is streaming, not echoing keystrokes


class PtySource:
    exit_reason: str | None = None

    def __init__(self, process: PtyProcess, name: str) -> None:
        self.process = process
        self.exited = process.exited
        self._name = name  # for the logs
        self._loop = asyncio.get_running_loop()
        self._sink: Sink | None = None
        self._reading = False
        self._pending_input = bytearray()

    def describe(self) -> str:
        return f"pid {self.process.pid}"

    def start(self, sink: Sink) -> None:
        self._sink = sink

    # --- output ----------------------------------------------------------------------------

    def pause_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self.process.fd)

    def resume_reading(self) -> None:
        if not self._reading and not self.process.fd_closed:
            self._reading = True
            self._loop.add_reader(self.process.fd, self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = os.read(self.process.fd, READ_BYTES)
        except BlockingIOError:
            return
        except OSError as exc:
            if not is_eof(exc):
                log.warning("read failed", extra={"session": self._name, "error": str(exc)})
            self.pause_reading()
            return
        if not data:
            self.pause_reading()
            return
        bulk = len(data) >= BULK_READ
        if bulk:
            data = self._read_more(data)
        assert self._sink is not None
        self._sink(data, bulk)

    def _read_more(self, data: bytes) -> bytes:
        """Streaming output: what else the PTY has now, up to READ_BYTES in all. A PTY hands
        over at most ~4 KiB a read, and everything after the read (the buffer, the log, the
        screen model, a frame to each viewer) costs per call: one call for several reads."""
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

    def drain(self, sink: Sink) -> None:
        self.pause_reading()
        while True:
            try:
                data = os.read(self.process.fd, READ_BYTES)
            except OSError:
                break
            if not data:
                break
            sink(data, False)
        self.process.close_fd()

    # --- input -----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
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
        try:
            written = self.process.write(bytes(self._pending_input))
        except OSError:
            written = len(self._pending_input)  # the process is gone; so is its input
        del self._pending_input[:written]
        if not self._pending_input:
            self._loop.remove_writer(self.process.fd)

    def resize(self, rows: int, cols: int) -> None:
        self.process.resize(rows, cols)

    # --- end -------------------------------------------------------------------------------

    async def terminate(self, grace: float) -> int:
        self.pause_reading()
        self._pending_input.clear()
        return await self.process.terminate(grace)

    def oom_kills(self) -> int:
        if self.exited.done():
            return self.process.oom_kills
        launch = self.process.launch
        return launch.oom_kills() if launch is not None and launch.cgroup is not None else 0

    @property
    def memory_limit(self) -> int:
        launch = self.process.launch
        return launch.memory_limit if launch is not None else 0
