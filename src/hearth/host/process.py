"""The session host as a process (``hearth host``): it holds the data directory's lock, opens the
sandbox and serves a session core on the socket until ``hearth shutdown`` or a signal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from hearth import loops
from hearth.config import Settings
from hearth.contract.place import ALREADY_RUNNING, HostLock, HostPlace
from hearth.core import SessionCore
from hearth.host.server import HostServer
from hearth.sandbox import Sandbox, SandboxUnavailable, open_sandbox

__all__ = ["host_main", "running_host"]

log = logging.getLogger("hearth.host")

DATA_DIR_CHECK_INTERVAL = 2.0  # seconds between looks at the data directory
DATA_DIR_GONE_GRACE = 30.0  # seconds for its sessions to end before the host stops anyway


@contextlib.asynccontextmanager
async def running_host(
    settings: Settings, sandbox: Sandbox, warnings: Sequence[str] = ()
) -> AsyncIterator[HostServer]:
    """A session core served on the data directory's socket (the caller holds the lock);
    ``warnings``: what its start-up said, for every web server to repeat (see HostServer)."""
    place = HostPlace(settings.data_dir)
    async with (
        SessionCore(settings, sandbox) as core,
        HostServer(core, place, warnings) as host,
    ):
        yield host


def host_main(params: dict[str, Any]) -> int:
    """``hearth host``: run until ``hearth shutdown`` (sessions end) or SIGTERM/SIGINT (sessions
    end with the host and are listed ``host_lost`` at the next start)."""
    from hearth.fds import raise_open_files
    from hearth.logs import configure_logging

    settings = Settings(**params["settings"])
    configure_logging(settings.log_level)
    raise_open_files(params.get("open_files", 0))
    place = HostPlace(settings.data_dir)
    try:
        lock = HostLock(place)
    except BlockingIOError:
        print(f"hearth host: another session host runs for {place.data_dir}", file=sys.stderr)
        return ALREADY_RUNNING
    said = _Warnings()
    logging.getLogger("hearth.sandbox").addHandler(said)
    try:
        secret_files = [Path(p) for p in params.get("secret_files", [])]
        sandbox = open_sandbox(settings, secret_files, users=params.get("users"))
    except SandboxUnavailable as exc:
        print(f"hearth host: {exc.message}", file=sys.stderr, flush=True)
        lock.release()
        return 2
    finally:
        logging.getLogger("hearth.sandbox").removeHandler(said)
    log.info("sandbox", extra=sandbox.describe())
    screen_log = logging.getLogger("hearth.terminals.screen")
    screen_log.addHandler(said)  # until the core has started (see _serve)
    try:
        loops.run(_serve(settings, sandbox, said))
    finally:
        sandbox.close()
        lock.release()
    return 0


async def _serve(settings: Settings, sandbox: Sandbox, said: _Warnings) -> None:
    async with running_host(settings, sandbox, said.messages) as host:
        logging.getLogger("hearth.terminals.screen").removeHandler(said)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, host.stopped.set)
        async with asyncio.TaskGroup() as tasks:
            watch = tasks.create_task(_end_when_gone(host))
            await host.stopped.wait()
            watch.cancel()
        log.info("stopping")


async def _end_when_gone(host: HostServer, interval: float = DATA_DIR_CHECK_INTERVAL) -> None:
    """Once the data directory is removed or replaced, the host's socket went with it: nobody
    can reach it or its sessions again. Every session ends, as ``hearth shutdown`` does, then
    the host (a session that can't be ended in time is killed as the host stops)."""
    why = await host.place.gone(interval)
    log.error(
        "the data directory is gone: ending every session and the host",
        extra={"data_dir": str(host.place.data_dir), "reason": why},
    )
    try:
        async with asyncio.timeout(DATA_DIR_GONE_GRACE):
            await host.core.end_all()
    except Exception as exc:  # its files are gone: the stop below ends what is left
        log.warning("sessions did not end cleanly", extra={"error": repr(exc)})
    host.stopped.set()


class _Warnings(logging.Handler):
    """What opening the sandbox warned of (no sandbox, limits by rlimit): the host's own log is
    a file nobody watches, so the web servers say it again where their user looks."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        reason = getattr(record, "reason", None)
        self.messages.append(record.getMessage() + (f": {reason}" if reason else ""))
