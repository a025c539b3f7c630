"""A session host whose data directory is removed or replaced ends itself and its sessions (SPEC
§7.1): it no longer serves anyone, and nothing of it may run on unreachable."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from hearth.contract.place import HostPlace
from tests.client.helpers import poll
from tests.served import Served

TOKEN = "tok-gina-404"
H = {"Authorization": f"Bearer {TOKEN}"}


async def test_the_place_says_when_its_data_directory_is_removed(tmp_path: Path) -> None:
    place = HostPlace(tmp_path / "data")
    place.data_dir.mkdir()
    watching = asyncio.ensure_future(place.gone(0.01))  # it looked when called
    shutil.rmtree(place.data_dir)
    assert await asyncio.wait_for(watching, 5) == "removed"


async def test_the_place_says_when_its_data_directory_is_replaced(tmp_path: Path) -> None:
    place = HostPlace(tmp_path / "data")
    place.data_dir.mkdir()
    watching = asyncio.ensure_future(place.gone(0.01))  # it looked when called
    place.data_dir.rename(tmp_path / "away")
    place.data_dir.mkdir()  # the same path, another directory
    assert await asyncio.wait_for(watching, 5) == "replaced"


async def test_the_place_says_when_its_socket_is_removed(tmp_path: Path) -> None:
    """``rm -r`` of a data directory that holds a mount point (the disk image) removes all but
    the directories on the way to it: the socket goes, the directory stays."""
    place = HostPlace(tmp_path / "data")
    place.data_dir.mkdir()
    place.socket.write_bytes(b"")
    watching = asyncio.ensure_future(place.gone(0.01))  # it looked when called
    place.socket.unlink()
    assert await asyncio.wait_for(watching, 5) == "its socket removed"


def _processes() -> dict[int, tuple[int, str, bytes]]:
    """Every process: pid → (parent, start time, command line)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if fields[0] != "Z":
                found[int(entry.name)] = (int(fields[1]), fields[19], cmdline)
    return found


def _descendants(pid: int) -> dict[int, tuple[str, bytes]]:
    """The processes under ``pid``: pid → (start time, command line)."""
    every = _processes()
    found: dict[int, tuple[str, bytes]] = {}
    parents = {pid}
    while parents:
        children = {p for p, (ppid, _, _) in every.items() if ppid in parents and p not in found}
        found.update({p: every[p][1:] for p in children})
        parents = children
    return found


def _alive(pid: int, start: str) -> bool:
    now = _processes().get(pid)
    return now is not None and now[1] == start


@pytest.mark.parametrize("how", ["removed", "renamed"])
def test_a_host_whose_data_directory_goes_ends_itself_and_its_sessions(
    serve: Callable[..., Served], tmp_path: Path, how: str
) -> None:
    data = tmp_path / "data"
    env = {"HEARTH_TOKENS": json.dumps({TOKEN: "gina"}), "HEARTH_SESSION_POOL_SIZE": "1"}
    served = serve("--data-dir", str(data), env=env)
    with httpx.Client(base_url=served.base, headers=H, timeout=60) as http:
        shell = {"id": "t", "command": ["/bin/sh", "-c", "exec sleep 86401"]}
        assert http.post("/api/v1/terminal/sessions", json=shell).status_code == 201
        r = http.post("/api/v1/sessions", json={"session_id": "k"})
        assert r.status_code == 201, r.text
    host = served.host_pid()
    started = _processes()[host][1]
    sessions = poll(
        lambda: (
            (under := _descendants(host))
            and any(b"sleep\x0086401" in c for _, c in under.values())
            and any(b"ipykernel" in c for _, c in under.values())
            and under
        ),
        what="the shell and the kernel under the host",
    )

    if how == "removed":
        poll(lambda: shutil.rmtree(data, ignore_errors=True) or not data.exists(), what="rm -r")
    else:
        data.rename(tmp_path / "moved")

    poll(lambda: not _alive(host, started), timeout=30, what="the host to end")
    deadline = time.monotonic() + 30
    while left := [c for p, (s, c) in sessions.items() if _alive(p, s)]:
        assert time.monotonic() < deadline, f"processes of its sessions still run: {left}"
        time.sleep(0.02)
    if how == "renamed":  # its log went with it
        said = (tmp_path / "moved" / "host.log").read_text()
        assert "the data directory is gone" in said, said
