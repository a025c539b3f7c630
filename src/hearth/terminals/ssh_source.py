"""A terminal's bytes from a PTY channel on another machine (SPEC §11), over asyncssh.

Flow control is the channel's window: paused, asyncssh stops acknowledging what it delivers,
so the remote side stalls once the window (``WINDOW``) is used, and nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from hearth.connections.quiet_asyncssh import asyncssh
from hearth.terminals.source import Sink

__all__ = ["LOST_EXIT", "WINDOW", "SshSource", "TerminalChannel"]

log = logging.getLogger("hearth.terminals")

WINDOW = 512 * 1024  # what a stalled SSH terminal may hold in flight
BULK = 2048  # a delivery this big means output is streaming, not echoing keystrokes
LOST_EXIT = 255  # the exit status of a session whose connection was lost (as ssh's own)


class TerminalChannel(asyncssh.SSHClientSession[bytes]):
    """The channel's callbacks: output to the sink (kept until the session starts), the end."""

    def __init__(self) -> None:
        self.sink: Sink | None = None
        self.early: list[bytes] = []
        self.exit_status: int | None = None
        self.ended: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self.sink is None:
            self.early.append(data)
        else:
            self.sink(data, len(data) >= BULK)

    def exit_status_received(self, status: int) -> None:
        self.exit_status = status

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self.exit_status = 128 + _SIGNALS.get(signal, 0)

    def connection_lost(self, exc: Exception | None) -> None:
        why = None
        if exc is not None:
            why = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        if not self.ended.done():
            self.ended.set_result(why)


_SIGNALS = {"HUP": 1, "INT": 2, "QUIT": 3, "KILL": 9, "SEGV": 11, "PIPE": 13, "TERM": 15}


class SshSource:
    def __init__(
        self,
        connection: asyncssh.SSHClientConnection,
        channel: asyncssh.SSHClientChannel[bytes],
        session: TerminalChannel,
        where: str,
        tunnel: asyncssh.SSHClientConnection | None = None,
    ) -> None:
        self.connection = connection
        self.tunnel = tunnel  # the jump host's connection, if it was reached through one
        self.channel = channel
        self.session = session
        self.where = where  # user@host:port, for the logs
        self.exit_reason: str | None = None
        self._closed_here = False  # ended by Hearth (a delete, a shutdown): no link was lost
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        session.ended.add_done_callback(self._on_end)

    def describe(self) -> str:
        return self.where

    def start(self, sink: Sink) -> None:
        self.session.sink = sink
        early, self.session.early = self.session.early, []
        for data in early:
            sink(data, len(data) >= BULK)

    def pause_reading(self) -> None:
        self.channel.pause_reading()

    def resume_reading(self) -> None:
        self.channel.resume_reading()

    def write(self, data: bytes) -> None:
        self.channel.write(data)

    @property
    def pending_input(self) -> int:
        return self.channel.get_write_buffer_size()

    def resize(self, rows: int, cols: int) -> None:
        with contextlib.suppress(OSError, asyncssh.Error):
            self.channel.change_terminal_size(cols, rows)

    def drain(self, sink: Sink) -> None:
        """asyncssh delivers a channel's data before its end: nothing is left to read."""
        self._hang_up()

    def _hang_up(self) -> None:
        self.connection.close()
        if self.tunnel is not None:
            self.tunnel.close()

    async def terminate(self, grace: float) -> int:
        self._closed_here = True
        self.channel.close()
        self._hang_up()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.exited), grace)
        if not self.exited.done():
            self.connection.abort()
            if self.tunnel is not None:
                self.tunnel.abort()
            self.exited.set_result(LOST_EXIT)
        return self.exited.result()

    def oom_kills(self) -> int:
        return 0

    @property
    def memory_limit(self) -> int:
        return 0

    def _on_end(self, ended: asyncio.Future[str | None]) -> None:
        if self.exited.done():
            return
        status = self.session.exit_status
        if status is None and self._closed_here:
            status = LOST_EXIT
        elif status is None:
            why = ended.result() or "the server closed the channel without an exit status"
            self.exit_reason = f"connection lost: {why}"
            status = LOST_EXIT
        log.info("ssh channel ended", extra={"ssh": self.where, "exit_code": status})
        self.exited.set_result(status)
