"""The web tier's side of the session host's socket: :mod:`hearth.contract.api`, remote.

``HostClient.terminals`` and ``HostClient.kernels`` make the calls of
:data:`hearth.contract.calls.CALLS`; what streams (a viewer, an execution, a download, an
upload, a Jupyter client's channels) is a stream of frames under the call's id with credit both
ways. When the connection is
lost, pending calls and streams fail with :class:`HostUnavailable` (websockets close with 1012,
so clients come back and resume by offset) and the next call connects again — to a new host if
the old one is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from hearth import __version__
from hearth.contract import calls, wire
from hearth.contract.api import ConnectionsAPI, KernelsAPI, SocketsAPI, TerminalsAPI
from hearth.contract.calls import Attached, Call, FileHead, Stream
from hearth.contract.connections import (
    ConnectionInfo,
    ConnectionPatch,
    ConnectionSpec,
    ConnectionTest,
)
from hearth.contract.framing import FrameProtocol
from hearth.contract.streams import ACK_STEP, Credit, Inbox
from hearth.contract.terminals import Event, Output, TerminalInfo, TerminalSocket, TerminalSpec
from hearth.errors import HostUnavailable
from hearth.protocol import HistoryEntry
from hearth.protocol.kernels import KernelState
from hearth.tasks import TaskSet

__all__ = [
    "HostClient",
    "Link",
    "RemoteAttachment",
    "RemoteChannels",
    "RemoteConnections",
    "RemoteFile",
    "RemoteSockets",
]

log = logging.getLogger("hearth.host.client")

A = TypeVar("A", bound=BaseModel)
R = TypeVar("R")

ACK_DELAY = 0.01  # seconds a small ack may wait to be gathered with the next
LOST = "The session host stopped; Hearth starts it again at the next request. Retry."


class Link:
    """One connection to a host. ``await Link.open(address)`` returns it after the host's hello
    (read it in ``hello``; a host of another protocol is the caller's to refuse)."""

    def __init__(self) -> None:
        self.wire = FrameProtocol(self._frame, lambda exc: self._lost())
        self.hello: dict[str, Any] = {}
        self._greeting: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self.inboxes: dict[int, tuple[Inbox[Any], bool]] = {}  # id → (inbox, is a viewer)
        self.credits: dict[int, Credit] = {}
        self.alive = True
        self.on_lost: Callable[[], None] | None = None

    @classmethod
    async def open(cls, address: str, timeout: float) -> Link | None:  # noqa: ASYNC109
        """None when nothing answers at ``address`` (no host runs there)."""
        loop = asyncio.get_running_loop()
        link = cls()
        try:
            await loop.create_unix_connection(lambda: link.wire, address)
        except (FileNotFoundError, ConnectionRefusedError):
            return None
        link.wire.send(
            wire.json_frame({"op": "hello", "protocol": wire.PROTOCOL, "version": __version__})
        )
        try:
            link.hello = await asyncio.wait_for(asyncio.shield(link._greeting), timeout)
        except (TimeoutError, HostUnavailable):
            link.wire.abort()
            return None
        return link

    def new_id(self) -> int:
        return next(self._ids)

    def send(self, frame: bytes) -> None:
        if not self.alive:
            raise HostUnavailable(LOST)
        self.wire.send(frame)

    async def drain(self) -> None:
        await self.wire.drain()

    def start_call(self, id: int, call: Call[A, Any], args: A) -> asyncio.Future[Any]:
        """Send ``call``; the future has its raw answer (``call.load_answer`` reads it)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[id] = future
        self._send_call(id, call, args)
        return future

    async def send_call(self, call: Call[A, None], args: A) -> None:
        """Send an unanswered call: it is on its way (in order) when this returns."""
        assert not call.answered
        self._send_call(self.new_id(), call, args)
        await self.drain()

    def _send_call(self, id: int, call: Call[A, Any], args: A) -> None:
        message = {"op": "call", "id": id, "method": call.name, "args": call.dump_args(args)}
        if call.data_field is None:
            self.send(wire.json_frame(message))
        else:  # the call and its bytes in one write
            message["data"] = True
            data = getattr(args, call.data_field)
            self.send(wire.json_frame(message) + wire.data_frame(id, 0, data))

    async def call(self, call: Call[A, R], args: A) -> R:
        future = self.start_call(self.new_id(), call, args)
        await self.drain()
        return call.load_answer(await future)

    def ack(self, stream: int, offset: int) -> None:
        if self.alive:
            self.wire.send(wire.json_frame({"op": "ack", "stream": stream, "offset": offset}))

    def close_stream(self, stream: int) -> None:
        self.inboxes.pop(stream, None)
        if self.alive:
            self.wire.send(wire.json_frame({"op": "close", "stream": stream}))

    async def aclose(self) -> None:
        self.wire.close()

    def _frame(self, kind: int, body: memoryview) -> None:
        if kind == wire.DATA:
            self._data(*wire.read_data(body))
        elif not self._greeting.done():
            self._greeting.set_result(wire.read_json(body))
        else:
            self._message(wire.read_json(body), wire.HEADER.size + len(body))

    def _lost(self) -> None:
        self.alive = False
        if not self._greeting.done():
            self._greeting.set_exception(HostUnavailable(LOST))
            self._greeting.exception()  # retrieved: open() may have stopped waiting
        for future in self._pending.values():
            if not future.done():
                future.set_exception(HostUnavailable(LOST))
        self._pending.clear()
        for inbox, _ in self.inboxes.values():
            inbox.finish(HostUnavailable(LOST))
        self.inboxes.clear()
        for credit in self.credits.values():
            credit.close()
        if self.on_lost is not None:
            self.on_lost()

    def _data(self, stream: int, offset: int, data: bytes) -> None:
        entry = self.inboxes.get(stream)
        if entry is not None:
            inbox, viewer = entry
            inbox.put(Output(offset, data) if viewer else data, len(data))

    def _message(self, message: dict[str, Any], size: int) -> None:
        op = message["op"]
        if op == "reply":
            future = self._pending.pop(message["id"], None)
            if future is not None and not future.done():
                if "error" in message:
                    future.set_exception(wire.error_from_wire(message["error"]))
                else:
                    future.set_result(message.get("result"))
        elif op == "event":
            entry = self.inboxes.get(message["stream"])
            if entry is not None:
                inbox, viewer = entry
                event = message["event"]
                inbox.put(wire.event_from_wire(event) if viewer else event, size)
        elif op == "end":
            entry = self.inboxes.pop(message["stream"], None)
            if entry is not None:
                error = message.get("error")
                entry[0].finish(None if error is None else wire.error_from_wire(error))
        elif op == "ack":
            credit = self.credits.get(message["stream"])
            if credit is not None:
                credit.ack(message["offset"])


Connector = Callable[[], Awaitable[Link]]


class HostClient:
    """Calls to the session host, over one link at a time. A lost link is replaced in the
    background (a new host is started if the old one is gone), so the server heals without
    waiting for a request; until then calls fail with :class:`HostUnavailable`."""

    def __init__(self, connect: Connector) -> None:
        self._connect = connect
        self._link: Link | None = None
        self._connecting = asyncio.Lock()
        self._healing = TaskSet("the session host's reconnection")
        self._closing = False
        self.terminals = RemoteTerminals(self)
        self.kernels = RemoteKernels(self)
        self.sockets = RemoteSockets(self)
        self.connections = RemoteConnections(self)

    @property
    def hello(self) -> dict[str, Any]:
        """What the host said of itself at the last connect (version, pid, sandbox)."""
        return {} if self._link is None else self._link.hello

    @property
    def connected(self) -> bool:
        return self._link is not None and self._link.alive

    async def link(self) -> Link:
        link = self._link
        if link is not None and link.alive:
            return link
        async with self._connecting:
            if self._link is None or not self._link.alive:
                self._link = await self._connect()
                self._link.on_lost = self._heal
            return self._link

    def _heal(self) -> None:
        if not self._closing and not self._healing:
            self._healing.spawn(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.1
        while not self._closing and not self.connected:
            await asyncio.sleep(delay)
            try:
                await self.link()
            except Exception as exc:  # a host that can't start now may start later
                log.warning("the session host is unavailable", extra={"error": str(exc)})
                delay = min(10.0, delay * 2)
            else:
                log.info("reconnected to the session host", extra={"pid": self.hello.get("pid")})

    async def call(self, call: Call[A, R], args: A) -> R:
        return await (await self.link()).call(call, args)

    async def metrics(self) -> calls.HostMetrics:
        return await self.call(calls.HOST_METRICS, calls.NoArgs())

    async def shutdown(self) -> None:
        """End the host and every session in it."""
        await self.call(calls.HOST_SHUTDOWN, calls.NoArgs())

    async def aclose(self) -> None:
        self._closing = True
        await self._healing.aclose()
        if self._link is not None:
            await self._link.aclose()
            self._link = None


class RemoteAttachment:
    """A viewer in the host: the attachment's events, acked as they are delivered."""

    def __init__(self, link: Link, stream: int, inbox: Inbox[Event], reply: Attached):
        self._link, self._stream, self._inbox = link, stream, inbox
        self.viewer = reply.viewer
        self.replay_from = reply.replay_from
        self.replay_bytes = reply.replay_bytes
        self.missed_bytes = reply.missed_bytes
        self.session: TerminalInfo = reply.session  # as attached
        self.screen = reply.screen  # the screen it starts from (attach_screen)
        self._acked = self._delivered = self.replay_from
        self._ack_due: asyncio.TimerHandle | None = None
        self._closed = False

    def ack(self, offset: int) -> None:
        """The output before ``offset`` reached the viewer. Acks are gathered: one every
        ACK_STEP bytes, else one ACK_DELAY after the last (an ack per keystroke echo would
        wake the host for nothing while it serves the next keystroke)."""
        if offset <= self._delivered:
            return
        self._delivered = offset
        if offset - self._acked >= ACK_STEP:
            self._send_ack()
        elif self._ack_due is None:
            loop = asyncio.get_running_loop()
            self._ack_due = loop.call_later(ACK_DELAY, self._send_ack)

    def _send_ack(self) -> None:
        if self._ack_due is not None:
            self._ack_due.cancel()
            self._ack_due = None
        if self._delivered > self._acked and not self._closed:
            self._acked = self._delivered
            self._link.ack(self._stream, self._acked)

    async def write(self, data: bytes) -> None:
        await self._link.send_call(
            calls.VIEWER_WRITE, calls.ViewerInput(stream=self._stream, data=data)
        )

    async def resize(self, rows: int, cols: int) -> None:
        args = calls.ViewerResize(stream=self._stream, rows=rows, cols=cols)
        await self._link.send_call(calls.VIEWER_RESIZE, args)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        event = await self._inbox.get()
        if event is None:
            raise StopAsyncIteration
        return event

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            if self._ack_due is not None:
                self._ack_due.cancel()
            self._link.close_stream(self._stream)

    async def __aenter__(self) -> RemoteAttachment:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


@dataclass(frozen=True, slots=True)
class RemoteFile:
    name: str
    size: int
    chunks: AsyncIterator[bytes]


class RemoteChannels:
    """A Jupyter client's connection to a kernel session in the host: ``send`` a v1 message,
    ``next`` for the kernel's (None once the session ended)."""

    def __init__(self, link: Link, stream: int, inbox: Inbox[bytes], credit: Credit) -> None:
        self._link, self._stream, self._inbox, self._credit = link, stream, inbox, credit
        self._offset = 0

    async def send(self, message: bytes) -> None:
        await self._credit.spend(len(message))
        self._link.send(wire.data_frame(self._stream, self._offset, message))
        self._offset += len(message)
        await self._link.drain()

    async def next(self) -> bytes | None:
        return await self._inbox.get()

    async def aclose(self) -> None:
        self._credit.close()
        self._link.credits.pop(self._stream, None)
        if not self._inbox.ended:
            self._link.close_stream(self._stream)
        self._link.inboxes.pop(self._stream, None)


async def _open(client: HostClient, call: Call[A, R], args: A) -> tuple[Link, int, Inbox[Any], R]:
    """Open ``call``'s stream: its answer once the host has checked it, and the stream's inbox."""
    viewer = call.stream is Stream.VIEWER
    link = await client.link()
    id = link.new_id()
    inbox: Inbox[Any] = Inbox(None if viewer else (lambda n: link.ack(id, n)))
    link.inboxes[id] = (inbox, viewer)
    reply = link.start_call(id, call, args)
    try:
        answer = call.load_answer(await asyncio.shield(reply))
    except BaseException:
        _close_when_opened(link, id, reply)
        raise
    return link, id, inbox, answer


def _close_when_opened(link: Link, id: int, reply: asyncio.Future[Any]) -> None:
    """The caller gave up on a stream (cancelled, or its answer was unusable): close it on the
    host, now or once the host has opened it, so no viewer or pump is left there."""
    link.inboxes.pop(id, None)

    def close(reply: asyncio.Future[Any]) -> None:
        if not reply.cancelled() and reply.exception() is None:
            link.close_stream(id)

    if reply.done():
        close(reply)
    else:
        reply.add_done_callback(close)


async def _items(link: Link, id: int, inbox: Inbox[Any]) -> AsyncGenerator[Any, None]:
    try:
        while (item := await inbox.get()) is not None:
            yield item
    finally:
        if not inbox.ended:
            link.close_stream(id)
        link.inboxes.pop(id, None)


async def _download(client: HostClient, call: Call[A, FileHead], args: A) -> RemoteFile:
    link, id, inbox, head = await _open(client, call, args)
    return RemoteFile(head.name, head.size, _items(link, id, inbox))


class RemoteTerminals:
    """:class:`hearth.contract.api.TerminalsAPI` through the host's socket."""

    def __init__(self, client: HostClient) -> None:
        self._call = client.call
        self._client = client

    async def create(self, user: str, spec: TerminalSpec) -> TerminalInfo:
        return await self._call(calls.TERMINALS_CREATE, calls.CreateTerminal(user=user, spec=spec))

    async def ensure(self, user: str, spec: TerminalSpec) -> TerminalInfo:
        return await self._call(calls.TERMINALS_ENSURE, calls.CreateTerminal(user=user, spec=spec))

    async def get(self, user: str, id: str) -> TerminalInfo:
        return await self._call(calls.TERMINALS_GET, calls.TerminalArgs(user=user, id=id))

    async def list_sessions(self, user: str) -> list[TerminalInfo]:
        return await self._call(calls.TERMINALS_LIST, calls.UserArgs(user=user))

    async def list_json(self, user: str) -> RemoteFile:
        return await _download(self._client, calls.TERMINALS_LIST_JSON, calls.UserArgs(user=user))

    async def touch(self, user: str, id: str) -> TerminalInfo:
        return await self._call(calls.TERMINALS_TOUCH, calls.TerminalArgs(user=user, id=id))

    async def rename(self, user: str, id: str, name: str) -> TerminalInfo:
        args = calls.RenameTerminal(user=user, id=id, name=name)
        return await self._call(calls.TERMINALS_RENAME, args)

    async def close(self, user: str, id: str) -> None:
        await self._call(calls.TERMINALS_CLOSE, calls.TerminalArgs(user=user, id=id))

    async def cleanup(self, user: str) -> list[str]:
        return await self._call(calls.TERMINALS_CLEANUP, calls.UserArgs(user=user))

    async def write(self, user: str, id: str, data: bytes) -> None:
        await self._call(calls.TERMINALS_WRITE, calls.WriteTerminal(user=user, id=id, data=data))

    async def resize(self, user: str, id: str, rows: int, cols: int, by: int | None = None) -> None:
        args = calls.ResizeTerminal(user=user, id=id, rows=rows, cols=cols, by=by)
        await self._call(calls.TERMINALS_RESIZE, args)

    async def history(
        self, user: str, id: str, since: int = 0, limit: int | None = None
    ) -> list[HistoryEntry]:
        args = calls.TerminalHistory(user=user, id=id, since=since, limit=limit)
        return await self._call(calls.TERMINALS_HISTORY, args)

    async def recording(self, user: str, id: str) -> str:
        return await self._call(calls.TERMINALS_RECORDING, calls.TerminalArgs(user=user, id=id))

    async def attach(
        self, user: str, id: str, since: int | None = None, size: tuple[int, int] | None = None
    ) -> RemoteAttachment:
        """A viewer from ``since``; ``size`` (rows, cols): its window, which wins."""
        args = calls.AttachTerminal(user=user, id=id, since=since, size=size)
        link, stream, inbox, reply = await _open(self._client, calls.TERMINALS_ATTACH, args)
        return RemoteAttachment(link, stream, inbox, reply)

    async def attach_screen(
        self, user: str, id: str, size: tuple[int, int] | None = None
    ) -> RemoteAttachment:
        """A viewer from the session's screen (its ``screen``), then live output."""
        args = calls.AttachScreen(user=user, id=id, size=size)
        link, stream, inbox, reply = await _open(self._client, calls.TERMINALS_ATTACH_SCREEN, args)
        return RemoteAttachment(link, stream, inbox, reply)

    async def screen(self, user: str, id: str) -> dict[str, Any]:
        return await self._call(calls.TERMINALS_SCREEN, calls.TerminalArgs(user=user, id=id))


class RemoteConnections:
    def __init__(self, client: HostClient) -> None:
        self._client = client

    async def create(self, user: str, spec: ConnectionSpec) -> ConnectionInfo:
        args = calls.CreateConnection(user=user, spec=spec)
        return await self._client.call(calls.CONNECTIONS_CREATE, args)

    async def list_connections(self, user: str) -> list[ConnectionInfo]:
        return await self._client.call(calls.CONNECTIONS_LIST, calls.UserArgs(user=user))

    async def get(self, user: str, id: str) -> ConnectionInfo:
        args = calls.ConnectionArgs(user=user, id=id)
        return await self._client.call(calls.CONNECTIONS_GET, args)

    async def change(self, user: str, id: str, patch: ConnectionPatch) -> ConnectionInfo:
        args = calls.ChangeConnection(user=user, id=id, patch=patch)
        return await self._client.call(calls.CONNECTIONS_CHANGE, args)

    async def delete(self, user: str, id: str) -> None:
        args = calls.ConnectionArgs(user=user, id=id)
        await self._client.call(calls.CONNECTIONS_DELETE, args)

    async def test(self, user: str, id: str) -> ConnectionTest:
        args = calls.ConnectionArgs(user=user, id=id)
        return await self._client.call(calls.CONNECTIONS_TEST, args)


class RemoteSockets:
    def __init__(self, client: HostClient) -> None:
        self._client = client

    async def terminal(
        self,
        user: str,
        id: str,
        ticket: int,
        request: str,
        socket: TerminalSocket,
        heartbeat: float,
    ) -> AsyncGenerator[dict[str, Any], None]:
        args = calls.HandOverTerminal(
            ticket=ticket, request=request, user=user, id=id, socket=socket, heartbeat=heartbeat
        )
        link, stream, inbox, _ = await _open(self._client, calls.SOCKETS_TERMINAL, args)
        return _items(link, stream, inbox)


class RemoteKernels:
    """:class:`hearth.contract.api.KernelsAPI` through the host's socket."""

    def __init__(self, client: HostClient) -> None:
        self._call = client.call
        self._client = client

    async def create(
        self,
        user: str,
        session_id: str | None = None,
        files: list[dict[str, Any]] | None = None,
        kernel_name: str | None = None,
    ) -> tuple[KernelState, bool]:
        args = calls.CreateKernel(
            user=user, session_id=session_id, files=files, kernel_name=kernel_name
        )
        return await self._call(calls.KERNELS_CREATE, args)

    async def get(self, user: str, session_id: str) -> KernelState:
        return await self._call(
            calls.KERNELS_GET, calls.KernelArgs(user=user, session_id=session_id)
        )

    async def sessions(self, user: str) -> list[KernelState]:
        return await self._call(calls.KERNELS_LIST, calls.UserArgs(user=user))

    async def terminate(self, user: str, session_id: str) -> None:
        args = calls.KernelArgs(user=user, session_id=session_id)
        await self._call(calls.KERNELS_TERMINATE, args)

    async def interrupt(self, user: str, session_id: str) -> KernelState:
        args = calls.KernelArgs(user=user, session_id=session_id)
        return await self._call(calls.KERNELS_INTERRUPT, args)

    async def restart(self, user: str, session_id: str) -> KernelState:
        args = calls.KernelArgs(user=user, session_id=session_id)
        return await self._call(calls.KERNELS_RESTART, args)

    async def list_files(self, user: str, session_id: str) -> list[dict[str, Any]]:
        args = calls.KernelArgs(user=user, session_id=session_id)
        return await self._call(calls.KERNELS_LIST_FILES, args)

    async def channels(
        self, user: str, session_id: str, client_session: str | None = None
    ) -> RemoteChannels:
        """A Jupyter client's connection to the session's channels (v1 framing, both ways);
        ``client_session``, the client's Jupyter session id, lets it take over the connection
        it left."""
        args = calls.KernelChannels(user=user, session_id=session_id, client_session=client_session)
        link, id, inbox, _ = await _open(self._client, calls.KERNELS_CHANNELS, args)
        credit = link.credits[id] = Credit()  # for what the client sends, once the host took it
        return RemoteChannels(link, id, inbox, credit)

    async def annotate(
        self, user: str, session_id: str, jupyter: dict[str, str] | None
    ) -> KernelState:
        args = calls.Annotate(user=user, session_id=session_id, jupyter=jupyter)
        return await self._call(calls.KERNELS_ANNOTATE, args)

    async def kernelspecs(self) -> dict[str, Any]:
        return await self._call(calls.KERNELS_KERNELSPECS, calls.NoArgs())

    async def open_kernelspec_file(self, name: str, path: str) -> RemoteFile:
        args = calls.KernelspecFile(name=name, path=path)
        return await _download(self._client, calls.KERNELS_OPEN_KERNELSPEC_FILE, args)

    async def pool_state(self) -> dict[str, int]:
        return await self._call(calls.KERNELS_POOL, calls.NoArgs())

    async def execute(
        self,
        user: str,
        session_id: str,
        code: str,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The events of running ``code``, once the host found the session."""
        args = calls.Execute(user=user, session_id=session_id, code=code, timeout=timeout)
        link, id, inbox, _ = await _open(self._client, calls.KERNELS_EXECUTE, args)
        return _items(link, id, inbox)

    async def open_file(self, user: str, session_id: str, path: str) -> RemoteFile:
        args = calls.KernelFile(user=user, session_id=session_id, path=path)
        return await _download(self._client, calls.KERNELS_OPEN_FILE, args)

    async def write_file(
        self, user: str, session_id: str, path: str, chunks: AsyncIterator[bytes]
    ) -> dict[str, Any]:
        link = await self._client.link()
        id = link.new_id()
        credit = link.credits[id] = Credit()
        args = calls.KernelFile(user=user, session_id=session_id, path=path)
        answer = link.start_call(id, calls.KERNELS_WRITE_FILE, args)

        async def feed() -> None:
            offset = 0
            try:
                async for chunk in chunks:
                    await credit.spend(len(chunk))
                    link.send(wire.data_frame(id, offset, chunk))
                    offset += len(chunk)
                    await link.drain()
                link.send(wire.json_frame({"op": "end", "stream": id}))
            except BaseException:
                if link.alive:
                    link.close_stream(id)  # the host stops waiting for the rest
                raise

        feeder = asyncio.get_running_loop().create_task(feed())
        try:
            return calls.KERNELS_WRITE_FILE.load_answer(await answer)
        finally:
            link.credits.pop(id, None)
            credit.close()
            if not feeder.done():
                feeder.cancel()
            with contextlib.suppress(BaseException):
                await feeder


def _satisfies(
    terminals: RemoteTerminals,
    kernels: RemoteKernels,
    sockets: RemoteSockets,
    connections: RemoteConnections,
) -> tuple[TerminalsAPI, KernelsAPI, SocketsAPI, ConnectionsAPI]:
    # mypy checks here that the remote side keeps the contract
    return terminals, kernels, sockets, connections
