"""``hearth attach``: the local terminal on a terminal session, like ``tmux attach``.

The local terminal goes into raw mode (every key goes to the remote shell) and comes back as it
was on every way out. ``Ctrl-\\`` detaches; the session keeps running. The window size is sent
at start (the ``rows``/``cols`` of the websocket URL) and on ``SIGWINCH``.

Nothing is printed twice: each output frame carries its offset in the session's output stream,
the loop remembers the offset it has written up to, and a dropped connection is resumed with
``since=<that offset>`` (with a backoff). The offset is also kept per session in a small JSON
file in the data directory, so a later ``hearth attach`` of the same session shows only what is
new. Without such an offset it starts from the session's screen, as the server's model of it
has it (SPEC §9), so a full-screen program shows as it is; ``--replay`` replays the whole buffer
instead. The file is rewritten as output is written
(at most every ``SAVE_EVERY`` seconds), so even a ``hearth attach`` killed with SIGKILL leaves an
offset at most that old behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import sys
import termios
import time
import tty
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import websockets

from hearth.client._calls import terminal_ws_url, unreachable
from hearth.errors import BadRequest, NotFound, ServiceError, error_for_status
from hearth.protocol import decode_output

__all__ = ["DETACH_KEY", "AttachState", "attach"]

DETACH_KEY = b"\x1c"  # Ctrl-\
GIVE_UP_AFTER = 120.0  # seconds of failed reconnects before saying so and leaving
_MAX_QUEUED_INPUT = 1024  # chunks typed while disconnected; past that the oldest are dropped
SAVE_EVERY = 1.0  # seconds between rewrites of the remembered offset while output flows
CLEAR_SCREEN = b"\x1b[H\x1b[2J"  # before a session's screen is drawn on the local one


class AttachState:
    """The last offset written, per server, token and session: a small JSON file, rewritten
    atomically, bounded to the most recent ``limit`` sessions. Only a hash of the token is
    kept."""

    def __init__(self, path: Path, limit: int = 200) -> None:
        self.path, self.limit = path, limit

    @staticmethod
    def key(url: str, token: str | None, id: str) -> str:
        who = hashlib.sha256((token or "").encode()).hexdigest()[:12]
        return f"{url} {who} {id}"

    def _load(self) -> dict[str, int]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, int) and v >= 0}

    def get(self, key: str) -> int | None:
        return self._load().get(key)

    def put(self, key: str, offset: int | None) -> None:
        data = self._load()
        data.pop(key, None)
        if offset is not None:
            data[key] = offset
        data = dict(list(data.items())[-self.limit :])
        with contextlib.suppress(OSError):  # a read-only home must not break attaching
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self.path)


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[bool]:
    """The terminal on ``fd`` in raw mode for the block (yields False when it isn't a tty)."""
    if not os.isatty(fd):
        yield False
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def window_size(fd: int) -> tuple[int | None, int | None]:
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None, None
    return (size.lines or None), (size.columns or None)


class _Dropped(Exception):
    """The connection broke; resume it."""


class _Attacher:
    def __init__(
        self,
        url: str,
        token: str | None,
        id: str,
        since: int | None,
        remember: Callable[[int | None], None] = lambda offset: None,
        replay: bool = False,
    ) -> None:
        self.url, self.token, self.id = url, token, id
        self.replay = replay  # with no offset: replay the buffer, not restore the screen
        self.remember = remember  # keeps the offset for a later attach
        self._remembered_at = -SAVE_EVERY
        self._remember_timer: asyncio.TimerHandle | None = None
        self.written = since  # the offset of the next byte to write; None: from the buffer start
        self.stdin, self.stdout = sys.stdin.fileno(), sys.stdout.fileno()
        self.raw = False
        self.detached = asyncio.Event()
        # Input and resize frames to send; one that fails to send goes back in front, so what
        # is typed while the connection is down goes out on the next one.
        self.outbox: deque[bytes | str] = deque(maxlen=_MAX_QUEUED_INPUT)
        self.outbox_ready = asyncio.Event()
        self.exit_code: int | None = None
        self.exit_reason: str | None = None
        self.resumed = False  # the current connection got its hello
        self.stored_since = since  # the offset came from the state file (it may be stale)

    # --- local side ----------------------------------------------------------------------

    def note(self, text: str) -> None:
        """A line for the user on stderr (``\\r\\n``: the terminal may be raw)."""
        sys.stderr.write(f"\r\n[hearth] {text}\r\n" if self.raw else f"[hearth] {text}\n")
        sys.stderr.flush()

    def _on_stdin(self) -> None:
        try:
            data = os.read(self.stdin, 65536)
        except OSError:
            data = b""
        if not data:  # end of input: nothing more to type, so leave
            self.detached.set()
            return
        before, key, _ = data.partition(DETACH_KEY)
        if before:
            self._queue(before)
        if key:
            self.detached.set()

    def _on_winch(self) -> None:
        rows, cols = window_size(self.stdout)
        if rows and cols:
            self._queue(json.dumps({"type": "resize", "rows": rows, "cols": cols}))

    def _queue(self, item: bytes | str) -> None:
        self.outbox.append(item)
        self.outbox_ready.set()

    def _write(self, offset: int, data: bytes) -> None:
        if self.written is not None:
            if offset + len(data) <= self.written:
                return  # already written
            data = data[max(0, self.written - offset) :]
        view = memoryview(data)
        while view:
            view = view[os.write(self.stdout, view) :]
        self.written = offset + len(data) if self.written is None else self.written + len(data)
        self._remember_soon()

    def _draw_screen(self, data: str, offset: int) -> None:
        """The session's screen, on a cleared local one; output goes on from ``offset``."""
        view = memoryview(CLEAR_SCREEN + data.encode())
        while view:
            view = view[os.write(self.stdout, view) :]
        self.written = offset
        self._remember_soon()

    def _remember_soon(self) -> None:
        """Keep the offset now, or once ``SAVE_EVERY`` has passed since it was last kept."""
        if self._remember_timer is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._remembered_at + SAVE_EVERY - loop.time()
        if wait <= 0:
            self._remember_now()
        else:
            self._remember_timer = loop.call_later(wait, self._remember_now)

    def _remember_now(self) -> None:
        self._remember_timer = None
        self._remembered_at = asyncio.get_running_loop().time()
        self.remember(self.written)

    # --- the connection --------------------------------------------------------------------

    async def run(self) -> int | None:
        """Attach until detached (None) or the session exits (its exit code)."""
        loop = asyncio.get_running_loop()
        with raw_mode(self.stdin) as self.raw:
            loop.add_reader(self.stdin, self._on_stdin)
            loop.add_signal_handler(signal.SIGWINCH, self._on_winch)
            for sig in (signal.SIGTERM, signal.SIGHUP):
                loop.add_signal_handler(sig, self.detached.set)
            try:
                return await self._connect_until_done()
            finally:
                self.raw = False
                if self._remember_timer is not None:  # the caller keeps the final offset
                    self._remember_timer.cancel()
                    self._remember_timer = None
                loop.remove_reader(self.stdin)
                for sig in (signal.SIGWINCH, signal.SIGTERM, signal.SIGHUP):
                    loop.remove_signal_handler(sig)

    async def _connect_until_done(self) -> int | None:
        delay, failing_since, ever_connected = 0.1, time.monotonic(), False
        while not self.detached.is_set():
            self.resumed = False
            try:
                await self._connection()
                return self.exit_code
            except _Dropped:
                pass
            except BadRequest:
                if not self.stored_since:
                    raise
                # The remembered offset is past this session's output: it is another session
                # under a reused id. Show it from its start.
                self.written = self.stored_since = None
                continue
            except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
                if not ever_connected:
                    raise unreachable(self.url, exc) from None
            self.stored_since = None
            now = time.monotonic()
            if self.resumed:
                ever_connected, delay, failing_since = True, 0.1, now
                self.note("connection lost; reconnecting… (Ctrl-\\ to detach)")
            elif now - failing_since > GIVE_UP_AFTER:
                raise ServiceError(
                    f"Lost the connection to {self.url} and could not reconnect for "
                    f"{GIVE_UP_AFTER:.0f} s. The session keeps running on the server: "
                    f"'hearth attach {self.id}' resumes it."
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.detached.wait(), delay)
            delay = min(delay * 2, 5.0)
        return None

    async def _connection(self) -> None:
        rows, cols = window_size(self.stdout)
        restore = None if self.replay or self.written is not None else "screen"
        url = terminal_ws_url(
            self.url, self.id, since=self.written, restore=restore, rows=rows, cols=cols
        )
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with websockets.connect(
            url, additional_headers=headers, max_size=None, open_timeout=10
        ) as ws:
            sender = asyncio.ensure_future(self._send(ws))
            watcher = asyncio.ensure_future(self.detached.wait())
            receiver = asyncio.ensure_future(self._receive(ws))
            try:
                await asyncio.wait({receiver, watcher}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (sender, watcher, receiver):
                    task.cancel()
                await asyncio.gather(sender, watcher, receiver, return_exceptions=True)
            if self.detached.is_set():  # what was typed just before Ctrl-\ still goes
                with contextlib.suppress(websockets.ConnectionClosed):
                    await self._send(ws, forever=False)
            if receiver.done() and not receiver.cancelled():
                receiver.result()  # its error, if any

    async def _send(self, ws: websockets.ClientConnection, forever: bool = True) -> None:
        while True:
            while self.outbox:
                item = self.outbox.popleft()
                try:
                    await ws.send(item)
                except websockets.ConnectionClosed:
                    self.outbox.appendleft(item)  # not sent: it goes on the next connection
                    raise
            if not forever:
                return
            self.outbox_ready.clear()
            await self.outbox_ready.wait()

    async def _receive(self, ws: websockets.ClientConnection) -> None:
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    self._write(*decode_output(message))
                elif self._frame(json.loads(message)):
                    return
        except websockets.ConnectionClosedError:
            pass
        code, reason = ws.close_code, ws.close_reason or ""
        if code is not None and 4000 <= code < 5000:
            if code == 4404:
                raise NotFound(
                    f"No terminal session {self.id!r} (closed, timed out, or never made): "
                    "'hearth ls' lists yours, 'hearth new' makes one."
                )
            raise error_for_status(code, reason or f"the server closed with code {code}")
        raise _Dropped

    def _frame(self, frame: dict[str, Any]) -> bool:
        """Handle a text frame; True when the session is over."""
        kind = frame.get("type")
        if kind == "hello":
            self.resumed = True
            start = int(frame.get("replay_from", 0))
            if frame.get("missed_bytes"):
                self.note(f"{frame['missed_bytes']} bytes of output were lost while away.")
            if self.written is None or start > self.written:
                self.written = start
        elif kind == "screen":
            self._draw_screen(str(frame.get("data", "")), int(frame.get("offset", 0)))
        elif kind == "missed":
            self.note(f"{frame.get('missed_bytes')} bytes of output were lost (too slow).")
            self.written = int(frame.get("offset", self.written or 0))
        elif kind == "exit":
            # a session that ended for a reason (a lost SSH connection) says it; one that ended
            # with a reason and no exit status failed
            code, self.exit_reason = frame.get("exit_code"), frame.get("reason") or None
            self.exit_code = int(code) if code is not None else (1 if self.exit_reason else 0)
            return True
        elif kind == "error":
            self.note(f"server: {frame.get('message')}")
        return False


async def attach(
    url: str, token: str | None, id: str, *, state: AttachState | None = None, replay: bool = False
) -> int:
    """Attach this process's terminal to session ``id``; the exit status for the shell: 0 when
    detached, the session's exit code when it exited. Fatal problems raise ``HearthError``."""
    key = AttachState.key(url, token, id)
    since = None if replay or state is None else state.get(key)
    remember = (lambda offset: state.put(key, offset)) if state is not None else (lambda _: None)
    attacher = _Attacher(url, token, id, since, remember, replay)
    try:
        code = await attacher.run()
    except NotFound:
        if state is not None:
            state.put(key, None)
        raise
    except BaseException:
        if state is not None and attacher.written is not None:
            state.put(key, attacher.written)
        raise
    if code is None:
        if state is not None:
            state.put(key, attacher.written)
        attacher.note(f"detached from {id}; 'hearth attach {id}' to come back.")
        return 0
    if state is not None:
        state.put(key, None)
    if attacher.exit_reason is not None:
        attacher.note(f"session {id} ended: {attacher.exit_reason} (status {code}).")
    else:
        attacher.note(f"session {id} exited with status {code}.")
    return code
