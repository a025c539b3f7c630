"""The screen model of every terminal (SPEC §9): what its screen shows, for a reload to redraw.

One Node.js process per session host runs ``screen-model.mjs`` (built from ``web/screen/``): a
headless xterm.js terminal per session, the emulator of the workspace itself. A snapshot is
answered after every byte sent before it, so it is the screen at the output offset of the
moment it was asked.

The model never holds the shell back, nor takes CPU from it. Small reads (echoes) go to it at
once; a stream of output waits in the session's buffer until it pauses for ``QUIET`` seconds (or
a snapshot asks), and output that left the buffer meanwhile is not replayed: the screen is
rebuilt from the buffer, which is what the screen of a flood shows. Output waits too while the
model is more than ``MAX_BACKLOG`` behind. It goes in batches (``FLUSH_BYTES`` or
``FLUSH_DELAY``) down a pipe made large. The model runs as SCHED_IDLE (only on CPU nobody else
wants) and is raised to normal priority only while a snapshot is awaited. If Node.js dies it is
started again and every screen is rebuilt from its buffer. A screen untouched for ``idle_time``
seconds sleeps in the model: it is kept as its redraw, not as an emulator, until it is sent
something again (see ``web/screen/model.js``).

Frames to the model: ``[op u8][screen u32][length u32][payload]``; answers: ``[length u32][JSON]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import json
import logging
import os
import resource
import shutil
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Self

from hearth.errors import HearthError, ScreenUnavailable
from hearth.sandbox import Sandbox

__all__ = ["SCRIPT", "Screen", "ScreenModels", "open_models", "snapshot_at"]

log = logging.getLogger("hearth.terminals.screen")

SCRIPT = Path(__file__).with_name("screen-model.mjs")
MAX_BACKLOG = 1024 * 1024  # output waits while the model has this much more to read
RESTART_DELAY = 1.0
MAX_COLD_RESIZES = 64  # window changes a cold screen remembers; one more builds it
QUIET = 0.05  # seconds without output after which a stream's output goes to the model
FLUSH_BYTES = 256 * 1024  # output gathered before it goes down the pipe…
FLUSH_DELAY = 0.005  # …or after this many seconds
PIPE_BYTES = 1024 * 1024  # the pipe's size (F_SETPIPE_SZ; Linux caps it at pipe-max-size)
_HEADER = struct.Struct(">BII")
_OPEN, _DATA, _RESIZE, _CLOSE, _SNAPSHOT, _CENSUS = b"ODRCST"


class Screen:
    """One session's screen in the model. ``source(offset)`` gives the session's output from
    ``offset`` to its end, or None once that offset has left the buffer; the model is fed from
    it, so it may lag behind the output and catch up later without losing a byte."""

    def __init__(
        self,
        models: ScreenModels,
        number: int,
        rows: int,
        cols: int,
        source: Callable[[int | None], tuple[bytes, int] | None],
    ) -> None:
        self._models = models
        self.number = number
        self.rows, self.cols = rows, cols
        self.source = source  # (bytes from the offset, or from the buffer's start; end offset)
        self.offset = 0  # the output offset the model has been sent up to
        self.stale = True  # its model must be rebuilt from the buffer before it is used
        # Cold: not in the model at all, while the buffer still holds every byte of the
        # session's output: it is built from the buffer when first asked for (or when the buffer
        # is about to drop its first byte: ``warm``), its window's changes replayed where they
        # came. Most terminals are never asked for their screen: an emulator each (~300 KiB)
        # would be the largest part of an idle terminal's memory.
        self.cold = False
        self.end = 0  # the output offset seen last
        self.resizes: list[tuple[int, int, int]] = []  # (offset, rows, cols) while cold
        self.first_size = (rows, cols)
        self.closed = False
        self._last_output = 0.0
        self._due: asyncio.TimerHandle | None = None

    def output(self, data: bytes, end: int, streaming: bool) -> None:
        """The session buffered ``data``, up to offset ``end``. Keystroke echoes and the like go
        to the model at once (``data`` itself: one read may hold more lines than the buffer
        keeps); a stream of output is left in the buffer until it pauses for ``QUIET`` seconds
        (or a snapshot is asked for), so a flood costs the model nothing while it flows: the
        model never competes with the shell for the CPU."""
        self.end = end
        if self.cold:
            return
        if not streaming and self._due is None and self._models.feed(self, data, end):
            return
        loop = asyncio.get_running_loop()
        self._last_output = loop.time()
        if self._due is None:
            self._due = loop.call_later(QUIET, self._on_quiet)

    def _on_quiet(self) -> None:
        self._due = None
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        wait = self._last_output + QUIET - loop.time()
        if wait > 0.001:
            self._due = loop.call_later(wait, self._on_quiet)
        elif not self.catch_up():
            self._due = loop.call_later(QUIET, self._on_quiet)  # the model is busy: later

    def catch_up(self) -> bool:
        """Send the model what it lacks (all of the buffer, if it lacks what left it); False
        when the model is too far behind to take it now."""
        return self._models.catch_up(self)

    def warm(self) -> None:
        """Build the screen in the model now (the buffer is about to drop its oldest output);
        it stays cold while the model is down (restarting)."""
        if self.cold:
            self._models.take_all(self)

    def resize(self, rows: int, cols: int) -> None:
        if self.cold and len(self.resizes) < MAX_COLD_RESIZES:
            self.resizes.append((self.end, rows, cols))
            self.rows, self.cols = rows, cols
            return
        self.warm()
        self._models.take_all(self)  # the output before the resize was drawn at the old size
        self.rows, self.cols = rows, cols
        if not self.stale:
            self._models.send(_RESIZE, self, struct.pack(">HH", rows, cols))

    async def snapshot(self) -> dict[str, Any]:
        """The screen after every byte of output so far: ``offset`` (of the next byte),
        ``data`` (escape sequences that redraw it on a blank terminal of its size), ``rows``,
        ``cols``, ``cursor``, ``alternate``, ``lines``."""
        await self.ready()
        offset, answer = self.request()
        return snapshot_at(offset, await answer)

    async def ready(self) -> None:
        """Wait until the model can answer for this screen soon (see ``ScreenModels.ready``)."""
        await self._models.ready(self)

    def request(self) -> tuple[int, asyncio.Future[dict[str, Any]]]:
        """Ask now: (the output offset of the answer, the answer to come)."""
        return self._models.request(self)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self._due is not None:
                self._due.cancel()
            self._models.forget(self)


def snapshot_at(offset: int, answer: dict[str, Any]) -> dict[str, Any]:
    """The model's answer as the API gives it (SPEC §9)."""
    if answer.get("missing"):
        raise ScreenUnavailable("The screen model lost this screen; try again.")
    keys = ("rows", "cols", "cursor", "alternate", "lines", "data")
    return {"offset": offset, **{key: answer[key] for key in keys}}


