"""Fixtures of the kernel tests: settings with a small pool, the service, a clock, a local
HTTP server for downloads, and polling helpers (no sleeps as synchronisation)."""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hearth.config import Settings
from hearth.kernels.service import KernelService
from hearth.protocol.outputs import Outputs
from tests.clocks import FakeClock

TOKENS = {"tok-alice-1": "alice", "tok-bob-22": "bob"}


def kernel_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "tokens": TOKENS,
        "session_pool_size": 1,
        "max_kernels": 4,
        "download_timeout": 5,
        "session_disk_limit": 256 << 20,  # each user's room in the disk image (allocated)
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def service(tmp_path: Path, clock: FakeClock) -> AsyncIterator[KernelService]:
    async with KernelService(kernel_settings(tmp_path), clock=clock) as svc:
        yield svc


async def run(svc: KernelService, user: str, sid: str, code: str, **kw: Any) -> dict[str, Any]:
    outputs = Outputs()
    async for event in svc.execute(user, sid, code, **kw):
        outputs.add(event)
    return outputs.result()


def text_of(result: dict[str, Any]) -> str:
    """The stream text and plain-text results of an execution, joined."""
    parts = []
    for out in result["outputs"]:
        if out["output_type"] == "stream":
            parts.append(out["text"])
        elif out["output_type"] == "execute_result":
            parts.append(out["data"]["text/plain"])
    return "".join(parts)


async def until(check: Callable[[], bool | Awaitable[bool]], seconds: float = 20.0) -> None:
    """Poll ``check`` until it holds, failing after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {seconds} s")
        await asyncio.sleep(0.02)


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self) -> None:
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        self.server.hosts.append(self.headers["Host"])  # type: ignore[attr-defined]
        if self.path.startswith("/moved?to="):  # a redirect to what follows
            self.send_response(302)
            self.send_header("Location", self.path.removeprefix("/moved?to="))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.startswith("/slow"):
            self.server.release.wait(10)  # type: ignore[attr-defined]
        body = self.files.get(self.path.split("?")[0])
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        if not self.path.startswith("/nolength"):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class FileServer:
    def __init__(self) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.hits = []  # type: ignore[attr-defined]
        self.httpd.hosts = []  # type: ignore[attr-defined]
        self.httpd.release = threading.Event()  # type: ignore[attr-defined]
        self.httpd.daemon_threads = True
        _Handler.files = {
            "/data.csv": b"a,b\n1,2\n",
            "/other.txt": b"other",
            "/big.bin": b"x" * 5000,
            "/nolength/big.bin": b"y" * 5000,
            "/slow.txt": b"late",
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def hits(self) -> list[str]:
        return self.httpd.hits  # type: ignore[attr-defined, no-any-return]

    @property
    def hosts(self) -> list[str]:
        """The Host header of each request, in order."""
        return self.httpd.hosts  # type: ignore[attr-defined, no-any-return]


@pytest.fixture
def files_server() -> Iterator[FileServer]:
    server = FileServer()
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    yield server
    server.httpd.release.set()  # type: ignore[attr-defined]
    server.httpd.shutdown()
    server.httpd.server_close()
    thread.join(5)
