"""One kernel process and its client. Its lifetime is one ``async with``; it is ready when the
block is entered: the kernel answered ``kernel_info`` and IOPub is connected.

Messages are routed by a pump per channel, a reader on its socket's FD in the loop's own
callbacks, to the request they answer (by parent ``msg_id``). When the process exits, every
pending request is told at once (a pidfd watch, no polling).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq.asyncio
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.session import Session

from hearth.errors import KernelDied
from hearth.kernels.backlog import MESSAGE_OVERHEAD, Backlog, size_of
from hearth.kernels.procs import ExitWatch, kill_everything, signal_group
from hearth.kernels.shield import shielded
from hearth.protocol.outputs import (
    ExecutionEvent,
    dead_kernel_error,
    done_event,
    event_from_message,
)
from hearth.sandbox import Prepared, Sandbox
from hearth.sandbox.launch import Bind
from hearth.sandbox.mounts import move_mount
from hearth.sandbox.procs import kill_sandbox, signal_sandbox
from hearth.sandbox.sandbox import KERNEL_RUNTIME

__all__ = ["MARKER_VARIABLE", "Kernel", "KernelSpec", "kernel_environment"]

log = logging.getLogger("hearth.kernels")
KICK_INTERVAL = 0.05
PUMP_POLL_MS = 500  # a pump's longest wait before it looks again

MARKER_VARIABLE = "HEARTH_KERNEL_ID"
_DIED = object()
_SUN_PATH_MAX = 107  # bytes of a Unix socket's path


@dataclass(frozen=True)
class KernelSpec:
    """How to start one kernel: which kernelspec, where, with which environment."""

    name: str
    cwd: Path
    runtime_dir: Path  # private to this kernel: connection file, IPython dir, log
    env: Mapping[str, str] = field(default_factory=dict)
    start_timeout: float = 60.0
    stop_grace: float = 1.0
    interrupt_grace: float = 5.0
    context: zmq.asyncio.Context | None = None
    sandbox: Sandbox | None = None
    key: str = ""  # names the kernel's cgroup
    uid: int = 0  # the uid it runs as, when the server is root
    views: Sequence[Bind] = ()  # more of the data dir it sees, read-only (see WorkDirs)


class _LaunchingKernelManager(AsyncKernelManager):
    """Starts the kernel's command inside its sandbox launch."""

    launch: Prepared | None = None
    kernel_ip: str = ""  # the kernel's own name of its sockets, when it is not the host's

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        argv: list[str] = super().format_kernel_cmd(extra_arguments)
        if self.launch is None:
            return argv
        # jupyter_client has just written the connection file (as the server's user)
        given = Path(self.connection_file)
        if self.kernel_ip:  # the kernel reads a copy that names its sockets its own way
            info = {**json.loads(given.read_text()), "ip": self.kernel_ip}
            own = given.with_name("kernel-inside.json")
            fd = os.open(own, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with open(fd, "w") as f:
                json.dump(info, f, indent=2)
            argv = [arg.replace(str(given), str(own)) for arg in argv]
            given = own
        self.launch.hand_over(given)
        return self.launch.command(argv)


class Kernel:
    def __init__(self, spec: KernelSpec, on_death: Callable[[Kernel], None] | None = None) -> None:
        self.spec = spec
        self._on_death = on_death
        self.id = secrets.token_hex(8)
        self.pid = 0
        self.died = asyncio.Event()
        self.why_dead = ""
        self._km: AsyncKernelManager | None = None
        self._client: Any = None
        self._watch: ExitWatch | None = None
        self._waiters: dict[str, _Waiter] = {}
        self._pumps: list[_Pump] = []
        self._recheck: asyncio.TimerHandle | None = None
        self._runtime_fd = -1  # the runtime dir's, when its path is too long for a socket's
        self.launch: Prepared | None = None
        self.execution_state = "starting"  # as its IOPub last said (Jupyter's kernel model)
        self.execution_count = 0
        # each gets the parts (header, parent, metadata, content, buffers) of every IOPub message
        self.iopub_listeners: list[Callable[[list[bytes]], None]] = []

    async def __aenter__(self) -> Kernel:
        try:
            async with asyncio.timeout(self.spec.start_timeout):
                await self._start()
        except BaseException as exc:
            await shielded(self._stop())
            if isinstance(exc, TimeoutError):
                raise KernelDied(
                    self._failure(f"did not answer within {self.spec.start_timeout:g} s")
                ) from exc
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await shielded(self._stop())

    # -- start ------------------------------------------------------------------------------

    async def _start(self) -> None:
        rt = self.spec.runtime_dir
        rt.mkdir(parents=True, exist_ok=True)
        own = {"IPYTHONDIR": str(rt / "ipython")}
        options: dict[str, Any] = {}
        if self.spec.context is not None:
            options["context"] = self.spec.context
        sandbox = self.spec.sandbox
        if sandbox is not None and (sandbox.bubblewrap or sandbox.limits_mode != "none"):
            self.launch = sandbox.kernel(
                key=self.spec.key,
                uid=self.spec.uid,
                cwd=self.spec.cwd,
                runtime_dir=rt,
                env=own,
                views=self.spec.views,
            )
        kernel_ip = ""
        if self.launch is not None and self.launch.sandboxed:
            env = self.launch.spawn_env  # the kernel's own is set inside, by the command
            # Its channels are Unix sockets in its runtime directory, which no other session
            # sees: on a loopback TCP port, any session could subscribe to its IOPub (SPEC
            # §7.1), whatever the network setting. The kernel names them by its own short path.
            options.update(transport="ipc", ip=self._socket_prefix(rt))
            kernel_ip = f"{KERNEL_RUNTIME}/ipc"
        else:  # the marker finds the kernel's strays; a sandbox's PID namespace holds them
            env = {**self.spec.env, **own, MARKER_VARIABLE: self.id}
        km = self._km = _LaunchingKernelManager(
            kernel_name=self.spec.name, connection_file=str(rt / "kernel.json"), **options
        )
        km.launch, km.kernel_ip = self.launch, kernel_ip
        argv = km.kernel_spec.argv if km.kernel_spec is not None else []
        # A kernel's history must not outlive it: the next user of the pool could read it.
        extra = ["--HistoryManager.enabled=False"] if "ipykernel" in " ".join(argv) else []
        out = os.open(rt / "kernel.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            await km.start_kernel(
                cwd=str(self.spec.cwd),
                env=env,
                extra_arguments=extra,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        finally:
            os.close(out)
        assert km.provisioner is not None
        self.pid = int(km.provisioner.pid)  # type: ignore[attr-defined]
        self._watch = ExitWatch(self.pid)
        self._watch.exited.add_done_callback(lambda _: self._declare_dead(self._exit_cause()))
        # Plain (not asyncio) sockets, read from the loop's own callback on each socket's FD:
        # pyzmq's asyncio poll made a future and a registration per wake-up, the biggest share
        # of the host's CPU per execute after the messages themselves.
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.shadow(km.context.underlying)
        self._client = BlockingKernelClient(
            **km.get_connection_info(session=True), parent=km, context=context
        )
        self._client.start_channels(shell=True, iopub=True, stdin=False, hb=False, control=False)
        # The pumps are the only readers of the sockets: a second reader on the same zmq socket
        # (jupyter_client's get_msg polls) could leave a pump deaf to the shell's replies.
        loop = asyncio.get_running_loop()
        for channel, publishes in (
            (self._client.shell_channel, False),
            (self._client.iopub_channel, True),
        ):
            pump = _Pump(channel.socket, self._client.session, publishes, self)
            self._pumps.append(pump)
            loop.add_reader(pump.fd, pump.drain)
        self._recheck = loop.call_later(PUMP_POLL_MS / 1000, self._drain_all)
        await self._until_ready()
        if km.kernel_spec is not None and km.kernel_spec.language.lower() == "python":
            await self._warm_up()
            self.execution_count = 0  # its execute_input came before its idle: not a user's

    def _socket_prefix(self, rt: Path) -> str:
        """How the host names the kernel's sockets (``<prefix>-<n>``): by their path, or, when
        that would not fit in a socket address, through a descriptor of ``rt`` (which
        ``connect`` accepts, as the session host's own socket does)."""
        prefix = str(rt / "ipc")
        if len(f"{prefix}-99999".encode()) <= _SUN_PATH_MAX:
            return prefix
        self._runtime_fd = os.open(rt, os.O_PATH | os.O_DIRECTORY)
        return f"/proc/self/fd/{self._runtime_fd}/ipc"

    async def _warm_up(self) -> None:
        """Run one throwaway cell: a fresh kernel's first execute costs ~2x a later one (lazy
        imports, first compile); paying it here keeps it out of the first user answer. Not
        stored in history, nothing printed."""
        queue = _Waiter()
        msg_id = self._send(lambda: self._client.execute("1+1", silent=False, store_history=False))
        self._waiters[msg_id] = queue
        try:
            while True:
                msg = await self._next(queue)
                if msg is _DIED:
                    raise KernelDied(self._failure("died while warming up"))
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    return
        finally:
            self._waiters.pop(msg_id, None)

    async def _until_ready(self) -> None:
        """Ask ``kernel_info`` until it is answered on the shell channel and its status arrives
        on IOPub (so the subscription is live: no output of the first execute can be lost)."""
        while True:
            if self.died.is_set():
                raise KernelDied(self._failure("exited during start-up"))
            queue = _Waiter()
            msg_id = self._send(self._client.kernel_info)
            self._waiters[msg_id] = queue
            replied = published = False
            try:
                async with asyncio.timeout(0.5):
                    while not (replied and published):
                        msg = await self._next(queue)
                        if msg is _DIED:
                            raise KernelDied(self._failure("exited during start-up"))
                        replied |= msg["msg_type"] == "kernel_info_reply"
                        published |= msg["msg_type"] == "status"
                return
            except TimeoutError:
                continue  # IOPub not subscribed yet (or a slow start): ask again
            finally:
                self._waiters.pop(msg_id, None)

    def _exit_cause(self) -> str:
        if self.launch is not None and self.launch.oom_kills():
            limit = self.launch.memory_limit >> 20
            return f"it went over the session's memory limit ({limit} MiB) and was killed"
        return "the process exited"

    def _failure(self, what: str) -> str:
        tail = ""
        with contextlib.suppress(OSError):
            tail = (self.spec.runtime_dir / "kernel.log").read_text(errors="replace")[-800:]
        detail = f"; its log ends with:\n{tail.strip()}" if tail.strip() else ""
        return f"Kernel {self.spec.name!r} {what}{detail}"

    # -- messages -------------------------------------------------------------------------------

    def _drain_all(self) -> None:
        """Read what the sockets hold: after a send on them (a send can take the FD's wake-up
        of a message that came meanwhile), and every PUMP_POLL_MS as a safety net."""
        for pump in self._pumps:
            pump.drain()
        if self._recheck is not None and not self.died.is_set():
            loop = asyncio.get_running_loop()
            self._recheck.cancel()
            self._recheck = loop.call_later(PUMP_POLL_MS / 1000, self._drain_all)

    def _send(self, send: Callable[[], str]) -> str:
        msg_id = send()
        asyncio.get_running_loop().call_soon(self._drain_all)
        return msg_id

    def route(self, msg: dict[str, Any]) -> None:
        kind = msg["msg_type"]
        if kind == "status":
            self.execution_state = str(msg["content"].get("execution_state", ""))
        elif kind == "execute_input" and isinstance(msg["content"].get("execution_count"), int):
            self.execution_count = msg["content"]["execution_count"]  # whoever asked
        waiter = self._waiters.get(msg["parent_header"].get("msg_id", ""))
        if waiter is not None:
            waiter.put(msg)

    async def _next(self, queue: _Waiter) -> Any:
        """The next message for a waiter. While waiting, the sockets are re-checked every
        KICK_INTERVAL: a zmq socket's FD wakes on an edge, and a wake-up missed (pyzmq's
        asyncio one was seen to miss a reply that sat readable, which stalled an execute
        forever) must not cost more than that."""
        while True:
            try:
                async with asyncio.timeout(KICK_INTERVAL):
                    return await queue.get()
            except TimeoutError:
                self._drain_all()

    def declare_dead(self, why: str) -> None:
        self._declare_dead(why)

    def _declare_dead(self, why: str) -> None:
        if self.died.is_set():
            return
        self.why_dead = why
        self.died.set()
        for waiter in self._waiters.values():
            waiter.put(_DIED)
        if self._on_death is not None:
            self._on_death(self)

    async def execute(
        self, code: str, interrupt_after: float | None = None
    ) -> AsyncGenerator[ExecutionEvent, None]:
        """Run ``code``; yields its output events, then a ``done`` event.

        After ``interrupt_after`` seconds the kernel is interrupted and the status is ``timeout``;
        a kernel that ignores the interrupt or dies is reported as dead (``restarted`` is set:
        its owner restarts it)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        if self.died.is_set():
            yield dead_kernel_error(f"The kernel died: {self.why_dead}.")
            yield done_event("error", None, 0.0, True)
            return
        queue = _Waiter()
        msg_id = self._send(
            lambda: self._client.execute(code, allow_stdin=False, stop_on_error=True)
        )
        self._waiters[msg_id] = queue
        deadline = None if interrupt_after is None else started + interrupt_after
        status, count, reply, idle, interrupted = "ok", None, False, False, False
        try:
            while not (reply and idle):
                try:
                    async with asyncio.timeout_at(deadline):
                        msg = await self._next(queue)
                except TimeoutError:
                    if interrupted:
                        self._declare_dead("it did not respond to an interrupt")
                        continue
                    interrupted = True
                    await self.interrupt()
                    deadline = loop.time() + self.spec.interrupt_grace
                    continue
                if msg is _DIED:
                    yield dead_kernel_error(f"The kernel died: {self.why_dead}.")
                    final = "timeout" if interrupted else "error"
                    yield done_event(final, None, (loop.time() - started) * 1000, True)
                    return
                kind = msg["msg_type"]
                if kind == "execute_reply":
                    reply = True
                    status = msg["content"].get("status", "error")
                    count = msg["content"].get("execution_count")
                elif kind == "status":
                    idle = msg["content"].get("execution_state") == "idle"
                else:
                    event = event_from_message(kind, msg["content"])
                    if event is not None:
                        yield event
            final = "timeout" if interrupted else ("ok" if status == "ok" else "error")
            yield done_event(final, count, (loop.time() - started) * 1000, False)
        finally:
            self._waiters.pop(msg_id, None)

    async def interrupt(self) -> None:
        if self._km is None or self.died.is_set():
            return
        if self.launch is not None and self.launch.sandboxed:
            # bwrap would die of the process group's SIGINT: signal the kernel's own processes
            await asyncio.to_thread(signal_sandbox, self.pid, signal.SIGINT)
        else:
            await self._km.interrupt_kernel()

    async def move_cwd(self, to: Path) -> None:
        """The sandboxed kernel's working directory, bound at ``spec.cwd`` inside, is at ``to``
        from now on, its cwd included (see :mod:`hearth.sandbox.mounts`); raises ``MoveFailed``."""
        assert self.launch is not None and self.launch.sandboxed
        await move_mount(self.pid, str(self.spec.cwd), str(to))

    # -- Jupyter clients (SPEC §10) --------------------------------------------------------------

    def connect(self, channel: str, identity: bytes | None = None) -> zmq.asyncio.Socket:
        """A new socket on one of the kernel's channels (an IOPub one subscribes to all)."""
        assert self._km is not None
        socket: zmq.asyncio.Socket = getattr(self._km, f"connect_{channel}")(identity=identity)
        return socket

    def sign(self, parts: Sequence[bytes]) -> bytes:
        """The signature of a message's four JSON parts, with the kernel's key."""
        signature: bytes = self._client.session.sign(list(parts[:4]))
        return signature

    # -- stop -------------------------------------------------------------------------------

    async def _stop(self) -> None:
        """Ask (SIGTERM to the group), wait a bounded grace, kill everything, reap, clean up."""
        self._declare_dead("it was stopped")
        if self._recheck is not None:
            self._recheck.cancel()
        loop = asyncio.get_running_loop()
        for pump in self._pumps:
            loop.remove_reader(pump.fd)
        self._pumps.clear()
        if self._client is not None:
            self._client.stop_channels()
        km = self._km
        if not self.pid and km is not None and km.provisioner is not None:
            # stopped while starting: the process may run already
            self.pid = int(getattr(km.provisioner, "pid", None) or 0)
        if self.pid:
            exited = self._watch.exited if self._watch else None
            sandboxed = self.launch is not None and self.launch.sandboxed
            if exited is not None and not exited.done():
                if sandboxed:
                    await asyncio.to_thread(signal_sandbox, self.pid, signal.SIGTERM)
                else:
                    signal_group(self.pid, signal.SIGTERM)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.spec.stop_grace):
                        await asyncio.shield(exited)
            if sandboxed:
                await asyncio.to_thread(kill_sandbox, self.pid)
            strays = await asyncio.to_thread(kill_everything, self.pid, _marker(self.id))
            if strays:
                log.info("killed %d stray processes of kernel %s", strays, self.id)
        if km is not None and km.provisioner is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await km.provisioner.wait()
            with contextlib.suppress(Exception):
                await km.cleanup_resources()
        if self._runtime_fd >= 0:
            os.close(self._runtime_fd)
            self._runtime_fd = -1
        if self._watch is not None:
            self._watch.close()
        if self.launch is not None:
            self.launch.release()
        await asyncio.to_thread(shutil.rmtree, self.spec.runtime_dir, True)
        log.debug("kernel %s (pid %d) stopped", self.id, self.pid)


def _marker(kernel_id: str) -> bytes:
    return f"{MARKER_VARIABLE}={kernel_id}".encode()


def kernel_environment(base: Mapping[str, str]) -> dict[str, str]:
    """The environment a kernel starts with: the server's, minus Hearth's own settings (tokens!)
    and the server's working directory variables."""
    return {
        k: v for k, v in base.items() if not k.startswith("HEARTH_") and k not in ("PWD", "OLDPWD")
    }


class _Waiter:
    """The messages of one request, for the task that awaits them, within a ``Backlog`` (its
    overflow policy: output beyond the bound is dropped, the reply and status never are)."""

    def __init__(self) -> None:
        self._backlog: Backlog[Any] = Backlog(_notice)
        self._more = asyncio.Event()

    def put(self, msg: Any) -> None:
        if msg is _DIED:
            self._backlog.put(msg, 0, False)
        else:
            size = size_of(msg["content"]) + MESSAGE_OVERHEAD
            self._backlog.put_message(msg, size, msg["msg_type"])
        self._more.set()

    async def get(self) -> Any:
        while not self._backlog:
            self._more.clear()
            await self._more.wait()
        return self._backlog.take()


def _notice(text: str) -> dict[str, Any]:
    """A stream message of the kernel's, as ``unpack`` reads one."""
    return {
        "header": {},
        "msg_id": "",
        "msg_type": "stream",
        "parent_header": {},
        "metadata": {},
        "content": {"name": "stderr", "text": text},
        "buffers": [],
    }


class _Pump:
    """Every message of one of a kernel's sockets, to the request it answers; IOPub's also to
    the listeners (Jupyter clients' connections), first and as they came. ``drain`` reads until
    the socket says it holds no more (its FD wakes on an edge, so a drain must empty it)."""

    def __init__(
        self, socket: zmq.Socket[bytes], session: Session, publishes: bool, kernel: Kernel
    ) -> None:
        self.socket, self.session, self.publishes, self.kernel = socket, session, publishes, kernel
        self.fd = int(socket.get(zmq.FD))

    def drain(self) -> None:
        socket, kernel = self.socket, self.kernel
        if socket.closed or kernel.died.is_set():
            return
        try:
            while int(socket.get(zmq.EVENTS)) & zmq.POLLIN:
                frames: list[bytes] = socket.recv_multipart(zmq.NOBLOCK)
                parts: list[bytes] = self.session.feed_identities(frames)[1]  # type: ignore[assignment]
                if self.publishes:
                    for listener in kernel.iopub_listeners:
                        listener(parts[1:])
                kernel.route(unpack(self.session, parts))
        except Exception as exc:  # a broken channel is a dead kernel to us
            kernel.declare_dead(f"its channel broke ({exc!r})")


def unpack(session: Session, parts: list[bytes]) -> dict[str, Any]:
    """A kernel's message (signature, then its four JSON parts and buffers), checked and read.
    ``Session.deserialize`` also parses every date of both headers and adapts the message to
    the protocol version: five times the cost, for what nothing here reads (the host reads
    every message of every kernel)."""
    if len(parts) < 5:
        raise ValueError(f"a kernel message of {len(parts)} parts, not at least 5")
    if session.auth is not None and not hmac.compare_digest(parts[0], session.sign(parts[1:5])):
        raise ValueError("a kernel message with a wrong signature")
    header = json.loads(parts[1])
    return {
        "header": header,
        "msg_id": header["msg_id"],
        "msg_type": header["msg_type"],
        "parent_header": json.loads(parts[2]),
        "metadata": json.loads(parts[3]),
        "content": json.loads(parts[4]),
        "buffers": [memoryview(b) for b in parts[5:]],
    }
