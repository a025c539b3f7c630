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
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from hearth import __version__
from hearth.contract import wire
from hearth.contract.framing import FrameProtocol
from hearth.contract.place import HostPlace
from hearth.contract.streams import Credit, Inbox, StreamClosed
from hearth.contract.terminals import Output, TerminalSpec
from hearth.core import SessionCore
from hearth.errors import BadRequest
from hearth.kernels.channels import ChannelRelay
from hearth.protocol import FrameError
from hearth.protocol.jupyter import decode_v1
from hearth.protocol.kernels import KernelState
from hearth.terminals.attachment import Attachment

__all__ = ["HostServer"]

log = logging.getLogger("hearth.host")


class HostServer:
    """``async with HostServer(core, place)``: listening on the place's socket (0600)."""

    def __init__(self, core: SessionCore, place: HostPlace, warnings: Sequence[str] = ()) -> None:
        self.core = core
        self.place = place
        self.warnings = list(warnings)  # what its start-up warned of, repeated to web servers
        self.stopped = asyncio.Event()
        self._connections: set[_Connection] = set()

    async def __aenter__(self) -> HostServer:
        self.place.socket.unlink(missing_ok=True)  # a dead host's: we hold the lock
        loop = asyncio.get_running_loop()
        old = os.umask(0o177)
        try:
            with self.place.socket_address() as address:
                self._server = await loop.create_unix_server(self._accept, address)
        finally:
            os.umask(old)
        log.info("listening", extra={"pid": os.getpid(), "version": __version__})
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.close()
        for connection in list(self._connections):
            connection.wire.close()  # after what is queued (a shutdown's answer) is sent
        ends = [c.ended.wait() for c in self._connections]
        try:
            await asyncio.wait_for(asyncio.gather(*ends), 5)
        except TimeoutError:
            for connection in list(self._connections):
                connection.wire.abort()
        self.place.socket.unlink(missing_ok=True)

    def hello(self) -> dict[str, Any]:
        return {
            "op": "hello",
            "protocol": wire.PROTOCOL,
            "version": __version__,
            "pid": os.getpid(),
            "sandbox": self.core.sandbox.status(),
            "settings": self.core.settings.model_dump(mode="json", exclude={"tokens"}),
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
        self.calls = _Calls(host.core, self)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.pumps: dict[int, asyncio.Task[None]] = {}
        self.viewers: dict[int, Attachment] = {}
        self.credits: dict[int, Credit] = {}
        self.uploads: dict[int, Inbox[bytes]] = {}
        self.upload_chunks: dict[int, AsyncIterator[bytes]] = {}
        self.ended = asyncio.Event()
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
            message["args"]["data"] = data
            self._handle(message)
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
        for task in [*self.tasks, *self.pumps.values()]:
            task.cancel()
        for viewer in self.viewers.values():  # now: a pump cancelled before it ran can't
            viewer.close()
        for inbox in self.uploads.values():
            inbox.finish(StreamClosed())
        self.host._connections.discard(self)
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

    def _call(self, message: dict[str, Any]) -> None:
        id, method, args = message["id"], message["method"], message.get("args", {})
        if message.get("upload"):
            self.open_upload(id)
        found = self.calls.lookup(method)
        if found is None:
            self._reply_error(id, wire.ProtocolError(f"unknown call {method!r}"))
            return
        fn, waits = found
        if not waits:
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

    def close_stream(self, stream: int) -> None:
        """Ends a stream this side opened: its pump stops, its viewer detaches at once."""
        if (pump := self.pumps.get(stream)) is not None:
            pump.cancel()
        if (viewer := self.viewers.pop(stream, None)) is not None:
            viewer.close()  # now: a pump cancelled before it ran never leaves its `async with`

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
            if (viewer := self.viewers.pop(stream, None)) is not None:
                viewer.close()
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

    async def pump_channels(
        self, stream: int, relay: ChannelRelay, inbound: AsyncIterator[bytes]
    ) -> None:
        """A Jupyter client's channels: its messages in (an upload), the kernel's out."""
        credit = self.credits[stream] = Credit()

        async def feed() -> None:
            with contextlib.suppress(StreamClosed):
                async for frame in inbound:
                    try:
                        channel, parts = decode_v1(frame)
                    except FrameError as exc:  # the web tier checks them: not a client's error
                        log.warning("dropped a kernel message", extra={"reason": str(exc)})
                        continue
                    await link.receive(channel, parts)

        async with relay.attach() as link:
            feeder = asyncio.create_task(feed())
            try:
                offset = 0
                while (message := await link.next()) is not None:
                    await credit.spend(len(message))
                    self.send(wire.data_frame(stream, offset, message))
                    offset += len(message)
                    await self.drain()
            finally:
                feeder.cancel()

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


_PREFIXES = ("terminals_", "kernels_", "host_")


def _state(state: KernelState) -> dict[str, Any]:
    return state.model_dump(mode="json", exclude_none=True)


class _Calls:
    """The calls a web tier may make, by name. Each takes the call's id (the id of the stream it
    opens, if it opens one) and the call's arguments; answers are plain data."""

    def __init__(self, core: SessionCore, connection: _Connection) -> None:
        self.core, self.connection = core, connection
        self._found: dict[str, tuple[Callable[..., Any], bool]] = {}

    def lookup(self, method: str) -> tuple[Callable[..., Any], bool] | None:
        """The call's function, and whether it waits (runs as a task) or answers at once."""
        found = self._found.get(method)
        if found is None:
            name = method.replace(".", "_")
            fn = getattr(self, name, None) if name.startswith(_PREFIXES) else None
            if fn is None:
                return None
            found = self._found[method] = (fn, inspect.iscoroutinefunction(fn))
        return found

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
        self, id: int, user: str, session: str, since: int | None, size: list[int] | None
    ) -> dict[str, Any]:
        """A viewer from ``since``; with ``size``, its window wins (as on any resize). The
        answer has the session as it is then: a reattach is one call."""
        terminals = self.core.terminals
        attachment = terminals.attach(user, session, since)
        self.connection.viewers[id] = attachment  # closed with the stream, however it ends
        self.connection.start_pump(id, lambda: self.connection.pump_viewer(id, attachment))
        if size is not None:
            try:
                terminals.resize(user, session, size[0], size[1], by=attachment.viewer)
            except Exception:
                self.connection.close_stream(id)
                raise
        return self._attached(attachment, user, session)

    def _attached(self, attachment: Attachment, user: str, session: str) -> dict[str, Any]:
        """The answer to an attach: where the viewer starts, and the session as it is then."""
        return {
            "viewer": attachment.viewer,
            "replay_from": attachment.replay_from,
            "replay_bytes": attachment.replay_bytes,
            "missed_bytes": attachment.missed_bytes,
            "session": wire.info_to_wire(self.core.terminals.get(user, session)),
        }

    async def terminals_screen(self, id: int, user: str, session: str) -> dict[str, Any]:
        return await self.core.terminals.screen(user, session)

    async def terminals_attach_screen(
        self, id: int, user: str, session: str, size: list[int] | None
    ) -> dict[str, Any]:
        """A viewer that starts from the session's screen (SPEC §9): the answer has the
        screen, and the stream carries the output from its offset."""
        terminals = self.core.terminals
        attachment, screen = await terminals.attach_screen(
            user, session, (size[0], size[1]) if size else None
        )
        self.connection.viewers[id] = attachment
        self.connection.start_pump(id, lambda: self.connection.pump_viewer(id, attachment))
        return {**self._attached(attachment, user, session), "screen": screen}

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
        return [_state(info), created]

    def kernels_get(self, id: int, user: str, session_id: str) -> dict[str, Any]:
        return _state(self.core.kernels.get(user, session_id))

    def kernels_list(self, id: int, user: str) -> list[dict[str, Any]]:
        return [_state(i) for i in self.core.kernels.sessions(user)]

    def kernels_terminate(self, id: int, user: str, session_id: str) -> None:
        self.core.kernels.terminate(user, session_id)

    def kernels_execute(
        self, id: int, user: str, session_id: str, code: str, timeout: float | None
    ) -> None:
        events = self.core.kernels.execute(user, session_id, code, timeout)
        self.connection.start_pump(id, lambda: self.connection.pump_events(id, events))

    async def kernels_interrupt(self, id: int, user: str, session_id: str) -> dict[str, Any]:
        return _state(await self.core.kernels.interrupt(user, session_id))

    async def kernels_restart(self, id: int, user: str, session_id: str) -> dict[str, Any]:
        return _state(await self.core.kernels.restart(user, session_id))

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

    def kernels_channels(
        self, id: int, user: str, session_id: str, client_session: str | None = None
    ) -> None:
        """A Jupyter client's connection to the session's channels, both ways on this stream."""
        inbound = self.connection.upload_chunks.pop(id)
        try:
            relay = self.core.kernels.channels(user, session_id, client_session)
        except BaseException:
            self.connection.uploads.pop(id, None)
            raise
        self.connection.start_pump(id, lambda: self.connection.pump_channels(id, relay, inbound))

    def kernels_annotate(
        self, id: int, user: str, session_id: str, jupyter: dict[str, str] | None
    ) -> dict[str, Any]:
        return _state(self.core.kernels.annotate(user, session_id, jupyter))

    def kernels_kernelspecs(self, id: int) -> dict[str, Any]:
        return self.core.kernels.kernelspecs()

    def kernels_open_kernelspec_file(self, id: int, name: str, path: str) -> dict[str, Any]:
        file = self.core.kernels.open_kernelspec_file(name, path)
        self.connection.start_pump(id, lambda: self.connection.pump_bytes(id, file.chunks))
        return {"name": file.name, "size": file.size}

    def kernels_pool(self, id: int) -> dict[str, int]:
        return self.core.kernels.pool_state()

    # --- the host ----------------------------------------------------------------------------

    def host_metrics(self, id: int) -> dict[str, Any]:
        rows = [*self.core.terminals.counts(), *self.core.kernels.pool.status_counts()]
        return {
            "sessions": [list(r) for r in rows],
            "kernels": self.core.kernels.stats(),
            "buffered_bytes": self.core.terminals.total_buffered_bytes,
            "screen_model": screens.stats() if (screens := self.core.terminals.screens) else None,
        }

    async def host_shutdown(self, id: int) -> None:
        """Every session ends, as if deleted; then the host stops."""
        await self.core.end_all()
        self.connection.host.stopped.set()
