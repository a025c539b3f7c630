"""The session host's side of the socket: serves a :class:`SessionCore` to web tiers.

Each call of :data:`hearth.contract.calls.CALLS` is dispatched to :mod:`hearth.host.local` as
the table says: an ordered call runs inline as its frame is read (keystrokes reach the PTY in
the order they came), a concurrent one as a task of the connection's. Streams (a viewer, an
execution's events, a download, a Jupyter client's channels) are pumped by a task each, within
their credit; an upload is an inbox the core reads as a request body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any, TypeVar, cast

from pydantic import ValidationError

from hearth import __version__
from hearth.config import SECRET_SETTINGS
from hearth.contract import wire
from hearth.contract.api import Channels
from hearth.contract.calls import CALLS, Attached, Call, FileHead, HostMetrics, Stream
from hearth.contract.framing import FrameProtocol
from hearth.contract.place import HostPlace
from hearth.contract.streams import Credit, Inbox, StreamClosed
from hearth.contract.terminals import Output
from hearth.core import SessionCore
from hearth.errors import BadRequest
from hearth.host.handover import Handovers
from hearth.host.local import LocalConnections, LocalKernels, LocalTerminals, LocalViewer
from hearth.tasks import TaskSet

__all__ = ["HostServer"]

log = logging.getLogger("hearth.host")

T = TypeVar("T")


class HostServer:
    """``async with HostServer(core, place)``: listening on the place's socket (0600)."""

    def __init__(self, core: SessionCore, place: HostPlace, warnings: Sequence[str] = ()) -> None:
        self.core = core
        self.place = place
        self.warnings = list(warnings)  # what its start-up warned of, repeated to web servers
        self.stopped = asyncio.Event()
        self._connections: set[_Connection] = set()
        self._ending = TaskSet("the host's ending connections")
        terminals = LocalTerminals(core.terminals)
        self.handovers = Handovers(place, terminals, core.settings.max_input_bytes)

    async def __aenter__(self) -> HostServer:
        self.place.socket.unlink(missing_ok=True)  # a dead host's: we hold the lock
        await self.handovers.__aenter__()
        loop = asyncio.get_running_loop()
        old = os.umask(0o177)
        try:
            with self.place.socket_address() as address:
                self._server = await loop.create_unix_server(self._accept, address)
        except BaseException as exc:
            await self.handovers.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        finally:
            os.umask(old)
        log.info("listening", extra={"pid": os.getpid(), "version": __version__})
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.close()
        await self.handovers.__aexit__(*exc_info)
        for connection in list(self._connections):
            connection.wire.close()  # after what is queued (a shutdown's answer) is sent
        ends = [c.ended.wait() for c in self._connections]
        try:
            await asyncio.wait_for(asyncio.gather(*ends), 5)
        except TimeoutError:
            for connection in list(self._connections):
                connection.wire.abort()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ending.join(), 10)
        await self._ending.aclose()
        self.place.socket.unlink(missing_ok=True)

    def hello(self) -> dict[str, Any]:
        return {
            "op": "hello",
            "protocol": wire.PROTOCOL,
            "version": __version__,
            "pid": os.getpid(),
            "sandbox": self.core.sandbox.status(),
            "settings": self.core.settings.model_dump(mode="json", exclude=set(SECRET_SETTINGS)),
            "warnings": self.warnings,
        }

    def _accept(self) -> FrameProtocol:
        connection = _Connection(self)
        self._connections.add(connection)
        return connection.wire


