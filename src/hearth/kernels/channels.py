"""A Jupyter client's connection to a kernel session's channels (SPEC §10), in the session host.

Messages come and go in the v1 kernel websocket framing (``hearth.protocol.jupyter``). Each one
from the client is signed with the kernel's key and sent on its channel; each one of the kernel
is framed as it came, as Jupyter Server relays them. The connection has its own sockets, with one
identity for shell and stdin, so the kernel's replies and input requests come back to it alone.

It follows the session across kernels: when the kernel dies or is restarted, the client gets
``status: restarting`` and its messages wait for the next kernel. It ends when the session is
closed or released.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Coroutine
from types import TracebackType
from typing import Any

import zmq
import zmq.asyncio

from hearth.errors import HearthError
from hearth.kernels.kernel import Kernel
from hearth.kernels.session import KernelSession
from hearth.protocol.jupyter import encode_v1, own_message

__all__ = ["ChannelRelay"]

log = logging.getLogger("hearth.kernels.channels")

DELIMITER = b"<IDS|MSG>"
OUTBOX = 256  # messages; beyond, the kernel's sockets hold the rest (IOPub drops at its HWM)
NUDGE_EVERY = 0.1  # seconds between kernel_info requests until IOPub is live
NUDGE_FOR = 10.0
POLL_MS = 500  # a reader's longest wait before it looks again (a missed wake-up costs this)
MAX_PENDING = 1000  # client messages held while there is no kernel


class ChannelRelay:
    """``async with ChannelRelay(session) as relay``: ``await relay.receive(frame)`` for each
    client message; ``await relay.next()`` for each message to the client, None at the end."""

    def __init__(self, session: KernelSession) -> None:
        self.session = session
        self._generation = session.generation
        self._identity = secrets.token_hex(16).encode()
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue(OUTBOX)
        self._pending: list[tuple[str, list[bytes]]] = []
        self._live: dict[str, zmq.asyncio.Socket] | None = None
        self._kernel: Kernel | None = None
        self._follower: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ChannelRelay:
        self.session.connections += 1
        self._follower = asyncio.get_running_loop().create_task(self._follow())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.session.connections -= 1
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower

    async def next(self) -> bytes | None:
        return await self._outbox.get()

    async def receive(self, channel: str, parts: list[bytes]) -> None:
        """Send a client's message to the kernel, or hold it until there is one."""
        self.session.touch()
        live, kernel = self._live, self._kernel
        if live is not None and kernel is not None:
            try:
                await live[channel].send_multipart([DELIMITER, kernel.sign(parts), *parts])
                return
            except zmq.ZMQError:  # closed under us: the kernel is being replaced
                pass
        if len(self._pending) < MAX_PENDING:
            self._pending.append((channel, parts))
        else:
            log.warning("dropped a message: too many wait", extra={"session": self.session.name})

    # -- following the session's kernels ------------------------------------------------------

    def _ours(self) -> bool:
        return self.session.generation == self._generation and self.session.owner is not None

    async def _follow(self) -> None:
        try:
            while self._ours():
                try:
                    kernel = await self.session.wait_ready()
                except HearthError:
                    break  # closed, or no kernel could start
                if not self._ours():
                    break
                await self._serve(kernel)
                if not self._ours():
                    break
                await self._status("restarting")
        finally:
            with contextlib.suppress(asyncio.QueueFull):
                self._outbox.put_nowait(None)
            if self._outbox.full():  # the reader must still learn of the end
                await self._outbox.put(None)

    async def _serve(self, kernel: Kernel) -> None:
        """Relay to and from ``kernel`` until it is gone."""
        sockets = {
            channel: kernel.connect(channel, None if channel == "iopub" else self._identity)
            for channel in ("shell", "control", "stdin", "iopub")
        }
        readers: list[asyncio.Task[None]] = []
        try:
            await self._nudge(kernel, sockets["iopub"])
            readers = [
                asyncio.get_running_loop().create_task(self._read(channel, socket))
                for channel, socket in sockets.items()
            ]
            while self._pending:  # in the order they came, before any that comes now
                pending, self._pending = self._pending, []
                for channel, parts in pending:
                    await sockets[channel].send_multipart([DELIMITER, kernel.sign(parts), *parts])
            self._live, self._kernel = sockets, kernel
            while not kernel.died.is_set() and self._ours():
                await _first(kernel.died.wait(), self.session.changed())
        finally:
            self._live = self._kernel = None
            for reader in readers:
                reader.cancel()
            for reader in readers:
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            for socket in sockets.values():
                socket.close(linger=0)

    async def _nudge(self, kernel: Kernel, iopub: zmq.asyncio.Socket) -> None:
        """Ask ``kernel_info`` on a control socket of its own until IOPub brings anything: then
        this connection's subscription is live and no output of the client's first request can
        be lost (what IOPub brought before is dropped, as Jupyter Server does)."""
        control = kernel.connect("control")
        deadline = time.monotonic() + NUDGE_FOR
        try:
            while time.monotonic() < deadline and not kernel.died.is_set():
                parts = own_message("kernel_info_request", {}, self._identity.decode())
                await control.send_multipart([DELIMITER, kernel.sign(parts), *parts])
                if await iopub.poll(int(NUDGE_EVERY * 1000)):
                    _drain(iopub)
                    return
            log.warning("IOPub did not answer a nudge", extra={"session": self.session.name})
        finally:
            control.close(linger=0)

    async def _read(self, channel: str, socket: zmq.asyncio.Socket) -> None:
        """Every message on one socket, in order, to the outbox. The wait is a poll and the
        reading drains the socket, so that an edge-triggered wake-up can't be missed."""
        plain: zmq.Socket[bytes] = zmq.Socket.shadow(socket.underlying)
        while True:
            await socket.poll(POLL_MS)
            relayed = 0
            while True:
                try:
                    frames = plain.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                try:
                    start = frames.index(DELIMITER) + 2
                except ValueError:
                    continue  # not a Jupyter message: nothing a client could read
                parts = frames[start:]
                if len(parts) >= 4:
                    await self._outbox.put(encode_v1(channel, parts))
                    relayed += 1
            if relayed and channel == "iopub":
                self.session.touch()  # output is activity: a running cell is not idle

    async def _status(self, state: str) -> None:
        """A status message of the server's own, as Jupyter Server sends on a restart."""
        parts = own_message("status", {"execution_state": state}, self._identity.decode())
        await self._outbox.put(encode_v1("iopub", parts))


async def _first(*waits: Coroutine[Any, Any, Any]) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def _drain(socket: zmq.asyncio.Socket) -> None:
    plain: zmq.Socket[bytes] = zmq.Socket.shadow(socket.underlying)
    with contextlib.suppress(zmq.Again):
        while True:
            plain.recv_multipart(zmq.NOBLOCK)
