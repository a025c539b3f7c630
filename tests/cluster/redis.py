"""A real Redis on 127.0.0.1 for the cluster tests: the system's ``redis-server`` on a free port,
with no persistence (a restart comes back empty), its log in its own directory. The
``redis_server`` fixture starts one per test and stops it at the end."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.served import free_port

START_TIMEOUT = 10.0


class Redis:
    """A ``redis-server`` process, started at once; :meth:`restart` keeps its port."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def client(self) -> redis.Redis:
        """A client of this server (short timeouts: a stopped server fails a call quickly)."""
        return redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)

    def log(self) -> str:
        """What redis-server wrote, for a test's failure message."""
        return (self.workdir / "redis.log").read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL, as a crash would: clients' connections break at once."""
        if self._proc is not None and self.running:
            self._proc.kill()
        self._reap()

    def stop(self) -> None:
        if self._proc is not None and self.running:
            self._proc.send_signal(signal.SIGTERM)
        self._reap()

    def restart(self) -> None:
        """Stop it if it runs and start it again on the same port, empty."""
        self.stop()
        self._start()

    def _reap(self) -> None:
        if self._proc is not None:
            try:
                self._proc.wait(START_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def _start(self) -> None:
        # with saving off Redis still loads a dump it finds at start: none must be there
        (self.workdir / "dump.rdb").unlink(missing_ok=True)
        options = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "save": "",  # no snapshots, no append-only file: nothing survives a restart
            "appendonly": "no",
            "dir": str(self.workdir),
            "logfile": str(self.workdir / "redis.log"),
            "daemonize": "no",
        }
        args = [arg for name, value in options.items() for arg in (f"--{name}", value)]
        # both append to the one file: the log, and what Redis says before it opened its log
        with open(self.workdir / "redis.log", "ab") as out:
            self._proc = subprocess.Popen(
                [self.binary, *args], stdin=subprocess.DEVNULL, stdout=out, stderr=out
            )
        self._wait_answering()

    def _wait_answering(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        with self.client() as client:
            while True:
                try:
                    if client.ping():
                        return
                except redis.exceptions.ConnectionError:
                    pass  # not listening yet (BusyLoadingError is one too)
                if not self.running or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not start:\n{self.log()}")
                time.sleep(0.01)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Redis]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = Redis(binary, workdir)
    yield server
    server.stop()
