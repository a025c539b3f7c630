"""The warm pool: every kernel session's task, and the bookkeeping of who holds which.

``async with KernelPool(...) as pool`` starts ``target`` kernels and returns once they are ready;
leaving the block stops every kernel. Each session runs as a task of the pool's task group (see
``session.py``), and so does the maintenance loop: refill every ``refill_interval`` seconds (the
safety net: taking a session refills at once), and idle reclaim every ``cleanup_interval``.
The decisions are ``policy.py``'s; this module carries them out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import zmq.asyncio

from hearth.errors import LimitReached
from hearth.kernels.gate import StartGate
from hearth.kernels.kernel import KernelSpec
from hearth.kernels.policy import Acquire, PoolCounts, PoolPolicy, Release, idle_expired
from hearth.kernels.session import HostedKernelSession, Want
from hearth.kernels.stats import PoolStats
from hearth.kernels.status import KernelStatus
from hearth.kernels.workdirs import WorkDirs
from hearth.sandbox import Sandbox
from hearth.sandbox.launch import Bind

__all__ = ["KernelPool", "PoolConfig"]

log = logging.getLogger("hearth.kernels")
S = KernelStatus


@dataclass(frozen=True, kw_only=True)
class PoolConfig:
    target: int
    max_kernels: int
    kernel_name: str  # what the pool holds
    max_concurrent_starts: int
    refill_interval: float
    cleanup_interval: float
    max_idle_time: float
    start_timeout: float = 60.0
    refill_delay: float = 0.2


class KernelPool:
    def __init__(
        self,
        config: PoolConfig,
        dirs: WorkDirs,
        env: Mapping[str, str],
        *,
        forget: Callable[[str, str], None] = lambda user, session_id: None,
        sandbox: Sandbox | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.sandbox = sandbox
        self._slots: dict[str, int] = {}  # session uid -> its slot (a kernel uid of its own)
        self._started_in: dict[str, Path] = {}  # session uid -> the cwd its kernel was bound at
        self._runtimes: dict[str, Path] = {}  # session uid -> its kernel's runtime directory
        self.policy = PoolPolicy(config.target, config.max_kernels)
        self.dirs = dirs
        self._env = env
        self._forget = forget
        self.stats = PoolStats()  # pulled by the server's metrics
        self._clock = clock
        self._gate = StartGate(config.max_concurrent_starts)
        self._sessions: dict[str, HostedKernelSession] = {}
        self._by_key: dict[tuple[str, str], HostedKernelSession] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._changed = asyncio.Event()
        self._refill_timer: asyncio.TimerHandle | None = None
        self._closing = False

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            self._zmq = zmq.asyncio.Context()
            stack.callback(self._zmq.destroy, linger=0)
            self._group = await stack.enter_async_context(asyncio.TaskGroup())
            stack.push_async_callback(self._stop_everything)
            self._maintenance = self._group.create_task(self._maintain())
            self.refill()
            await self._until_warm()
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    async def _stop_everything(self) -> None:
        log.info("stopping %d kernel sessions", len(self._tasks))
        self._closing = True
        if self._refill_timer is not None:
            self._refill_timer.cancel()
        self._maintenance.cancel()
        for task in list(self._tasks.values()):
            task.cancel()

    async def _until_warm(self) -> None:
        while True:
            counts = self.counts()
            if counts.ready >= self.policy.target or not counts.starting:
                return
            await self._changed.wait()

    # -- who holds what -----------------------------------------------------------------------

    def find(self, user: str, session_id: str) -> HostedKernelSession | None:
        return self._by_key.get((user, session_id))

    def owned_by(self, user: str | None = None) -> list[HostedKernelSession]:
        """The sessions handed out to ``user`` (to anyone: ``None``)."""
        return [s for (owner, _), s in self._by_key.items() if user is None or owner == user]

    def counts(self) -> PoolCounts:
        ready = starting = users = destroying = 0
        for s in self._sessions.values():
            if s.status is S.CLOSED:
                continue
            if s.destroying:
                destroying += 1
            elif s.owner is not None:
                users += 1
            elif s.status is S.POOLED:
                ready += 1
            else:
                starting += 1
        return PoolCounts(ready, starting, users, destroying)

    def pool_state(self) -> dict[str, int]:
        c = self.counts()
        return {
            "target": self.policy.target,
            "ready": c.ready,
            "starting": c.starting,
            "active": c.users,
            "max_kernels": self.policy.max_kernels,
        }

    def status_counts(self) -> Iterable[tuple[str, str, int]]:
        """(kind, status, count) rows for the sessions gauge."""
        by_status: dict[str, int] = {}
        for s in self._sessions.values():
            by_status[s.status.value] = by_status.get(s.status.value, 0) + 1
        return [("kernel", status, n) for status, n in sorted(by_status.items())]

    def _on_event(self, session: HostedKernelSession, event: str) -> None:
        if event != "status":
            self.stats.kernel_event(event)
        self._changed.set()
        self._changed = asyncio.Event()

    # -- sessions' tasks ------------------------------------------------------------------------

    def _spawn(
        self, kernel_name: str, working_dir: Path | None, urgent: bool
    ) -> HostedKernelSession:
        uid = "k-" + secrets.token_hex(6)
        session = HostedKernelSession(
            uid,
            kernel_name,
            working_dir or self.dirs.new_pool_dir(uid),
            spec_for=self._spec_for,
            gate=self._gate,
            urgent=urgent,
            clock=self._clock,
            on_event=self._on_event,
        )
        self._sessions[uid] = session
        self._tasks[uid] = self._group.create_task(self._life(session), name=f"kernel {uid}")
        return session

    def _slot_of(self, session: HostedKernelSession) -> int:
        slot = self._slots.get(session.uid)
        if slot is None:
            taken = set(self._slots.values())
            slot = self._slots[session.uid] = next(
                n for n in range(len(taken) + 1) if n not in taken
            )
        return slot

    def _spec_for(self, session: HostedKernelSession) -> KernelSpec:
        slot = self._slot_of(session)
        views: tuple[Bind, ...] = ()
        if self.sandbox is not None and self.sandbox.bubblewrap:
            # started outside sessions/ (in the pool): it will need its view of sessions/
            if not session.working_dir.is_relative_to(self.dirs.sessions):
                view = self.dirs.fresh_view(session.uid)
                views = (Bind(str(view), dest=str(self.dirs.sessions)),)
                self._started_in[session.uid] = session.working_dir
            else:
                self._started_in.pop(session.uid, None)
        runtime = self._runtimes[session.uid] = self.dirs.new_runtime_dir()
        if session.owner is not None:  # a user's kernel restarted
            self.dirs.give(session.owner, session.working_dir, runtime)
        return KernelSpec(
            sandbox=self.sandbox,
            key=session.uid,
            uid=self.sandbox.kernel_uid(slot) if self.sandbox is not None else 0,
            name=session.kernel_name,
            cwd=session.working_dir,
            runtime_dir=runtime,
            env=self._env,
            start_timeout=self.config.start_timeout,
            context=self._zmq,
            views=views,
        )

    async def _life(self, session: HostedKernelSession) -> None:
        try:
            await session.run(self._reset)
        except Exception:
            log.exception("kernel session %s failed", session.name)
        finally:
            self._sessions.pop(session.uid, None)
            self._tasks.pop(session.uid, None)
            self._slots.pop(session.uid, None)
            self._started_in.pop(session.uid, None)
            self._runtimes.pop(session.uid, None)
            self.dirs.drop_view(session.uid)
            # A user's session ended by the host stopping keeps its record and its files: the
            # next start lists it lost (SPEC §8); any other end forgets both.
            kept = self._closing and session.owner is not None and not session.destroying
            if kept:  # no longer served, still on record
                self._by_key = {k: v for k, v in self._by_key.items() if v is not session}
            elif session.owner is not None:
                self._unregister(session)
            if session.destroying:
                self.stats.kernel_event("destroy")
            self._on_event(session, "status")
            if not kept:
                with contextlib.suppress(OSError):
                    await self.dirs.delete(self.dirs.throw_away(session.working_dir))

    async def _reset(self, session: HostedKernelSession) -> None:
        """Recycle: the old kernel is stopped; wipe every trace of its user."""
        await self.dirs.delete(session.working_dir)
        session.working_dir = self.dirs.new_pool_dir(session.uid)
        self.dirs.drop_view(session.uid)
        session.owner = session.session_id = None
        session.files = []
        session.jupyter = None
        session.from_pool = session.restarted_pending = False
        session.execution_count = 0
        session.created_at = session.last_activity = self._clock()

    def refill(self) -> None:
        """Start pool kernels up to the target (in the background)."""
        if self._closing:
            return
        for _ in range(self.policy.refill(self.counts())):
            self._spawn(self.config.kernel_name, None, urgent=False)

    async def _maintain(self) -> None:
        period = min(self.config.refill_interval, self.config.cleanup_interval)
        next_cleanup = self._clock() + self.config.cleanup_interval
        while True:
            await asyncio.sleep(period)
            try:
                if self._clock() >= next_cleanup:
                    next_cleanup = self._clock() + self.config.cleanup_interval
                    self.reclaim_idle()
                self.check_pool()
            except Exception:
                log.exception("kernel pool maintenance failed; trying again next time")

    def check_pool(self) -> None:
        """Replace pooled kernels found dead, then refill."""
        for s in list(self._sessions.values()):
            if s.status is S.POOLED and s.kernel_dead():
                s.ask(Want.RESTART)
        self.refill()

    def reclaim_idle(self) -> list[str]:
        """Release every session idle for ``session_pool_max_idle_time``; their ids."""
        # a cell a Jupyter client runs keeps its kernel busy: not idle, however long it is quiet
        active = [
            (s, s.last_activity)
            for s in self._by_key.values()
            if s.status is S.ACTIVE and s.execution_state != "busy"
        ]
        expired = idle_expired(active, self._clock(), self.config.max_idle_time)
        names = []
        for s in expired:
            names.append(s.session_id or s.uid)
            s.mark_idle()
            self.release(s)
        return names

    # -- handing out and taking back ------------------------------------------------------

    def check_room(self, kernel_name: str) -> Acquire:
        counts = self.counts()
        decision = self.policy.acquire(counts)
        if kernel_name != self.config.kernel_name:  # the pool holds default kernels
            room = counts.total < self.policy.max_kernels
            decision = Acquire.COLD if room else Acquire.REFUSE
        if decision is Acquire.REFUSE:
            raise LimitReached(self.policy.refused_message(counts))
        return decision

    async def hand_out(self, user: str, sid: str, name: str) -> HostedKernelSession:
        """A ready session for ``user`` under id ``sid``: taken from the pool, claimed from the
        pool's starts, or started now (when max_kernels allows); its latency is counted."""
        started = time.perf_counter()
        session, source = await self._hand_out(user, sid, name)
        self.stats.acquired(source, time.perf_counter() - started)
        self._refill_soon()
        return session

    def _refill_soon(self) -> None:
        """Refill right after a take, but not inside the taker's first answer: a kernel start
        forks the server and burns a CPU for ~0.4 s, which would double the latency of the
        session just handed out (its first execute usually follows within milliseconds)."""
        if self._refill_timer is None or self._refill_timer.cancelled():
            loop = asyncio.get_running_loop()
            self._refill_timer = loop.call_later(self.config.refill_delay, self._timed_refill)

    def _timed_refill(self) -> None:
        self._refill_timer = None
        if not self._closing:
            self.refill()

    async def _hand_out(self, user: str, sid: str, name: str) -> tuple[HostedKernelSession, str]:
        while True:
            decision = self.check_room(name)
            if decision is Acquire.TAKE:
                session = next(s for s in self._sessions.values() if s.status is S.POOLED)
                self._assign(session, user, sid, from_pool=True)
                session.hand_out()
                try:
                    await self._arrive(session, user, sid)
                except BaseException:
                    if session.owner is not None:
                        self.release(session)
                    raise
                return session, "pool"
            if decision is Acquire.COLD:
                workdir = self.dirs.move_in(self.dirs.new_pool_dir("new-" + sid), user, sid)
                session = self._spawn(name, workdir, urgent=True)
                break
            claimable = (S.STARTING, S.DEAD)  # not CLEANING: a recycle's reset is still ahead
            claimed = next(
                (
                    s
                    for s in self._sessions.values()
                    if s.status in claimable and s.owner is None and not s.destroying
                ),
                None,
            )
            if claimed is not None:
                session = claimed
                self._gate.promote(session.ticket)
                break
            await self._changed.wait()
        self._assign(session, user, sid, from_pool=False, move=False)
        try:
            await session.wait_ready()
            # The kernel runs now (a directory renamed while a process is spawned in it would
            # fail the spawn); its cwd follows the rename.
            session.working_dir = self.dirs.move_in(session.working_dir, user, sid)
            await self._arrive(session, user, sid)
        except BaseException:
            if session.owner is not None:
                self.release(session)
            raise
        return session, "cold" if decision is Acquire.COLD else "claim"

    def _assign(
        self,
        session: HostedKernelSession,
        user: str,
        sid: str,
        *,
        from_pool: bool,
        move: bool = True,
    ) -> None:
        if move:
            session.working_dir = self.dirs.move_in(session.working_dir, user, sid)
        session.owner, session.session_id, session.from_pool = user, sid, from_pool
        session.created_at = session.last_activity = self._clock()
        self._by_key[(user, sid)] = session
        self._on_event(session, "status")

    async def _arrive(self, session: HostedKernelSession, user: str, sid: str) -> None:
        """A sandboxed kernel started in the pool: its working dir was renamed outside, and its
        bind mount is moved to the same path inside (a directory made for it in its view of
        ``sessions/``), so that its cwd is the working dir the API reports."""
        runtime = self._runtimes.get(session.uid)
        # from now on, what it writes counts towards its user's disk limit
        self.dirs.give(user, session.working_dir, *([runtime] if runtime else []))
        inside = self._started_in.pop(session.uid, None)
        if inside is not None:
            self.dirs.show(session.uid, user, sid)
            await session.follow(inside)

    def _unregister(self, session: HostedKernelSession) -> None:
        assert session.owner is not None and session.session_id is not None
        self._by_key.pop((session.owner, session.session_id), None)
        self._forget(session.owner, session.session_id)

    def release(self, session: HostedKernelSession) -> None:
        session.generation += 1  # its queued executions end here, whoever gets it next
        self._unregister(session)
        session.working_dir = self.dirs.throw_away(session.working_dir)
        default = session.kernel_name == self.config.kernel_name
        decision = self.policy.release(self.counts()) if default else Release.DESTROY
        session.owner = session.session_id = None
        session.jupyter = None
        if decision is Release.RECYCLE:
            session.ask(Want.RECYCLE)
        else:
            session.destroying = True
            session.ask(Want.CLOSE)
        self._on_event(session, "status")