@contextlib.asynccontextmanager
async def open_models(
    node_binary: str, scrollback: int, sandbox: Sandbox | None = None, idle_time: float = 60.0
) -> AsyncIterator[ScreenModels | None]:
    """``async with open_models(...) as models``: the screen models of a host for the block, or
    None (and a warning saying why and what to do). ``sandbox``: where the model runs (see
    ``Sandbox.screen_model``); ``idle_time``: seconds after which an untouched screen sleeps."""
    node = shutil.which(node_binary)
    if node is None:
        log.warning(
            "no screen model: Node.js was not found, so a reload replays output instead of "
            "redrawing the screen; install Node.js 18 or newer, or set HEARTH_NODE_BINARY",
            extra={"node_binary": node_binary},
        )
        yield None
        return
    models = ScreenModels(node, scrollback, sandbox=sandbox, idle_time=idle_time)
    async with contextlib.AsyncExitStack() as stack:
        started: ScreenModels | None
        try:
            started = await stack.enter_async_context(models)
        except (OSError, HearthError) as exc:
            reason = exc.message if isinstance(exc, HearthError) else str(exc)
            log.warning(f"no screen model: {reason}")
            started = None
        yield started


def _family(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc/PID/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
    return found


def _can_boost() -> bool:
    """Whether this process may bring a child back from SCHED_IDLE to normal priority."""
    nice_limit, _ = resource.getrlimit(resource.RLIMIT_NICE)
    return os.geteuid() == 0 or nice_limit == resource.RLIM_INFINITY or nice_limit >= 20


class ScreenModels:
    """The Node.js process that models every terminal's screen, and the screens in it.
    ``async with`` runs it for the block (``start`` and ``aclose`` for a caller that can't)."""

    def __init__(
        self,
        node: str,
        scrollback: int,
        script: Path = SCRIPT,
        sandbox: Sandbox | None = None,
        idle_time: float = 60.0,
    ) -> None:
        self._node = node
        self._idle_time = idle_time
        self._script = script
        self._sandbox = sandbox
        self._scrollback = scrollback
        self._screens: dict[int, Screen] = {}
        self._numbers = itertools.count(1)
        self._requests = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closing = False
        self._pending = bytearray()  # frames gathered for the next write down the pipe
        self._flush_due: asyncio.TimerHandle | None = None
        self._boostable = _can_boost()
        self.restarts = 0
        self.fed_bytes = 0  # output sent to the model
        self.skipped_bytes = 0  # output it was too far behind to take (screens rebuilt instead)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def screens(self) -> int:
        return len(self._screens)

    async def start(self) -> None:
        if not self._script.is_file():
            raise ScreenUnavailable(
                f"The screen model {self._script.name} is not built: run `make web`."
            )
        argv, env = self._command()
        self._process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,  # a Ctrl-C in the host's terminal is the host's to handle
        )
        self._priority(boosted=False)
        assert self._process.stdin is not None
        pipe = self._process.stdin.get_extra_info("pipe")
        with contextlib.suppress(OSError, AttributeError, ValueError):
            fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self._reader = asyncio.get_running_loop().create_task(self._read(self._process))

    def _command(self) -> tuple[list[str], dict[str, str] | None]:
        """Its argv and environment: in its sandbox, if the host has one."""
        node = os.path.realpath(shutil.which(self._node) or self._node)
        script = os.path.realpath(self._script)
        argv = [node, script, f"{self._idle_time:g}"]
        if self._sandbox is None:
            return argv, None
        prepared = self._sandbox.screen_model(Path(node), Path(script))
        return prepared.command(argv), prepared.spawn_env

    def _priority(self, *, boosted: bool) -> None:
        """Idle (only spare CPU) unless a snapshot is awaited. Without the right to come back
        from SCHED_IDLE (not root, a low RLIMIT_NICE) it stays at nice 10 instead."""
        if self._process is None:
            return
        for pid in _family(self._process.pid):  # Node.js is a child of its sandbox's helpers
            with contextlib.suppress(OSError):  # it may just have exited
                if not self._boostable:
                    os.setpriority(os.PRIO_PROCESS, pid, 10)
                elif boosted:
                    os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))
                else:
                    os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))

    def stats(self) -> dict[str, int]:
        return {
            "screens": len(self._screens),
            "fed_bytes": self.fed_bytes,
            "skipped_bytes": self.skipped_bytes,
            "backlog_bytes": self.backlog,
            "restarts": self.restarts,
        }

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closing = True
        process, self._process = self._process, None
        if process is not None:
            assert process.stdin is not None
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 2.0)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._reader is not None:
            await self._reader
        self._fail_waiting("the session host is stopping")

    # --- screens ---------------------------------------------------------------------------

    def open(
        self,
        rows: int,
        cols: int,
        source: Callable[[int | None], tuple[bytes, int] | None],
        *,
        cold: bool = False,
        end: int = 0,
    ) -> Screen:
        """A screen for a session whose output ends at ``end`` (a buffer restored from a log
        has some already); ``cold``: built from its buffer when first needed (see
        ``Screen.cold``)."""
        screen = Screen(self, next(self._numbers), rows, cols, source)
        self._screens[screen.number] = screen
        screen.cold, screen.end = cold, end
        if not cold:
            self.catch_up(screen)
        return screen

    def forget(self, screen: Screen) -> None:
        self._screens.pop(screen.number, None)
        self.send(_CLOSE, screen, b"")

    def catch_up(self, screen: Screen) -> bool:
        """Feed ``screen`` what it lacks; False if the model is too far behind to take it."""
        if self._process is None or self.backlog > MAX_BACKLOG:
            return False
        self._send_missing(screen)
        return True

    def feed(self, screen: Screen, data: bytes, end: int) -> bool:
        """Feed ``screen`` the output up to ``end``, ``data`` being its last piece; False if
        the model is too far behind to take it."""
        if self._process is None or self.backlog > MAX_BACKLOG:
            return False
        if screen.stale or screen.offset != end - len(data):
            self._send_missing(screen)
        else:
            self.fed_bytes += len(data)
            self._write(_DATA, screen.number, data)
            screen.offset = end
        return True

    def take_all(self, screen: Screen) -> None:
        """Feed ``screen`` what it lacks, however far behind the model is."""
        if self._process is not None:
            self._send_missing(screen)

    def _send_missing(self, screen: Screen) -> None:
        found = None if screen.stale else screen.source(screen.offset)
        if found is None:  # stale, or what it lacks has left the buffer: rebuild it
            self._rebuild(screen)
            return
        data, screen.offset = found
        if data:
            self.fed_bytes += len(data)
            self._write(_DATA, screen.number, data)

    def _rebuild(self, screen: Screen) -> None:
        """Open the screen in the model afresh and feed it the session's buffer (a cold
        screen's window changes where they came)."""
        whole = screen.source(None)
        assert whole is not None
        data, end = whole
        if not screen.stale:
            self.skipped_bytes += max(0, end - len(data) - screen.offset)
        rows, cols = screen.first_size if screen.resizes else (screen.rows, screen.cols)
        self._write(_CLOSE, screen.number, b"")
        self._write(_OPEN, screen.number, struct.pack(">HHI", rows, cols, self._scrollback))
        start = fed = end - len(data)
        for offset, rows, cols in screen.resizes:
            if offset > fed:
                self._write(_DATA, screen.number, data[fed - start : offset - start])
                fed = offset
            self._write(_RESIZE, screen.number, struct.pack(">HH", rows, cols))
        if end > fed:
            self._write(_DATA, screen.number, data[fed - start :])
        if (rows, cols) != (screen.rows, screen.cols):  # changes past what it remembered
            self._write(_RESIZE, screen.number, struct.pack(">HH", screen.rows, screen.cols))
        self.fed_bytes += len(data)
        screen.resizes.clear()
        screen.cold = screen.stale = False
        screen.offset = end

    @property
    def backlog(self) -> int:
        """Bytes sent that the model has not read yet (past what the pipe holds)."""
        stdin = self._process.stdin if self._process is not None else None
        queued = stdin.transport.get_write_buffer_size() if stdin is not None else 0
        return queued + len(self._pending)

    def send(self, op: int, screen: Screen, payload: bytes) -> None:
        """A control frame (resize, close); output goes by ``catch_up``."""
        if self._process is not None:
            self._write(op, screen.number, payload)

    def _write(self, op: int, number: int, payload: bytes) -> None:
        self._pending += _HEADER.pack(op, number, len(payload))
        self._pending += payload
        if len(self._pending) >= FLUSH_BYTES:
            self._flush()
        elif self._flush_due is None:
            self._flush_due = asyncio.get_running_loop().call_later(FLUSH_DELAY, self._flush)

    def _flush(self) -> None:
        if self._flush_due is not None:
            self._flush_due.cancel()
            self._flush_due = None
        stdin = self._process.stdin if self._process is not None else None
        if self._pending and stdin is not None and not stdin.is_closing():
            stdin.write(bytes(self._pending))
        self._pending.clear()

    async def ready(self, screen: Screen) -> None:
        """Wait until the model is near enough to take what the screen lacks."""
        if self._process is None:
            raise ScreenUnavailable("The screen model is restarting; try again in a second.")
        if self.backlog > MAX_BACKLOG:
            self._priority(boosted=True)  # back to idle with the next answer
            self._flush()
        while self.backlog > MAX_BACKLOG:
            assert self._process.stdin is not None
            # drain() waits only while the transport is past its high-water mark: below it,
            # a short wait lets the model read on (a loop on drain alone would spin)
            await self._process.stdin.drain()
            await asyncio.sleep(FLUSH_DELAY)
            if self._process is None:
                raise ScreenUnavailable("The screen model stopped; try again in a second.")

    def request(self, screen: Screen) -> tuple[int, asyncio.Future[dict[str, Any]]]:
        """Ask for the screen now: (the output offset it will be at, its answer to come)."""
        if self._process is None:
            raise ScreenUnavailable("The screen model is restarting; try again in a second.")
        self.take_all(screen)  # however far behind: this answer must include it
        number = next(self._requests)
        future = asyncio.get_running_loop().create_future()
        if not self._waiting:
            self._priority(boosted=True)  # it may owe a backlog: let it catch up at full speed
        self._waiting[number] = future
        self._write(_SNAPSHOT, screen.number, struct.pack(">I", number))
        self._flush()
        return screen.offset, future

    async def census(self) -> dict[str, int]:
        """How many screens the model holds (``terminals``), and how many of them sleep."""
        if self._process is None:
            raise ScreenUnavailable("The screen model is restarting; try again in a second.")
        number = next(self._requests)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[number] = future
        self._write(_CENSUS, 0, struct.pack(">I", number))
        self._flush()
        answer = await future
        return {"terminals": answer["terminals"], "asleep": answer["asleep"]}

    # --- the process -------------------------------------------------------------------------

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        try:
            while True:
                header = await process.stdout.readexactly(4)
                body = await process.stdout.readexactly(int.from_bytes(header, "big"))
                answer = json.loads(body)
                future = self._waiting.pop(answer.get("request", 0), None)
                if future is not None and not future.done():
                    future.set_result(answer)
                if not self._waiting:
                    self._priority(boosted=False)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        code = await process.wait()
        if self._closing or process is not self._process:
            return
        log.warning("screen model exited; restarting it", extra={"exit_code": code})
        self._process = None
        self._fail_waiting("the screen model exited")
        for screen in self._screens.values():
            screen.stale = True
        await asyncio.sleep(RESTART_DELAY)
        if self._closing:
            return
        self.restarts += 1
        try:
            await self.start()  # the screens are rebuilt as their sessions write or are asked for
        except (OSError, HearthError) as exc:
            log.warning("screen model did not start again", extra={"reason": str(exc)})

    def _fail_waiting(self, why: str) -> None:
        self._pending.clear()
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(ScreenUnavailable(f"No screen: {why}; try again."))
