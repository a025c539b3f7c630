"""A kernel session: the slot that one task of the service runs, holding successive kernels.

The task (:meth:`HostedKernelSession.run`) owns every kernel the session has: it starts one, waits
until it is asked to restart, recycle or close — or the kernel dies —, stops it, and goes on.
Callers never start or stop kernels themselves; they ask, and the task does it, so each kernel's
``async with`` opens and closes in one task.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import Any

from hearth.errors import KernelDied, NotFound, storage_error
from hearth.kernels.backlog import Backlog, size_of
from hearth.kernels.gate import StartGate
from hearth.kernels.kernel import Kernel, KernelSpec
from hearth.kernels.procs import is_gone
from hearth.kernels.status import KernelLifecycle, KernelStatus
from hearth.protocol.outputs import ExecutionEvent
from hearth.sandbox.mounts import MoveFailed
from hearth.tasks import TaskSet

__all__ = ["HostedKernelSession", "Want"]

RUNS_END_TIMEOUT = 5.0  # seconds a closed session's executions have to end by themselves

log = logging.getLogger("hearth.kernels")
S = KernelStatus


class Want(enum.Enum):
    RUN = "run"
    RESTART = "restart"
    RECYCLE = "recycle"
    CLOSE = "close"


class _Sink:
    """The events of one run, for its reader, within a ``Backlog`` (its overflow policy);
    dropped once the reader is gone."""

    def __init__(self) -> None:
        self._backlog: Backlog[ExecutionEvent | BaseException | None] = Backlog(_notice)
        self._more = asyncio.Event()
        self._reading = True

    def put(self, event: ExecutionEvent) -> None:
        if self._reading:
            self._backlog.put_message(event, size_of(event), event["type"])
            self._more.set()

    def fail(self, exc: BaseException) -> None:
        if self._reading:
            self._backlog.put(exc, 0, False)
            self._more.set()

    def end(self) -> None:
        self._backlog.put(None, 0, False)
        self._more.set()

    async def events(self) -> AsyncGenerator[ExecutionEvent, None]:
        try:
            while True:
                while not self._backlog:
                    self._more.clear()
                    await self._more.wait()
                item = self._backlog.take()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._reading = False


def _notice(text: str) -> ExecutionEvent:
    return {"type": "stream", "name": "stderr", "text": text}


class HostedKernelSession:
    """A kernel session as the session host holds it: its owner, its files, its status and the
    kernel it runs now (``hearth.client.KernelSession`` is a client's handle on one)."""

    def __init__(
        self,
        uid: str,
        kernel_name: str,
        working_dir: Path,
        *,
        spec_for: Callable[[HostedKernelSession], KernelSpec],
        gate: StartGate,
        urgent: bool,
        clock: Callable[[], float],
        on_event: Callable[[HostedKernelSession, str], None],
    ) -> None:
        self.uid = uid
        self.kernel_name = kernel_name
        self.working_dir = working_dir
        self.owner: str | None = None
        self.session_id: str | None = None
        self.files: list[dict[str, Any]] = []
        self.from_pool = False
        self.destroying = False
        self.restarted_pending = False
        self._execution_count = 0
        self.created_at = self.last_activity = clock()
        self.life = KernelLifecycle(uid)
        self.start_error: BaseException | None = None
        self.ticket = gate.request(urgent)
        self._gate = gate
        self._spec_for = spec_for
        self._clock = clock
        self._on_event = on_event
        self._kernel: Kernel | None = None
        self._want = Want.RUN
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._exec_lock = asyncio.Lock()
        self._runs = TaskSet("a kernel session's executions")  # ended with the session
        self.generation = 0  # one more at each release: a queued execution is its owner's only
        self.connections = 0  # Jupyter clients on its channels (SPEC §10)
        self.jupyter: dict[str, str] | None = None  # its Jupyter session: id, path, name, type

    @property
    def status(self) -> KernelStatus:
        return self.life.status

    @property
    def name(self) -> str:
        return f"{self.owner}/{self.session_id}" if self.owner else self.uid

    def hand_out(self) -> None:
        self._move(S.ACTIVE, "hand out")

    def kernel_dead(self) -> bool:
        kernel = self._kernel
        return kernel is not None and (kernel.died.is_set() or is_gone(kernel.pid))

    def mark_idle(self) -> None:
        self._move(S.IDLE, "reclaim the idle")

    @property
    def execution_count(self) -> int:
        """Of its last execution, Hearth's or a Jupyter client's."""
        kernel = self._kernel
        return max(self._execution_count, kernel.execution_count if kernel is not None else 0)

    @execution_count.setter
    def execution_count(self, value: int) -> None:
        self._execution_count = value

    @property
    def execution_state(self) -> str:
        """Jupyter's word for it: starting, idle, busy or dead."""
        kernel = self._kernel
        if self.status is S.DEAD or self.status is S.CLOSED:
            return "dead"
        if kernel is None or self.status is S.STARTING:
            return "starting"
        return kernel.execution_state

    async def changed(self) -> None:
        """Returns at the session's next change of status."""
        await self._changed.wait()

    def touch(self) -> None:
        self.last_activity = self._clock()

    def _move(self, to: KernelStatus, call: str) -> None:
        self.life.move(to, call)
        self._changed.set()
        self._changed = asyncio.Event()
        self._on_event(self, "status")

    # -- what callers ask ---------------------------------------------------------------------

    def ask(self, want: Want) -> None:
        """Ask the session's task to restart, recycle or close it; CLOSE wins over the rest."""
        if self._want is not Want.CLOSE:
            self._want = want
        self._wake.set()

    async def wait_ready(self) -> Kernel:
        """The current kernel once it is ready (waiting through a start or restart)."""
        while True:
            if self.status is S.CLOSED:
                raise self._closed_error()
            if self._kernel is not None and self.status not in (S.STARTING, S.DEAD):
                return self._kernel
            await self._changed.wait()

    def _closed_error(self) -> Exception:
        if self.start_error is not None:
            full = storage_error(self.start_error)
            return full or KernelDied(f"The kernel could not start: {self.start_error}")
        return NotFound(f"Kernel session {self.session_id!r} was closed meanwhile.")

    def execute(self, code: str, time_limit: float | None) -> AsyncGenerator[ExecutionEvent, None]:
        """Run ``code`` after the executions queued before it; yields events, ``done`` last.

        The run is a task of its own, not the reader's: it holds the execution lock and keeps its
        time limit however slowly the events are read, and goes on to its end when the reader
        leaves (its events are then dropped), as a Jupyter cell does when its page closes."""
        if self._runs.closed:
            raise NotFound(f"Kernel session {self.session_id!r} was closed meanwhile.")
        self.touch()
        sink = _Sink()
        self._runs.spawn(self._run(code, time_limit, sink, self.generation))
        return sink.events()

    async def _run(self, code: str, time_limit: float | None, sink: _Sink, generation: int) -> None:
        try:
            async with self._exec_lock:
                kernel = await self.wait_ready()
                if self.generation != generation:  # released meanwhile: maybe someone else's now
                    raise NotFound(f"Kernel session {self.session_id!r} was closed meanwhile.")
                self._move(S.EXECUTING, "execute code in")
                try:
                    async for event in kernel.execute(code, time_limit):
                        if event["type"] == "done":
                            event["restarted"] = event["restarted"] or self.restarted_pending
                            self.restarted_pending = False
                            if event["execution_count"] is not None:
                                self.execution_count = event["execution_count"]
                        sink.put(event)
                finally:
                    if self.status is S.EXECUTING:
                        self._move(S.ACTIVE, "finish an execution in")
                    self.touch()
        except Exception as exc:  # the reader raises it (a kernel that could not be had)
            sink.fail(exc)
        except asyncio.CancelledError:  # the session ended while this waited: say why
            sink.fail(self._closed_error())
            raise
        finally:
            sink.end()

    async def interrupt(self) -> None:
        self.touch()
        kernel = self._kernel
        if kernel is not None and self.status in (S.ACTIVE, S.EXECUTING):
            await kernel.interrupt()

    async def restart(self) -> None:
        self.touch()
        self.ask(Want.RESTART)
        if self.status in (S.ACTIVE, S.EXECUTING, S.IDLE):
            self._move(S.STARTING, "restart")  # so that nobody is handed the old kernel
        await self.wait_ready()

    async def follow(self, inside: Path) -> None:
        """Its kernel, started in its sandbox with its cwd bound at ``inside`` (the pool's path),
        finds its cwd at the working dir from now on. Should the move fail, the kernel is
        restarted, in the working dir (it holds nothing yet: it was just handed out)."""
        kernel = self._kernel
        if kernel is None or kernel.spec.cwd != inside:
            return  # restarted meanwhile: its new kernel started in the working dir
        try:
            await kernel.move_cwd(self.working_dir)
        except MoveFailed as exc:
            if kernel is not self._kernel or kernel.died.is_set():
                return  # replaced meanwhile, or dead and restarting: in the working dir
            log.warning(
                "restarting the kernel of session %s in its working dir: %s", self.name, exc
            )
            await self.restart()

    # -- the task -----------------------------------------------------------------------------

    async def run(self, reset: Callable[[HostedKernelSession], Awaitable[None]]) -> None:
        """The session's whole life; ``reset`` clears it for the pool after a recycle."""
        try:
            while True:
                await self._one_kernel()
                want = self._want
                if want is Want.CLOSE:
                    break
                if want is Want.RECYCLE:
                    await reset(self)
                    self._on_event(self, "recycle")
                self.ticket = self._gate.request(urgent=self.owner is not None)
                self._move(S.STARTING, "start a kernel for")
        finally:
            self._kernel = None
            if self.status is not S.CLOSED:
                self._move(S.CLOSED, "close")
            # what still waits learns it closed; none outlives the session
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._runs.join(), RUNS_END_TIMEOUT)
            await self._runs.aclose()

    async def _one_kernel(self) -> None:
        self._want = Want.RUN
        self._wake.clear()
        try:
            async with contextlib.AsyncExitStack() as stack:
                async with self._gate.slot(self.ticket):
                    spec = self._spec_for(self)
                    kernel = Kernel(spec, on_death=self._kernel_died)
                    await stack.enter_async_context(kernel)
                stack.callback(setattr, self, "_kernel", None)
                self._kernel = kernel
                self.start_error = None
                self._on_event(self, "start")
                if self._want is Want.RUN:
                    self._move(S.ACTIVE if self.owner else S.POOLED, "hand out")
                    await self._wake.wait()
                stopping = self._want in (Want.RECYCLE, Want.CLOSE)
                self._move(S.CLEANING if stopping else S.STARTING, self._want.value)
        except Exception as exc:
            log.warning("kernel session %s could not start a kernel: %s", self.name, exc)
            self.start_error = exc
            self.ask(Want.CLOSE)

    def _kernel_died(self, kernel: Kernel) -> None:
        if kernel is not self._kernel or self._want is not Want.RUN:
            return  # stopped on purpose
        log.warning("kernel of session %s died: %s", self.name, kernel.why_dead)
        self._on_event(self, "death")
        if self.owner is not None:
            self.restarted_pending = True
        self._move(S.DEAD, "notice the death of")
        self.ask(Want.RESTART)
