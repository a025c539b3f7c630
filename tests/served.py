"""A real `hearth serve` process for tests: the ``serve`` fixture starts one per call (its
printed URL read, pool off), and stops every one at the end (SIGTERM, then SIGKILL), then the
session hosts they started (``hearth shutdown``)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth.contract.place import HostPlace
from hearth.server.host_starter import connect

HEARTH = [sys.executable, "-m", "hearth"]
DISK_LIMIT = 256 << 20  # per user, in the tests' servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Served:
    def __init__(
        self, proc: subprocess.Popen[str], port: int, url_line: str, data_dir: Path
    ) -> None:
        self.proc = proc
        self.port = port
        self.url_line = url_line
        self.data_dir = data_dir

    def host_pid(self) -> int:
        """The pid of the session host serving this data directory."""
        return host_pid(self.data_dir)

    def kill(self) -> None:
        """SIGKILL the web server (the session host goes on)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def kill_all(self) -> None:
        """SIGKILL the web server and its session host, as a crash or a power cut would."""
        pid = self.host_pid()
        self.kill()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists():  # reaped by init (it is not our child)
            assert time.monotonic() < deadline, f"the session host {pid} did not die"
            time.sleep(0.01)

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
    data_dirs: set[Path] = set()

    def start(*args: str, env: dict[str, str] | None = None) -> Served:
        port = free_port()
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
        # a small disk limit: the image of every data directory holds each user's, allocated
        full_env.update(
            {"HEARTH_SESSION_POOL_SIZE": "0", "HEARTH_SESSION_DISK_LIMIT": str(DISK_LIMIT)}
        )
        full_env.update(env or {})
        if "--data-dir" in args:
            data_dir = Path(args[args.index("--data-dir") + 1])
        else:
            data_dir = tmp_path / "data"
            full_env.setdefault("HEARTH_DATA_DIR", str(data_dir))
        data_dirs.add(data_dir)
        proc = subprocess.Popen(
            [*HEARTH, "serve", "--port", str(port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        served = Served(proc, port, line, data_dir)
        running.append(served)
        assert "Hearth is serving at" in line, served.stop()
        return served

    yield start
    for served in running:
        served.stop()
    for data_dir in data_dirs:
        shutdown(data_dir)
        unmount_volume(data_dir)


def unmount_volume(data_dir: Path) -> None:
    """A session host killed (not shut down) leaves its disk image mounted."""
    if os.path.ismount(data_dir / "volume"):
        subprocess.run(["umount", "--lazy", str(data_dir / "volume")], check=False)


def shutdown(data_dir: Path) -> None:
    """End the data directory's session host, if one runs (as ``hearth shutdown``)."""
    subprocess.run(
        [*HEARTH, "shutdown", "--data-dir", str(data_dir)],
        capture_output=True,
        timeout=90,
        check=True,
    )


def host_pid(data_dir: Path) -> int:
    async def ask() -> int:
        link = await connect(HostPlace(data_dir))
        assert link is not None, f"no session host runs for {data_dir}"
        await link.aclose()
        pid: int = link.hello["pid"]
        return pid

    return asyncio.run(ask())
