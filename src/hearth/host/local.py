"""The session core behind the protocols of :mod:`hearth.contract.api`, in this process.

The host's dispatch calls these for every call of :data:`hearth.contract.calls.CALLS`; tests may
call them directly. An ordered call's method must answer without waiting (the dispatch runs it
inline and refuses one that suspends), which is why they wrap the managers' plain functions.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Self

from hearth.connections.service import Connections
from hearth.contract.api import ConnectionsAPI, KernelsAPI, TerminalsAPI
from hearth.contract.connections import (
    ConnectionInfo,
    ConnectionPatch,
    ConnectionSpec,
    ConnectionTest,
)
from hearth.contract.terminals import Event, Refused, TerminalInfo, TerminalSpec
from hearth.errors import HearthError
from hearth.kernels.beneath import FileStream
from hearth.kernels.channels import ChannelLink, ChannelRelay
from hearth.kernels.service import KernelService
from hearth.protocol import FrameError, HistoryEntry
from hearth.protocol.jupyter import decode_v1
from hearth.protocol.kernels import KernelState
from hearth.terminals.attachment import Attachment
from hearth.terminals.manager import TerminalManager

__all__ = ["LocalChannels", "LocalConnections", "LocalKernels", "LocalTerminals", "LocalViewer"]

log = logging.getLogger("hearth.host")


class LocalViewer:
    """An attachment with the answer of the attach that made it."""

    def __init__(
        self,
        manager: TerminalManager,
        attachment: Attachment,
        session: TerminalInfo,
        screen: dict[str, Any] | None = None,
    ) -> None:
        self.manager = manager
        self.attachment = attachment
        self.viewer = attachment.viewer
        self.replay_from = attachment.replay_from
        self.replay_bytes = attachment.replay_bytes
        self.missed_bytes = attachment.missed_bytes
        self.session = session
        self.screen = screen

    def ack(self, offset: int) -> None:
        self.attachment.ack(offset)

    async def write(self, data: bytes) -> None:
        try:
            self.manager.write(self.session.user, self.session.id, data)
        except Exception as exc:
            self._refuse(exc)

    async def resize(self, rows: int, cols: int) -> None:
        try:
            self.manager.resize(self.session.user, self.session.id, rows, cols, self.viewer)
        except Exception as exc:
            self._refuse(exc)

    def _refuse(self, exc: Exception) -> None:
        """Nobody waits for an answer: the viewer's stream says what went wrong."""
        if isinstance(exc, HearthError):
            self.attachment.push(Refused(exc.message))
            return
        log.error("a viewer's input failed", exc_info=exc)
        self.attachment.push(Refused("The session host could not take this input; see its log."))

    def __aiter__(self) -> AsyncIterator[Event]:
        return self.attachment.__aiter__()

    def close(self) -> None:
        self.attachment.close()

    async def aclose(self) -> None:
        self.attachment.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.attachment.close()


_PIECE = 256 * 1024  # the size of a DATA frame's bytes, as a download's


async def _pieces(body: bytes) -> AsyncIterator[bytes]:
    for at in range(0, len(body), _PIECE):
        yield body[at : at + _PIECE]


class LocalTerminals:
    def __init__(self, manager: TerminalManager) -> None:
        self.manager = manager

    async def create(self, user: str, spec: TerminalSpec) -> TerminalInfo:
        return await self.manager.create(user, spec)

    async def ensure(self, user: str, spec: TerminalSpec) -> TerminalInfo:
        return await self.manager.ensure(user, spec)

    async def get(self, user: str, id: str) -> TerminalInfo:
        return self.manager.get(user, id)

    async def list_sessions(self, user: str) -> list[TerminalInfo]:
        return self.manager.list_sessions(user)

    async def list_json(self, user: str) -> FileStream:
        body = self.manager.list_json(user)  # sent as a download is
        return FileStream("sessions.json", len(body), _pieces(body))

    async def touch(self, user: str, id: str) -> TerminalInfo:
        return self.manager.touch(user, id)

    async def rename(self, user: str, id: str, name: str) -> TerminalInfo:
        return self.manager.rename(user, id, name)

    async def close(self, user: str, id: str) -> None:
        await self.manager.close(user, id)

    async def cleanup(self, user: str) -> list[str]:
        return await self.manager.cleanup(user)

    async def write(self, user: str, id: str, data: bytes) -> None:
        self.manager.write(user, id, data)

    async def resize(self, user: str, id: str, rows: int, cols: int, by: int | None = None) -> None:
        self.manager.resize(user, id, rows, cols, by)

    async def history(
        self, user: str, id: str, since: int = 0, limit: int | None = None
    ) -> list[HistoryEntry]:
        return [
            HistoryEntry(
                seq=e.seq, type=e.type.value, data=text, offset=e.offset, timestamp=e.timestamp
            )
            for e, text in self.manager.history(user, id, since, limit)
        ]

    async def recording(self, user: str, id: str) -> str:
        return self.manager.recording(user, id)

    async def attach(
        self, user: str, id: str, since: int | None = None, size: tuple[int, int] | None = None
    ) -> LocalViewer:
        """A viewer from ``since``; with ``size``, its window wins (as on any resize)."""
        attachment = self.manager.attach(user, id, since)
        try:
            if size is not None:
                self.manager.resize(user, id, size[0], size[1], by=attachment.viewer)
            return LocalViewer(self.manager, attachment, self.manager.get(user, id))
        except BaseException:
            attachment.close()
            raise

    async def attach_screen(
        self, user: str, id: str, size: tuple[int, int] | None = None
    ) -> LocalViewer:
        """A viewer that starts from the session's screen (SPEC §9), then live output."""
        attachment, screen = await self.manager.attach_screen(user, id, size)
        try:
            return LocalViewer(self.manager, attachment, self.manager.get(user, id), screen)
        except BaseException:
            attachment.close()
            raise

    async def screen(self, user: str, id: str) -> dict[str, Any]:
        return await self.manager.screen(user, id)