class _Connection:
    """One web tier's connection. Frames are handled as they arrive, in order; a call that
    carries bytes (terminal input) is completed by the DATA frame right after it."""

    def __init__(self, host: HostServer) -> None:
        self.host = host
        self.wire = FrameProtocol(self._frame, self._lost)
        self.tasks = TaskSet("a web tier's connection")
        self.pumps: dict[int, asyncio.Task[None]] = {}
        self.viewers: dict[int, LocalViewer] = {}
        self.credits: dict[int, Credit] = {}
        self.uploads: dict[int, Inbox[bytes]] = {}
        self.ended = asyncio.Event()
        self.apis: dict[str, object] = {
            "terminals": LocalTerminals(host.core.terminals),
            "kernels": LocalKernels(host.core.kernels),
            "connections": LocalConnections(host.core.connections),
            "host": _Host(host),
            "sockets": host.handovers,
            "viewer": _Viewers(self),
        }
        self._greeted = False
        self._awaiting_data: dict[str, Any] | None = None  # a call whose bytes come next

    def send(self, frame: bytes) -> None:
        self.wire.send(frame)

    async def drain(self) -> None:
        await self.wire.drain()

    def _frame(self, kind: int, body: memoryview) -> None:
        if not self._greeted:
            self._hello(kind, body)
        elif self._awaiting_data is not None:
            message, self._awaiting_data = self._awaiting_data, None
            stream, _, data = wire.read_data(body) if kind == wire.DATA else (None, 0, b"")
            if stream != message["id"]:
                raise wire.ProtocolError("a call with data must be followed by its DATA frame")
            self._call(message, data)
        elif kind == wire.DATA:
            self._upload_data(*wire.read_data(body))
        else:
            message = wire.read_json(body)
            if message["op"] == "call" and message.get("data"):
                self._awaiting_data = message
            else:
                self._handle(message)

    def _hello(self, kind: int, body: memoryview) -> None:
        hello = wire.read_json(body) if kind == wire.JSON else {}
        if hello.get("op") != "hello":
            raise wire.ProtocolError("the first frame must be a hello")
        self.send(wire.json_frame(self.host.hello()))
        if hello.get("protocol") != wire.PROTOCOL:
            self.wire.close()  # the client reads our version and says what to do
            return
        self._greeted = True

    def _lost(self, exc: BaseException | None) -> None:
        """The web tier went away: its viewers detach, its streams end; the sessions stay."""
        if isinstance(exc, wire.ProtocolError):
            log.warning("dropped a connection", extra={"reason": str(exc)})
        self.tasks.cancel()
        for viewer in self.viewers.values():  # now: a pump cancelled before it ran can't
            viewer.close()
        for inbox in self.uploads.values():
            inbox.finish(StreamClosed())
        self.host._connections.discard(self)
        self.host._ending.spawn(self._end())

    async def _end(self) -> None:
        await self.tasks.aclose()
        self.ended.set()

    # --- frames in ---------------------------------------------------------------------------

    def _handle(self, message: dict[str, Any]) -> None:
        op = message["op"]
        if op == "call":
            self._call(message)
        elif op == "ack":
            stream, offset = message["stream"], message["offset"]
            if (viewer := self.viewers.get(stream)) is not None:
                viewer.ack(offset)
            elif (credit := self.credits.get(stream)) is not None:
                credit.ack(offset)
        elif op == "close":
            self.close_stream(message["stream"])
            if (inbox := self.uploads.get(message["stream"])) is not None:
                inbox.finish(StreamClosed())
        elif op == "end":
            if (inbox := self.uploads.get(message["stream"])) is not None:
                inbox.finish()
        else:
            raise wire.ProtocolError(f"unknown op {op!r}")

    def _upload_data(self, stream: int, offset: int, data: bytes) -> None:
        inbox = self.uploads.get(stream)
        if inbox is not None:
            inbox.put(data, len(data))

    def _call(self, message: dict[str, Any], data: bytes | None = None) -> None:
        id, name = message["id"], message["method"]
        call = CALLS.get(name)
        if call is None:
            self._reply_error(id, wire.ProtocolError(f"unknown call {name!r}"))
            return
        raw = message.get("args", {})
        if call.data_field is not None:
            raw[call.data_field] = data
        inbound = self.open_upload(id) if call.stream in (Stream.UPLOAD, Stream.DUPLEX) else None
        try:
            args = call.load_args(raw)
        except ValidationError as exc:
            self.uploads.pop(id, None)
            self._reply_error(id, BadRequest(f"{name}: {exc}"), call.answered)
            return
        method = getattr(self.apis[call.api], call.method)
        kwargs = {field: getattr(args, field) for field in call.args.model_fields}
        if call.stream is Stream.UPLOAD:
            kwargs["chunks"] = inbound
        if call.ordered:
            try:
                result = run_inline(method(**kwargs), name)
            except Exception as exc:
                self.uploads.pop(id, None)
                self._reply_error(id, exc, call.answered)
            else:
                if call.answered:
                    self._answer(id, call, result, inbound)
        else:
            self.tasks.spawn(self._call_async(id, call, method(**kwargs), inbound))

    async def _call_async(
        self,
        id: int,
        call: Call[Any, Any],
        running: Coroutine[Any, Any, Any],
        inbound: AsyncIterator[bytes] | None,
    ) -> None:
        try:
            result = await running
        except StreamClosed:  # the client went away mid-upload: nothing was written
            self._reply_error(
                id, BadRequest("The upload ended before its last byte; send it again.")
            )
        except Exception as exc:
            self._reply_error(id, exc)
        else:
            self._answer(id, call, result, inbound)
        finally:
            if call.stream is Stream.UPLOAD:
                self.uploads.pop(id, None)

    def _answer(
        self, id: int, call: Call[Any, Any], result: Any, inbound: AsyncIterator[bytes] | None
    ) -> None:
        """Reply to a call; one that opens a stream starts its pump first (its frames follow
        the reply, as the pump runs only once this returns)."""
        if call.stream is Stream.VIEWER:
            viewer: LocalViewer = result
            self.viewers[id] = viewer  # closed with the stream, however it ends
            self.start_pump(id, self.pump_viewer(id, viewer))
            result = Attached(
                viewer=viewer.viewer,
                replay_from=viewer.replay_from,
                replay_bytes=viewer.replay_bytes,
                missed_bytes=viewer.missed_bytes,
                session=viewer.session,
                screen=viewer.screen,
            )
        elif call.stream is Stream.EVENTS:
            self.start_pump(id, self.pump_events(id, result))
            result = None
        elif call.stream is Stream.BYTES:
            self.start_pump(id, self.pump_bytes(id, result.chunks))
            result = FileHead(name=result.name, size=result.size)
        elif call.stream is Stream.DUPLEX:
            assert inbound is not None
            self.start_pump(id, self.pump_channels(id, result, inbound))
            result = None
        try:
            answer = call.dump_answer(result)
        except Exception as exc:
            self.close_stream(id)
            self._reply_error(id, exc)
        else:
            self.send(wire.json_frame({"op": "reply", "id": id, "result": answer}))

    def _reply_error(self, id: int, exc: BaseException, answered: bool = True) -> None:
        error = wire.error_to_wire(exc)
        if error["type"] == "HostError":
            log.error("call failed", exc_info=exc)
        if answered:
            self.send(wire.json_frame({"op": "reply", "id": id, "error": error}))

    # --- streams out -------------------------------------------------------------------------

    def close_stream(self, stream: int) -> None:
        """Ends a stream this side opened: its pump stops, its viewer detaches at once."""
        if (pump := self.pumps.get(stream)) is not None:
            pump.cancel()
        if (viewer := self.viewers.pop(stream, None)) is not None:
            viewer.close()  # now: a pump cancelled before it ran never leaves its `async with`

    def start_pump(self, stream: int, pump: Coroutine[Any, Any, None]) -> None:
        self.pumps[stream] = self.tasks.spawn(self._run_pump(stream, pump))

    async def _run_pump(self, stream: int, pump: Coroutine[Any, Any, None]) -> None:
        end: dict[str, Any] = {"op": "end", "stream": stream}
        try:
            await pump
        except (asyncio.CancelledError, StreamClosed):
            return  # the client closed it: nothing more to say
        except Exception as exc:
            end["error"] = wire.error_to_wire(exc)
            if end["error"]["type"] == "HostError":
                log.error("stream failed", exc_info=exc)
        finally:
            self.pumps.pop(stream, None)
            if (viewer := self.viewers.pop(stream, None)) is not None:
                viewer.close()
            self.credits.pop(stream, None)
        self.send(wire.json_frame(end))

    async def pump_viewer(self, stream: int, viewer: LocalViewer) -> None:
        async with viewer:  # leaving it detaches the viewer, however the pump ends
            async for event in viewer:
                if isinstance(event, Output):
                    self.send(wire.data_frame(stream, event.offset, event.data))
                else:
                    message = {"op": "event", "stream": stream, "event": wire.event_to_wire(event)}
                    self.send(wire.json_frame(message))
                await self.drain()

    async def pump_events(self, stream: int, events: AsyncIterator[dict[str, Any]]) -> None:
        credit = self.credits[stream] = Credit()
        async with contextlib.aclosing(events):  # type: ignore[type-var]
            async for event in events:
                frame = wire.json_frame({"op": "event", "stream": stream, "event": event})
                await credit.spend(len(frame))
                self.send(frame)
                await self.drain()

    async def pump_bytes(self, stream: int, chunks: AsyncIterator[bytes]) -> None:
        credit = self.credits[stream] = Credit()
        offset = 0
        async with contextlib.aclosing(chunks):  # type: ignore[type-var]
            async for chunk in chunks:
                await credit.spend(len(chunk))
                self.send(wire.data_frame(stream, offset, chunk))
                offset += len(chunk)
                await self.drain()

    async def pump_channels(
        self, stream: int, channels: Channels, inbound: AsyncIterator[bytes]
    ) -> None:
        """A Jupyter client's channels: its messages in (an upload), the kernel's out."""
        credit = self.credits[stream] = Credit()

        async def feed() -> None:
            try:
                async for message in inbound:
                    await channels.send(message)
            except StreamClosed:
                pass
            except Exception as exc:  # the kernel's side failed: what it sends still goes out
                log.warning("a client's kernel messages stopped", extra={"error": repr(exc)})

        try:
            async with asyncio.TaskGroup() as group:
                feeder = group.create_task(feed())
                offset = 0
                while (message := await channels.next()) is not None:
                    await credit.spend(len(message))
                    self.send(wire.data_frame(stream, offset, message))
                    offset += len(message)
                    await self.drain()
                feeder.cancel()
        finally:
            await channels.aclose()

    def open_upload(self, stream: int) -> AsyncIterator[bytes]:
        """The bytes a call's caller sends on its stream, acked as they are taken."""

        def ack(taken: int) -> None:
            self.send(wire.json_frame({"op": "ack", "stream": stream, "offset": taken}))

        inbox: Inbox[bytes] = Inbox(ack)
        self.uploads[stream] = inbox

        async def chunks() -> AsyncIterator[bytes]:
            try:
                while (chunk := await inbox.get()) is not None:
                    yield chunk
            finally:
                self.uploads.pop(stream, None)

        return chunks()


