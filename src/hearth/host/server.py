"""The session host's side of the socket: serves a :class:`SessionCore` to web tiers.

One task reads each connection's frames in order. Calls that answer at once (``write``, ``get``,
``resize``, …) run inline, so keystrokes reach the PTY in the order they came; calls that wait
(``create``, ``close``, ``execute``, …) each run as a task. Streams (a terminal viewer, an
execution's events, a download) are pumped by a task each, within their credit; an upload is an
inbox the core reads as the request body.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

from hearth import __version__
from hearth.core import SessionCore
from hearth.errors import BadRequest
from hearth.host import wire
from hearth.host.place import HostPlace
from hearth.host.streams import Credit, Inbox, StreamClosed
from hearth.terminals.attachment import Attachment
from hearth.terminals.events import Output
from hearth.terminals.manager import TerminalSpec

__all__ = ["HostServer"]

log = logging.getLogger("hearth.host")


class HostServer:
    """``async with HostServer(core, place)``: listening on the place's socket (0600)."""

    def __init__(self, core: SessionCore, place: HostPlace) -> None:
        self.core = core
        self.place = place
        self.stopped = asyncio.Event()
        self._connections: set[_Connection] = set()

    async def __aenter__(self) -> HostServer:
        self.place.socket.unlink(missing_ok=True)  # a dead host's: we hold the lock
        old = os.umask(0o177)
        try:
            with self.place.socket_address() as address:
                self._server = await asyncio.start_unix_server(self._accept, address)
        finally:
            os.umask(old)
        log.info("listening", extra={"pid": os.getpid(), "version": __version__})
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.close()
        for connection in list(self._connections):
            connection.writer.close()  # after what is queued (a shutdown's answer) is sent
        ends = [c.ended.wait() for c in self._connections]
        try:
            await asyncio.wait_for(asyncio.gather(*ends), 5)
        except TimeoutError:
            for connection in list(self._connections):
                connection.abort()
        self.place.socket.unlink(missing_ok=True)

    def hello(self) -> dict[str, Any]:
        return {
            "op": "hello",
            "protocol": wire.PROTOCOL,
            "version": __version__,
            "pid": os.getpid(),
            "sandbox": self.core.sandbox.status(),
        }

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(self, reader, writer)
        self._connections.add(connection)
        try:
            await connection.serve()
        finally:
            self._connections.discard(connection)


