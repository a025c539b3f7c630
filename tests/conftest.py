"""Fixtures shared by the whole suite: a real Hearth server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from hearth import loops
from hearth.config import Settings
from hearth.contract.place import HostLock, HostPlace
from hearth.core import SessionCore
from hearth.host.process import running_host
from hearth.sandbox import open_sandbox
from hearth.server.serve import server_config
from tests.served import (
    DISK_LIMIT,
    serve,  # noqa: F401  (a fixture: a real `hearth serve` process)
    unmount_volume,
)

ALICE = "tok-alice-1"
BOB = "tok-bob-22"
TOKENS = {ALICE: "alice", BOB: "bob"}


class RunningHost:
    """A session host on the data directory's socket, run on a thread of the test process (so
    tests can look at its state); the web tier reaches it over the socket as in production."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        place = HostPlace(settings.data_dir)
        self.lock = HostLock(place)
        self.sandbox = open_sandbox(settings)
        started = threading.Event()
        failed: list[BaseException] = []

        async def main() -> None:
            try:
                async with running_host(settings, self.sandbox) as host:
                    self.server, self.loop = host, asyncio.get_running_loop()
                    started.set()
                    await host.stopped.wait()
            except BaseException as exc:
                failed.append(exc)
                started.set()
                raise

        self.thread = threading.Thread(
            target=lambda: loops.run(main()), name="hearth-test-host", daemon=True
        )
        self.thread.start()
        if not started.wait(60) or failed:
            self.lock.release()
            raise RuntimeError(f"the test session host did not start: {failed}")

    @property
    def core(self) -> SessionCore:
        return self.server.core

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the host's event loop and return its result (for state checks)."""

        async def run() -> Any:
            result = fn()
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=30)

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.server.stopped.set)
            self.thread.join(timeout=60)
        if self.lock.fd >= 0:
            self.sandbox.close()
            self.lock.release()


@dataclass
class RunningServer:
    settings: Settings
    server: uvicorn.Server
    thread: threading.Thread
    port: int
    host: RunningHost

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def app(self) -> Any:
        return self.server.config.app

    @property
    def core(self) -> SessionCore:
        """The sessions: in the session host."""
        return self.host.core

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the session host's event loop (where the sessions live)."""
        return self.host.call(fn)

    def call_web(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the web server's event loop."""

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=30)

    loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]

    def on_websockets(self, fn: Callable[[Any], Any]) -> list[Any]:
        """``fn`` of every websocket connection, on the loop that serves it: the web server's
        (kernel, Jupyter and relayed terminal websockets) and the session host's (terminal
        websockets handed to it)."""
        from uvicorn.protocols.websockets.websockets_sansio_impl import (
            WebSocketsSansIOProtocol as WS,
        )

        def web() -> list[Any]:
            return [fn(c) for c in list(self.server.server_state.connections) if isinstance(c, WS)]

        def host() -> list[Any]:
            return [fn(c) for c in list(self.host.server.handovers.state.connections)]

        return [*self.call_web(web), *self.call(host)]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.host.stop()

    def restart_web(self) -> None:
        """Stop the web server and start another on the same port; the session host stays."""
        self.server.should_exit = True
        self.thread.join(timeout=30)
        again = start_server(self.settings.model_copy(update={"port": self.port}), self.host)
        self.server, self.thread, self.loop = again.server, again.thread, again.loop


def start_server(settings: Settings, host: RunningHost | None = None) -> RunningServer:
    host = host or RunningHost(settings)
    config = server_config(settings)
    server = uvicorn.Server(config)
    holder: dict[str, Any] = {}

    def run() -> None:
        loop = (loops.loop_factory() or asyncio.new_event_loop)()  # the loop `hearth serve` runs
        holder["loop"] = loop
        try:
            loop.run_until_complete(server.serve())
        finally:
            # a crash must not leave a loop behind for the garbage collector to report in an
            # unrelated test
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    thread = threading.Thread(target=run, name="hearth-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            host.stop()
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    running = RunningServer(settings, server, thread, port, host)
    running.loop = holder["loop"]
    return running


@pytest.fixture(scope="session", autouse=True)
def no_host_left(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A session host a failed test left running (its data dir under this run's temporary
    directory) is ended at the end of the run, with its sessions."""
    yield
    base = str(tmp_path_factory.getbasetemp())
    marker = b"\0-m\0hearth\0host\0--data-dir\0" + base.encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes():
                    os.kill(int(entry.name), signal.SIGTERM)
            except OSError:
                pass


@pytest.fixture(scope="session", autouse=True)
def rlimits_accepted() -> Iterator[None]:
    """Run as a plain user with no delegated cgroup, a server for alice and bob refuses to start
    unless told to accept per-process rlimits (SPEC §7.1; tested in test_unprivileged): the
    servers of the other tests are told. As root it changes nothing."""
    if os.geteuid() == 0:
        yield
        return
    os.environ["HEARTH_SESSION_LIMITS"] = "rlimit"
    yield
    del os.environ["HEARTH_SESSION_LIMITS"]


@pytest.fixture(scope="session", autouse=True)
def quiet_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Shells started by the tests read no rc files of the machine (a slow or broken ~/.bashrc
    would make them flaky): HOME is an empty directory for the whole run."""
    home = tmp_path_factory.mktemp("home")
    saved = os.environ.get("HOME")
    os.environ["HOME"] = str(home)
    yield
    if saved is not None:
        os.environ["HOME"] = saved


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    started: list[RunningServer] = []

    def make(**overrides: Any) -> RunningServer:
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "data_dir": tmp_path / f"data{len(started)}",
            "tokens": TOKENS,
            "session_pool_size": 0,
            "terminal_kill_grace": 1.0,
            "session_disk_limit": DISK_LIMIT,
        }
        values.update(overrides)
        running = start_server(Settings(**values))
        started.append(running)
        return running

    yield make
    for running in started:
        running.stop()
        unmount_volume(running.settings.data_dir)


@pytest.fixture
def server(make_server: Callable[..., RunningServer]) -> RunningServer:
    return make_server()


def pids_of(cmdline: bytes) -> list[int]:
    """Host pids whose command line is ``cmdline`` (a sandboxed session's own pids differ)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes() == cmdline:
                    found.append(int(entry.name))
            except OSError:
                pass
    return found
