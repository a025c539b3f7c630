"""Finding the session host of a data directory, or starting it detached; and ending it.

``hearth serve`` connects to ``<data-dir>/host.sock``; when nothing answers there it starts
``hearth host`` in a session of its own (so no signal to the web server reaches it), hands it
its settings on stdin (never in argv, never with the tokens: the host needs no tokens) and waits
until it answers. One host per data directory: it holds ``host.lock`` for its life, so two web
servers starting at once still end up with one host. This is the web tier's side: it imports
nothing of the session core.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hearth import __version__
from hearth.config import SECRET_SETTINGS, Settings
from hearth.contract import calls, wire
from hearth.contract.place import ALREADY_RUNNING, HostPlace, lock_free
from hearth.errors import RLIMITS_ONLY, UNSANDBOXED_USERS, HostUnavailable, SandboxUnavailable
from hearth.fds import session_open_files
from hearth.server.host_client import Link

__all__ = ["HostStarter", "connect", "stop_host"]

log = logging.getLogger("hearth.host")


START_TIMEOUT = 120.0  # seconds: a host opens the store and warms the pool before it answers
_HELLO_TIMEOUT = 10.0
# what the web server itself uses (and the data dir, which names the host): the rest is the host's
_WEB_TIER_SETTINGS = {
    "host",
    "port",
    "allowed_origins",
    "log_level",
    "heartbeat_interval",
    "websocket_handover",
    "data_dir",
}


async def connect(place: HostPlace) -> Link | None:
    """A link to the host running at ``place``; None if none runs there."""
    with place.socket_address() as address:
        link = await Link.open(address, _HELLO_TIMEOUT)
    if link is None:
        return None
    hello = link.hello
    if hello.get("protocol") != wire.PROTOCOL:
        await link.aclose()
        raise HostUnavailable(
            f"A session host of Hearth {hello.get('version')} (protocol "
            f"{hello.get('protocol')}, pid {hello.get('pid')}) runs for {place.data_dir}; this "
            f"is Hearth {__version__} (protocol {wire.PROTOCOL}). Run 'hearth shutdown "
            f"--data-dir {place.data_dir}' with either version to end it and its sessions, or "
            "serve with the version it runs."
        )
    return link


class HostStarter:
    """Connects to the data directory's host, starting one when none runs."""

    def __init__(
        self, settings: Settings, config_files: Sequence[Path] = (), users: int | None = None
    ) -> None:
        self.settings = settings
        self.place = HostPlace(settings.data_dir)
        self.config_files = [str(p) for p in config_files]
        self.users = len(set(settings.tokens.values())) if users is None else users
        self.started: subprocess.Popen[bytes] | None = None

    async def __call__(self) -> Link:
        link = await connect(self.place)
        if link is None:
            link = await self._start()
        self._check(link.hello)
        return link

    def _check(self, hello: dict[str, Any]) -> None:
        for warning in hello.get("warnings", []):
            log.warning(f"the session host: {warning}")
        theirs, ours = hello.get("settings", {}), self.params()["settings"]
        differ = {
            k: {"host": theirs.get(k), "this server": v}
            for k, v in ours.items()
            if k not in _WEB_TIER_SETTINGS and k not in SECRET_SETTINGS and theirs.get(k) != v
        }
        if differ:
            log.warning(
                "the session host runs with other settings; 'hearth shutdown' (it ends every "
                "session) and serve again to apply these",
                extra={"settings": differ},
            )
        sandbox = hello.get("sandbox", {})
        if self.users > 1 and sandbox.get("sandbox") == "none" and self.settings.sandbox != "none":
            raise SandboxUnavailable(
                f"{UNSANDBOXED_USERS} (The session host running for {self.place.data_dir} "
                "was started without one: 'hearth shutdown' ends it.)"
            )
        rlimits_only = (sandbox.get("sandbox"), sandbox.get("limits")) == ("bubblewrap", "rlimit")
        if (
            self.users > 1
            and rlimits_only
            and os.geteuid() != 0  # the host is ours: its socket is its user's only
            and self.settings.session_limits != "rlimit"
        ):
            raise SandboxUnavailable(
                f"{RLIMITS_ONLY} (The session host running for {self.place.data_dir} was "
                "accepted rlimits when it started: 'hearth shutdown' ends it.)"
            )

    def params(self) -> dict[str, Any]:
        settings = self.settings.model_dump(mode="json", exclude={"tokens"})
        return {
            "settings": settings,
            "secret_files": self.config_files,
            "users": self.users,
            "open_files": session_open_files(),  # the limit before this server raised its own
        }

    async def _start(self) -> Link:
        self.place.data_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + START_TIMEOUT
        proc = self._spawn()
        while True:
            link = await connect(self.place)
            if link is not None:
                # it outlives us, but while we run we reap it, or its end leaves a zombie
                threading.Thread(target=proc.wait, name="hearth-host-reaper", daemon=True).start()
                return link
            code = proc.poll()
            if code == ALREADY_RUNNING:
                # another host holds the lock: it answers once it has started, or it is dying
                # (then ours starts once the lock is free)
                if lock_free(self.place):
                    proc = self._spawn()
            elif code is not None:
                raise HostUnavailable(
                    f"The session host could not start: {self._last_words()} "
                    f"(exit status {code}; {self.place.log} has its log)."
                )
            if time.monotonic() > deadline:
                raise HostUnavailable(
                    f"The session host did not answer within {START_TIMEOUT:g} s; see "
                    f"{self.place.log}."
                )
            await asyncio.sleep(0.02)

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if k != "HEARTH_TOKENS"}
        fd = os.open(self.place.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        with open(fd, "ab") as out:  # its log: only our user reads it
            proc = subprocess.Popen(
                [sys.executable, "-m", "hearth", "host", "--data-dir", str(self.place.data_dir)],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=out,
                start_new_session=True,  # no signal to the web server's group reaches it
                env=env,
            )
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(self.params()).encode())
        proc.stdin.close()
        self.started = proc
        log.info("started the session host", extra={"pid": proc.pid})
        return proc

    def _last_words(self) -> str:
        with contextlib.suppress(OSError):
            lines = self.place.log.read_text(errors="replace").strip().splitlines()
            if lines:
                return lines[-1]
        return "it said nothing"


async def stop_host(data_dir: Path, patience: float = 60.0) -> int:
    """``hearth shutdown``: every session of the data directory's host ends, then the host."""
    place = HostPlace(data_dir)
    link = await connect(place)
    if link is None:
        print(f"No session host runs for {place.data_dir}.")
        return 0
    pid = link.hello.get("pid")
    with contextlib.suppress(HostUnavailable):  # it may hang up as it goes
        await link.call(calls.HOST_SHUTDOWN, calls.NoArgs())
    await link.aclose()
    deadline = time.monotonic() + patience
    while not lock_free(place):
        if time.monotonic() > deadline:
            print(f"hearth: the session host (pid {pid}) has not stopped after {patience:g} s.")
            return 1
        await asyncio.sleep(0.02)
    print(f"Ended the session host (pid {pid}) of {place.data_dir} and every session in it.")
    return 0
