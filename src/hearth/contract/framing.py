"""The host socket's transport, both ends: bytes in, whole frames out to a handler, in order.

An ``asyncio.Protocol`` rather than a stream reader: the frames that arrive in one read are
handed over in one callback, with no task switch per frame (a keystroke's call and its bytes,
a burst of output frames), which is most of what the hop between web server and host costs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from hearth.contract import wire

__all__ = ["FrameProtocol"]

_HIGH_WATER = 256 * 1024  # bytes queued for the peer before a writer waits in ``drain``


class FrameProtocol(asyncio.Protocol):
    def __init__(
        self,
        on_frame: Callable[[int, memoryview], None],
        on_lost: Callable[[BaseException | None], None],
    ) -> None:
        self.on_frame = on_frame
        self.on_lost = on_lost
        self.transport: asyncio.WriteTransport | None = None
        self._buffer = bytearray()
        self._paused = False
        self._writable: asyncio.Future[None] | None = None
        self.closed = False
        self._error: wire.ProtocolError | None = None

    # --- in ----------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.WriteTransport, transport)  # uvloop's is not a subclass
        self.transport.set_write_buffer_limits(high=_HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        # Frames are read in place (a memoryview) and handed over as views: each handler copies
        # what it keeps, so a frame's bytes are copied once (output is most of what crosses).
        if self._buffer:
            self._buffer += data
            source: bytes | bytearray = self._buffer
        else:
            source = data  # the usual case: nothing left over from the last read
        at = 0
        with memoryview(source) as view:
            try:
                at = self._frames(view)
            except Exception as exc:  # a frame this side can't use: the peer is not one of ours
                self._error = (
                    exc if isinstance(exc, wire.ProtocolError) else wire.ProtocolError(repr(exc))
                )
                self.abort()
                return
            rest = bytes(view[at:]) if source is data and at < len(data) else b""
        if source is data:
            self._buffer = bytearray(rest)
        elif at and not self.closed:
            del self._buffer[:at]

    def _frames(self, view: memoryview) -> int:
        """Hands over the whole frames in ``view``; returns where the first partial one starts."""
        at, size_of, header = 0, len(view), wire.HEADER
        while size_of - at >= header.size:
            size, kind = header.unpack_from(view, at)
            if size > wire.MAX_FRAME or kind not in (wire.JSON, wire.DATA):
                raise wire.ProtocolError(f"a frame of kind {kind} and {size} bytes")
            end = at + header.size + size
            if end > size_of:
                break
            with view[at + header.size : end] as body:
                self.on_frame(kind, body)
            at = end
            if self.transport is None or self.transport.is_closing():
                break
        return at

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self._buffer.clear()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self.on_lost(exc or self._error)

    # --- out ---------------------------------------------------------------------------------

    def send(self, frame: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(frame)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    async def drain(self) -> None:
        """Returns once what was sent is down to the high-water mark (or the peer is gone).
        Every writer waits on the same future: shielded, so that a writer cancelled while it
        waits (a viewer that left) does not cancel it for the others."""
        while self._paused and not self.closed:
            if self._writable is None or self._writable.done():
                self._writable = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._writable)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
