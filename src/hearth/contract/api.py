"""The session core as the web tier sees it: what :data:`hearth.contract.calls.CALLS` reaches.

The host serves these with the in-process core (:mod:`hearth.host.local`); the web tier calls
them through the socket (:mod:`hearth.server.host_client`). Either satisfies these protocols,
so code and tests written against them run on either side.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Protocol, Self

from hearth.contract.connections import (
    ConnectionInfo,
    ConnectionPatch,
    ConnectionSpec,
    ConnectionTest,
)
from hearth.contract.terminals import Event, TerminalInfo, TerminalSocket, TerminalSpec
from hearth.protocol import HistoryEntry
from hearth.protocol.kernels import KernelState

__all__ = [
    "Channels",
    "ConnectionsAPI",
    "Download",
    "KernelsAPI",
    "SocketsAPI",
    "TerminalsAPI",
    "Viewer",
]


class Viewer(Protocol):
    """A viewer of a terminal session: its output and events, acked as they are delivered."""

    viewer: int
    replay_from: int
    replay_bytes: int
    missed_bytes: int
    session: TerminalInfo  # as it was when the viewer attached
    screen: dict[str, Any] | None  # the screen it starts from (attach_screen), else None

    def ack(self, offset: int) -> None: ...
    async def write(self, data: bytes) -> None:
        """Input to the session, in order, without waiting for an answer: if it is refused,
        a ``Refused`` event says why."""

    async def resize(self, rows: int, cols: int) -> None:
        """This viewer's window, which wins (as any viewer's last resize does)."""

    def __aiter__(self) -> AsyncIterator[Event]: ...
    async def aclose(self) -> None: ...
    async def __aenter__(self) -> Self: ...
    async def __aexit__(self, *exc_info: object) -> None: ...


class Download(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def chunks(self) -> AsyncIterator[bytes]: ...


class Channels(Protocol):
    """A Jupyter client's connection to a kernel session's channels (v1 framing, both ways)."""

    async def send(self, message: bytes) -> None: ...
    async def next(self) -> bytes | None: ...  # None once the session ended
    async def aclose(self) -> None: ...


class TerminalsAPI(Protocol):
    async def create(self, user: str, spec: TerminalSpec) -> TerminalInfo: ...
    async def ensure(self, user: str, spec: TerminalSpec) -> TerminalInfo: ...
    async def get(self, user: str, id: str) -> TerminalInfo: ...
    async def list_sessions(self, user: str) -> list[TerminalInfo]: ...
    # the same list as JSON, made where the sessions are: what the API answers, not parsed on
    # the way (a user with thousands of sessions; many nodes merging their lists)
    async def list_json(self, user: str) -> Download: ...
    async def touch(self, user: str, id: str) -> TerminalInfo: ...
    async def rename(self, user: str, id: str, name: str) -> TerminalInfo: ...
    async def close(self, user: str, id: str) -> None: ...
    async def cleanup(self, user: str) -> list[str]: ...
    async def write(self, user: str, id: str, data: bytes) -> None: ...
    async def resize(
        self, user: str, id: str, rows: int, cols: int, by: int | None = None
    ) -> None: ...
    async def history(
        self, user: str, id: str, since: int = 0, limit: int | None = None
    ) -> list[HistoryEntry]: ...
    async def recording(self, user: str, id: str) -> str: ...
    async def attach(
        self, user: str, id: str, since: int | None = None, size: tuple[int, int] | None = None
    ) -> Viewer: ...
    async def attach_screen(
        self, user: str, id: str, size: tuple[int, int] | None = None
    ) -> Viewer: ...
    async def screen(self, user: str, id: str) -> dict[str, Any]: ...


class KernelsAPI(Protocol):
    async def create(
        self,
        user: str,
        session_id: str | None = None,
        files: list[dict[str, Any]] | None = None,
        kernel_name: str | None = None,
    ) -> tuple[KernelState, bool]: ...
    async def get(self, user: str, session_id: str) -> KernelState: ...
    async def sessions(self, user: str) -> list[KernelState]: ...
    async def terminate(self, user: str, session_id: str) -> None: ...
    async def execute(
        self,
        user: str,
        session_id: str,
        code: str,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> AsyncGenerator[dict[str, Any], None]: ...
    async def interrupt(self, user: str, session_id: str) -> KernelState: ...
    async def restart(self, user: str, session_id: str) -> KernelState: ...
    async def list_files(self, user: str, session_id: str) -> list[dict[str, Any]]: ...
    async def open_file(self, user: str, session_id: str, path: str) -> Download: ...
    async def write_file(
        self, user: str, session_id: str, path: str, chunks: AsyncIterator[bytes]
    ) -> dict[str, Any]: ...
    async def channels(
        self, user: str, session_id: str, client_session: str | None = None
    ) -> Channels: ...
    async def annotate(
        self, user: str, session_id: str, jupyter: dict[str, str] | None
    ) -> KernelState: ...
    async def kernelspecs(self) -> dict[str, Any]: ...
    async def open_kernelspec_file(self, name: str, path: str) -> Download: ...
    async def pool_state(self) -> dict[str, int]: ...


class SocketsAPI(Protocol):
    """Websockets handed to the host before their handshake (a host on the same machine only:
    the connection's descriptor travels apart, under ``ticket``). The events stream ends when
    the socket does; a web tier that goes away leaves the socket served."""

    async def terminal(
        self,
        user: str,
        id: str,
        ticket: int,
        request: str,
        socket: TerminalSocket,
        heartbeat: float,
    ) -> AsyncIterator[dict[str, Any]]: ...


class ConnectionsAPI(Protocol):
    """A user's saved connections; answers never carry a secret."""

    async def create(self, user: str, spec: ConnectionSpec) -> ConnectionInfo: ...
    async def list_connections(self, user: str) -> list[ConnectionInfo]: ...
    async def get(self, user: str, id: str) -> ConnectionInfo: ...
    async def change(self, user: str, id: str, patch: ConnectionPatch) -> ConnectionInfo: ...
    async def delete(self, user: str, id: str) -> None: ...
    async def test(self, user: str, id: str) -> ConnectionTest: ...
