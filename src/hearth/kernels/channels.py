"""A Jupyter client's connection to a kernel session's channels (SPEC §10), in the session host.

Messages come and go in the v1 kernel websocket framing (``hearth.protocol.jupyter``). The
client's go out on sockets of the connection's own, one identity for shell, control and stdin,
so replies and input requests come back to it alone. IOPub is the kernel's subscription, shared
(one of its own would need a nudge of several milliseconds before it is surely live). A relay
follows its session across kernels (``status: restarting`` between them) and ends when the
session is closed or released. Overflow, in Jupyter's way: a client too slow for IOPub loses
IOPub messages and is told how many on stderr; replies are never dropped. A named connection
is kept for its client's return (:mod:`hearth.kernels.connections`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import deque
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any

import zmq
import zmq.asyncio

from hearth.errors import HearthError
from hearth.kernels.backlog import LIMIT, droppable
from hearth.kernels.kernel import Kernel
from hearth.kernels.session import HostedKernelSession
from hearth.protocol.jupyter import encode_v1, own_message

__all__ = ["ChannelLink", "ChannelRelay"]

log = logging.getLogger("hearth.kernels.channels")

DELIMITER = b"<IDS|MSG>"
OWN_SOCKETS = ("shell", "control", "stdin")
MAX_QUEUED = LIMIT  # bytes for the client (``backlog``); beyond, IOPub drops, replies wait
POLL_MS = 500  # a reader's longest wait before it looks again (a missed wake-up costs this)
MAX_PENDING = 1000  # client messages held while there is no kernel
# Seconds a named connection waits for its client to come back, taking the kernel's messages
# meanwhile: Jupyter Server replays only what came after a kernel's last connection closed.
KEEP_FOR = 120.0


class ChannelRelay:
    """``async with ChannelRelay(session).attach() as link``: ``await link.receive(channel,
    parts)`` for each client message; ``await link.next()`` for each v1 message to the client,
    None at the end, or once a later ``attach()`` has taken the relay over. With ``detached``,
    leaving the ``async with`` hands the relay to ``detached`` instead of ending it (the client
    may come back: see ``KEEP_FOR``); ``close()`` ends it."""

    def __init__(
        self, session: HostedKernelSession, detached: Callable[[ChannelRelay], None] | None = None
    ) -> None:
        self.session = session
        self._detached = detached
        self._holder = 0  # which ``async with`` reads: the latest
        self._generation = session.generation
        self._identity = secrets.token_hex(16).encode()
        self._out: deque[bytes | None] = deque()
        self._queued = 0
        self._ready = asyncio.Event()  # something to read
        self._roomy = asyncio.Event()  # room for more
        self._roomy.set()
        self._dropped = 0
        self._pending: list[tuple[str, list[bytes]]] = []
        self._live: dict[str, zmq.asyncio.Socket] | None = None
        self._kernel: Kernel | None = None
        self._follower: asyncio.Task[None] | None = None

    def attach(self) -> ChannelLink:
        """A websocket's hold on the relay; an earlier one's ``next`` ends."""
        self.session.connections += 1
        if self._follower is None:  # else: taken over, following already
            self._follower = asyncio.get_running_loop().create_task(self._follow())
        self._holder += 1
        self._ready.set()  # a holder waiting in ``next`` sees it is one no more
        return ChannelLink(self, self._holder)

    async def _leave(self, holder: int) -> None:
        self.session.connections -= 1
        if holder != self._holder:
            return  # taken over: the relay is the later holder's
        if self._detached is not None:
            self._detached(self)
        if self._detached is None or not self.following:
            await self.close()

    @property
    def following(self) -> bool:
        return self._follower is not None and not self._follower.done()

    async def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower

    # -- to the client --------------------------------------------------------------------------

    async def _next(self, holder: int) -> bytes | None:
        while not self._out:
            if holder != self._holder:
                return None
            self._ready.clear()
            await self._ready.wait()
        if holder != self._holder:
            return None
        message = self._out.popleft()
        if message is not None:
            self._queued -= len(message)
            if self._queued < MAX_QUEUED:
                self._roomy.set()
                if self._dropped:
                    self._tell_dropped()
        return message

    def _put(self, message: bytes | None) -> None:
        self._out.append(message)
        if message is not None:
            self._queued += len(message)
            if self._queued >= MAX_QUEUED:
                self._roomy.clear()
        self._ready.set()

    def _on_iopub(self, parts: list[bytes]) -> None:
        if len(parts) < 4:
            return
        if self._queued >= MAX_QUEUED:
            # Past the bound, what the other readers keep is kept, up to a second bound (a cell
            # can send results in a loop too), then only the status, which says a request
            # ended (up to a third: code in a kernel could send those too).
            kind = _msg_type(parts[0])
            kept = not droppable(kind) and self._queued < 2 * MAX_QUEUED
            if not kept and not (kind == "status" and self._queued < 3 * MAX_QUEUED):
                self._dropped += 1
                return
            if self._dropped:  # what was dropped is told where it was, before what is kept
                self._tell_dropped()
        self._put(encode_v1("iopub", parts))
        self.session.touch()  # output is activity

    def _tell_dropped(self) -> None:
        text = (
            f"Hearth dropped {self._dropped} IOPub messages: this client read them more slowly "
            "than the kernel wrote them.\n"
        )
        self._dropped = 0
        self._put(encode_v1("iopub", own_message("stream", {"name": "stderr", "text": text})))

    # -- to the kernel --------------------------------------------------------------------------

    async def _receive(self, channel: str, parts: list[bytes]) -> None:
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
                self._put(
                    encode_v1("iopub", own_message("status", {"execution_state": "restarting"}))
                )
        finally:
            self._put(None)

    async def _serve(self, kernel: Kernel) -> None:
        """Relay to and from ``kernel`` until it is gone."""
        sockets = {channel: kernel.connect(channel, self._identity) for channel in OWN_SOCKETS}
        kernel.iopub_listeners.append(self._on_iopub)
        readers = [
            asyncio.get_running_loop().create_task(self._read(channel, socket))
            for channel, socket in sockets.items()
        ]
        try:
            while self._pending:  # in the order they came, before any that comes now
                pending, self._pending = self._pending, []
                for channel, parts in pending:
                    await sockets[channel].send_multipart([DELIMITER, kernel.sign(parts), *parts])
            self._live, self._kernel = sockets, kernel
            while not kernel.died.is_set() and self._ours():
                await _first(kernel.died.wait(), self.session.changed())
        finally:
            self._live = self._kernel = None
            with contextlib.suppress(ValueError):
                kernel.iopub_listeners.remove(self._on_iopub)
            for reader in readers:
                reader.cancel()
            for reader in readers:
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            for socket in sockets.values():
                socket.close(linger=0)

    async def _read(self, channel: str, socket: zmq.asyncio.Socket) -> None:
        """Every message on one socket, in order, to the client. The wait is a poll and the
        reading drains the socket, so that an edge-triggered wake-up can't be missed."""
        plain: zmq.Socket[bytes] = zmq.Socket.shadow(socket.underlying)
        while True:
            await socket.poll(POLL_MS)
            while True:
                await self._roomy.wait()  # a client that does not read holds its replies back
                if not int(plain.get(zmq.EVENTS)) & zmq.POLLIN:  # no exception per wake-up
                    break
                frames = plain.recv_multipart(zmq.NOBLOCK)
                try:
                    start = frames.index(DELIMITER) + 2
                except ValueError:
                    continue  # not a Jupyter message: nothing a client could read
                if len(frames) - start >= 4:
                    self._put(encode_v1(channel, frames[start:]))


class ChannelLink:
    """One websocket's hold on a relay (``ChannelRelay.attach``)."""

    def __init__(self, relay: ChannelRelay, holder: int) -> None:
        self.relay, self._holder = relay, holder

    async def __aenter__(self) -> ChannelLink:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.relay._leave(self._holder)

    async def next(self) -> bytes | None:
        """The next v1 message for the client; None at the end, or once taken over."""
        return await self.relay._next(self._holder)

    async def receive(self, channel: str, parts: list[bytes]) -> None:
        """Send a client's message to the kernel, or hold it until there is one."""
        if self._holder == self.relay._holder:
            await self.relay._receive(channel, parts)


async def _first(*waits: Coroutine[Any, Any, Any]) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # none left running


def _msg_type(header: bytes) -> str:
    try:
        kind = json.loads(header).get("msg_type")
    except (ValueError, AttributeError):
        return ""
    return kind if isinstance(kind, str) else ""