class _Connection:
    def __init__(
        self, host: HostServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.host, self.reader, self.writer = host, reader, writer
        self.calls = _Calls(host.core, self)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.pumps: dict[int, asyncio.Task[None]] = {}
        self.viewers: dict[int, Attachment] = {}
        self.credits: dict[int, Credit] = {}
        self.uploads: dict[int, Inbox[bytes]] = {}
        self.ended = asyncio.Event()
        self.upload_chunks: dict[int, AsyncIterator[bytes]] = {}

    def send(self, frame: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(frame)

    async def drain(self) -> None:
        transport = self.writer.transport
        if transport.get_write_buffer_size() > 256 * 1024:
            await self.writer.drain()

    def abort(self) -> None:
        self.writer.transport.abort()

    async def serve(self) -> None:
        try:
            kind, body = await _read_frame(self.reader)
            hello = wire.read_json(body) if kind == wire.JSON else {}
            if hello.get("op") != "hello":
                raise wire.ProtocolError("the first frame must be a hello")
            self.send(wire.json_frame(self.host.hello()))
            if hello.get("protocol") != wire.PROTOCOL:
                return  # the client reads our version and says what to do
            while True:
                kind, body = await _read_frame(self.reader)
                if kind == wire.DATA:
                    self._upload_data(*wire.read_data(body))
                    continue
                message = wire.read_json(body)
                if message["op"] == "call" and message.get("data"):
                    message["args"]["data"] = await self._read_payload(message["id"])
                self._handle(message)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the web tier went away: its viewers detach, the sessions stay
        except wire.ProtocolError as exc:
            log.warning("dropped a connection", extra={"reason": str(exc)})
        finally:
            for task in [*self.tasks, *self.pumps.values()]:
                task.cancel()
            for inbox in self.uploads.values():
                inbox.finish(StreamClosed())
            self.writer.close()
            self.ended.set()

    # --- frames in ---------------------------------------------------------------------------

    async def _read_payload(self, id: int) -> bytes:
        """The bytes of a call that carries some (terminal input): the DATA frame after it."""
        kind, body = await _read_frame(self.reader)
        if kind != wire.DATA:
            raise wire.ProtocolError("a call with data must be followed by its DATA frame")
        stream, _, data = wire.read_data(body)
        if stream != id:
            raise wire.ProtocolError("a call's DATA frame must carry the call's id")
        return data

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
            if (pump := self.pumps.get(message["stream"])) is not None:
                pump.cancel()
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

    def _call(self, message: dict[str, Any]) -> None:
        id, method, args = message["id"], message["method"], message.get("args", {})
        if message.get("upload"):
            self.open_upload(id)
        fn = self.calls.lookup(method)
        if fn is None:
            self._reply_error(id, wire.ProtocolError(f"unknown call {method!r}"))
            return
        if not inspect.iscoroutinefunction(fn):
            try:
                self._reply(id, fn(id, **args))
            except Exception as exc:
                self._reply_error(id, exc)
            return
        task = asyncio.create_task(self._call_async(id, fn, args))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _call_async(self, id: int, fn: Callable[..., Any], args: dict[str, Any]) -> None:
        try:
            result = await fn(id, **args)
        except Exception as exc:
            self._reply_error(id, exc)
        else:
            self._reply(id, result)

    def _reply(self, id: int, result: Any) -> None:
        self.send(wire.json_frame({"op": "reply", "id": id, "result": result}))

    def _reply_error(self, id: int, exc: BaseException) -> None:
        error = wire.error_to_wire(exc)
        if error["type"] == "HostError":
            log.error("call failed", exc_info=exc)
        self.send(wire.json_frame({"op": "reply", "id": id, "error": error}))

    # --- streams out -------------------------------------------------------------------------

    def start_pump(self, stream: int, pump: Callable[[], Any]) -> None:
        task = asyncio.create_task(self._run_pump(stream, pump))
        self.pumps[stream] = task

    async def _run_pump(self, stream: int, pump: Callable[[], Any]) -> None:
        end: dict[str, Any] = {"op": "end", "stream": stream}
        try:
            await pump()
        except (asyncio.CancelledError, StreamClosed):
            return  # the client closed it: nothing more to say
        except Exception as exc:
            end["error"] = wire.error_to_wire(exc)
            if end["error"]["type"] == "HostError":
                log.error("stream failed", exc_info=exc)
        finally:
            self.pumps.pop(stream, None)
            self.viewers.pop(stream, None)
            self.credits.pop(stream, None)
        self.send(wire.json_frame(end))

    async def pump_viewer(self, stream: int, attachment: Attachment) -> None:
        async with attachment:  # leaving it detaches the viewer, however the pump ends
            async for event in attachment:
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

    def open_upload(self, stream: int) -> None:
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

        self.upload_chunks[stream] = chunks()


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    size, kind = wire.HEADER.unpack(await reader.readexactly(wire.HEADER.size))
    if size > wire.MAX_FRAME or kind not in (wire.JSON, wire.DATA):
        raise wire.ProtocolError(f"a frame of kind {kind} and {size} bytes")
    return kind, await reader.readexactly(size)


class _Calls:
    """The calls a web tier may make, by name. Each takes the call's id (the id of the stream it
    opens, if it opens one) and the call's arguments; answers are plain data."""

    def __init__(self, core: SessionCore, connection: _Connection) -> None:
        self.core, self.connection = core, connection

    def lookup(self, method: str) -> Callable[..., Any] | None:
        name = method.replace(".", "_")
        if not name.startswith(("terminals_", "kernels_", "host_")):
            return None
        fn: Callable[..., Any] | None = getattr(self, name, None)
        return fn

    # --- terminals ---------------------------------------------------------------------------

    async def terminals_create(self, id: int, user: str, spec: dict[str, Any]) -> dict[str, Any]:
        return wire.info_to_wire(await self.core.terminals.create(user, TerminalSpec(**spec)))

    async def terminals_ensure(self, id: int, user: str, spec: dict[str, Any]) -> dict[str, Any]:
        return wire.info_to_wire(await self.core.terminals.ensure(user, TerminalSpec(**spec)))

    def terminals_get(self, id: int, user: str, session: str) -> dict[str, Any]:
        return wire.info_to_wire(self.core.terminals.get(user, session))

    def terminals_list(self, id: int, user: str) -> list[dict[str, Any]]:
        return [wire.info_to_wire(i) for i in self.core.terminals.list_sessions(user)]

    def terminals_touch(self, id: int, user: str, session: str) -> dict[str, Any]:
        return wire.info_to_wire(self.core.terminals.touch(user, session))

    def terminals_rename(self, id: int, user: str, session: str, name: str) -> dict[str, Any]:
        return wire.info_to_wire(self.core.terminals.rename(user, session, name))

    async def terminals_close(self, id: int, user: str, session: str) -> None:
        await self.core.terminals.close(user, session)

    async def terminals_cleanup(self, id: int, user: str) -> list[str]:
        return await self.core.terminals.cleanup(user)

    def terminals_write(self, id: int, user: str, session: str, data: bytes) -> None:
        self.core.terminals.write(user, session, data)

    def terminals_resize(
        self, id: int, user: str, session: str, rows: int, cols: int, by: int | None
    ) -> None:
        self.core.terminals.resize(user, session, rows, cols, by)

    def terminals_history(
        self, id: int, user: str, session: str, since: int, limit: int | None
    ) -> list[dict[str, Any]]:
        return [
            {
                "seq": e.seq,
                "type": e.type.value,
                "data": text,
                "offset": e.offset,
                "timestamp": e.timestamp,
            }
            for e, text in self.core.terminals.history(user, session, since, limit)
        ]

    def terminals_recording(self, id: int, user: str, session: str) -> str:
        return self.core.terminals.recording(user, session)

    def terminals_attach(
        self, id: int, user: str, session: str, since: int | None
    ) -> dict[str, Any]:
        attachment = self.core.terminals.attach(user, session, since)
        self.connection.viewers[id] = attachment
        self.connection.start_pump(id, lambda: self.connection.pump_viewer(id, attachment))
        return {
            "viewer": attachment.viewer,
            "replay_from": attachment.replay_from,
            "replay_bytes": attachment.replay_bytes,
            "missed_bytes": attachment.missed_bytes,
        }

    # --- kernels -----------------------------------------------------------------------------

    async def kernels_create(
        self,
        id: int,
        user: str,
        session_id: str | None,
        files: list[dict[str, Any]],
        kernel_name: str | None,
    ) -> list[Any]:
        info, created = await self.core.kernels.create(user, session_id, files, kernel_name)
        return [info, created]

    def kernels_get(self, id: int, user: str, session_id: str) -> dict[str, Any]:
        return self.core.kernels.get(user, session_id)

    def kernels_list(self, id: int, user: str) -> list[dict[str, Any]]:
        return self.core.kernels.sessions(user)

    def kernels_terminate(self, id: int, user: str, session_id: str) -> None:
        self.core.kernels.terminate(user, session_id)

    def kernels_execute(
        self, id: int, user: str, session_id: str, code: str, timeout: float | None
    ) -> None:
        events = self.core.kernels.execute(user, session_id, code, timeout)
        self.connection.start_pump(id, lambda: self.connection.pump_events(id, events))

    async def kernels_interrupt(self, id: int, user: str, session_id: str) -> dict[str, Any]:
        return await self.core.kernels.interrupt(user, session_id)

    async def kernels_restart(self, id: int, user: str, session_id: str) -> dict[str, Any]:
        return await self.core.kernels.restart(user, session_id)

    async def kernels_list_files(self, id: int, user: str, session_id: str) -> list[Any]:
        return await self.core.kernels.list_files(user, session_id)

    def kernels_open_file(self, id: int, user: str, session_id: str, path: str) -> dict[str, Any]:
        file = self.core.kernels.open_file(user, session_id, path)
        self.connection.start_pump(id, lambda: self.connection.pump_bytes(id, file.chunks))
        return {"name": file.name, "size": file.size}

    async def kernels_write_file(
        self, id: int, user: str, session_id: str, path: str
    ) -> dict[str, Any]:
        chunks = self.connection.upload_chunks.pop(id)
        try:
            return await self.core.kernels.write_file(user, session_id, path, chunks)
        except StreamClosed:  # the client went away mid-upload: nothing was written
            raise BadRequest("The upload ended before its last byte; send it again.") from None

    def kernels_pool(self, id: int) -> dict[str, int]:
        return self.core.kernels.pool_state()

    # --- the host ----------------------------------------------------------------------------

    def host_metrics(self, id: int) -> dict[str, Any]:
        rows = [*self.core.terminals.counts(), *self.core.kernels.pool.status_counts()]
        return {
            "sessions": [list(r) for r in rows],
            "kernels": self.core.kernels.stats(),
            "buffered_bytes": self.core.terminals.total_buffered_bytes,
        }

    async def host_shutdown(self, id: int) -> None:
        """Every session ends, as if deleted; then the host stops."""
        await self.core.end_all()
        self.connection.host.stopped.set()