def run_inline(running: Coroutine[Any, Any, T], name: str) -> T:
    """The answer of an ordered call, run to its end now. One that would wait is a bug of the
    table (it must be declared concurrent): it is refused, not silently reordered."""
    try:
        running.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    running.close()
    raise RuntimeError(f"{name} is declared ordered but waited: declare it concurrent")


class _Viewers:
    """A viewer's own calls, by the id of the stream it was attached on."""

    def __init__(self, connection: _Connection) -> None:
        self._viewers = connection.viewers

    async def write(self, stream: int, data: bytes) -> None:
        if (viewer := self._viewers.get(stream)) is not None:  # else its stream has ended
            await viewer.write(data)

    async def resize(self, stream: int, rows: int, cols: int) -> None:
        if (viewer := self._viewers.get(stream)) is not None:
            await viewer.resize(rows, cols)


class _Host:
    """The host's own calls."""

    def __init__(self, host: HostServer) -> None:
        self._host = host

    async def metrics(self) -> HostMetrics:
        core = self._host.core
        rows = [*core.terminals.counts(), *core.kernels.pool.status_counts()]
        screens = core.terminals.screens
        return HostMetrics(
            sessions=rows,
            kernels=core.kernels.stats(),
            buffered_bytes=core.terminals.total_buffered_bytes,
            screen_model=screens.stats() if screens else None,
            websockets_open={"terminal": self._host.handovers.open.value},
            bytes_streamed={"terminal": self._host.handovers.streamed},
        )

    async def shutdown(self) -> None:
        """Every session ends, as if deleted; then the host stops."""
        await self._host.core.end_all()
        self._host.stopped.set()
