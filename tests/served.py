"""A real `hearth serve` process for tests: the ``serve`` fixture starts one per call (its
printed URL read, pool off), and stops every one at the end (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HEARTH = [sys.executable, "-m", "hearth"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Served:
    def __init__(self, proc: subprocess.Popen[str], port: int, url_line: str) -> None:
        self.proc = proc
        self.port = port
        self.url_line = url_line

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> str:
        """SIGTERM, wait, and return what it wrote to stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[object]:
    running: list[Served] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Served:
        port = free_port()
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
        full_env.update({"HEARTH_SESSION_POOL_SIZE": "0", **(env or {})})
        proc = subprocess.Popen(
            [*HEARTH, "serve", "--port", str(port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        served = Served(proc, port, line)
        running.append(served)
        assert "Hearth is serving at" in line, served.stop()
        return served

    yield start
    for served in running:
        served.stop()