class LocalChannels:
    """A Jupyter client's hold on a session's channels, taking v1 messages. It takes hold of the
    relay at its first use (as its stream's pump starts): a stream closed before that holds
    nothing."""

    def __init__(self, relay: ChannelRelay) -> None:
        self._relay = relay
        self._link: ChannelLink | None = None

    def _held(self) -> ChannelLink:
        if self._link is None:
            self._link = self._relay.attach()
        return self._link

    async def send(self, message: bytes) -> None:
        try:
            channel, parts = decode_v1(message)
        except FrameError as exc:  # the web tier checks them: not a client's error
            log.warning("dropped a kernel message", extra={"reason": str(exc)})
            return
        await self._held().receive(channel, parts)

    async def next(self) -> bytes | None:
        return await self._held().next()

    async def aclose(self) -> None:
        if self._link is not None:
            await self._link.__aexit__(None, None, None)


class LocalKernels:
    def __init__(self, service: KernelService) -> None:
        self.service = service

    async def create(
        self,
        user: str,
        session_id: str | None = None,
        files: list[dict[str, Any]] | None = None,
        kernel_name: str | None = None,
    ) -> tuple[KernelState, bool]:
        return await self.service.create(user, session_id, files or [], kernel_name)

    async def get(self, user: str, session_id: str) -> KernelState:
        return self.service.get(user, session_id)

    async def sessions(self, user: str) -> list[KernelState]:
        return self.service.sessions(user)

    async def terminate(self, user: str, session_id: str) -> None:
        self.service.terminate(user, session_id)

    async def execute(
        self,
        user: str,
        session_id: str,
        code: str,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> AsyncGenerator[dict[str, Any], None]:
        return self.service.execute(user, session_id, code, timeout)

    async def interrupt(self, user: str, session_id: str) -> KernelState:
        return await self.service.interrupt(user, session_id)

    async def restart(self, user: str, session_id: str) -> KernelState:
        return await self.service.restart(user, session_id)

    async def list_files(self, user: str, session_id: str) -> list[dict[str, Any]]:
        return await self.service.list_files(user, session_id)

    async def open_file(self, user: str, session_id: str, path: str) -> FileStream:
        return self.service.open_file(user, session_id, path)

    async def write_file(
        self, user: str, session_id: str, path: str, chunks: AsyncIterator[bytes]
    ) -> dict[str, Any]:
        return await self.service.write_file(user, session_id, path, chunks)

    async def channels(
        self, user: str, session_id: str, client_session: str | None = None
    ) -> LocalChannels:
        return LocalChannels(self.service.channels(user, session_id, client_session))

    async def annotate(
        self, user: str, session_id: str, jupyter: dict[str, str] | None
    ) -> KernelState:
        return self.service.annotate(user, session_id, jupyter)

    async def kernelspecs(self) -> dict[str, Any]:
        return self.service.kernelspecs()

    async def open_kernelspec_file(self, name: str, path: str) -> FileStream:
        return self.service.open_kernelspec_file(name, path)

    async def pool_state(self) -> dict[str, int]:
        return self.service.pool_state()


class LocalConnections:
    def __init__(self, connections: Connections) -> None:
        self.connections = connections

    async def create(self, user: str, spec: ConnectionSpec) -> ConnectionInfo:
        return self.connections.create(user, spec)

    async def list_connections(self, user: str) -> list[ConnectionInfo]:
        return self.connections.list_connections(user)

    async def get(self, user: str, id: str) -> ConnectionInfo:
        return self.connections.get(user, id)

    async def change(self, user: str, id: str, patch: ConnectionPatch) -> ConnectionInfo:
        return self.connections.change(user, id, patch)

    async def delete(self, user: str, id: str) -> None:
        self.connections.delete(user, id)

    async def test(self, user: str, id: str) -> ConnectionTest:
        from hearth.connections.ssh import probe  # asyncssh: 0.3 s, at first use

        info, auth = self.connections.credentials(user, id)
        jump = None if info.jump is None else self.connections.credentials(user, info.jump)
        return await probe(info, auth, jump)


def _satisfies(
    terminals: LocalTerminals, kernels: LocalKernels, connections: LocalConnections
) -> tuple[TerminalsAPI, KernelsAPI, ConnectionsAPI]:
    return terminals, kernels, connections  # mypy checks that the core keeps the contract
