"""A server started under the usual soft limit of open files (1024) raises it to the hard one,
in the web server and in the session host it starts: a thousand terminals need more. Its
sessions get ``session_nofile_limit`` (or, with 0, the limit it had): the raise must not
multiply what one session may hold."""

from __future__ import annotations

import re
import resource
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from hearth.fds import ENOUGH
from tests.served import Served


def _soft_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-files limit in /proc")


@pytest.fixture
def low_limit() -> Iterator[int]:
    """This process's soft limit at 512 while a server is started (its children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 512:
        pytest.skip(f"the hard open-files limit here is {hard}: nothing to raise it to")
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))
    try:
        yield ENOUGH if hard == resource.RLIM_INFINITY else min(hard, ENOUGH)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_server_and_its_host_raise_their_open_files_limit(
    serve: Callable[..., Served], low_limit: int
) -> None:
    served = serve()
    assert _soft_limit(served.proc.pid) == low_limit
    assert _soft_limit(served.host_pid()) == low_limit


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({}, "limit=4096:4096"),  # session_nofile_limit, soft and hard
        ({"HEARTH_SESSION_NOFILE_LIMIT": "0"}, "limit=512:"),  # the server's, before its raise
    ],
)
def test_a_sessions_limit_is_its_own_not_the_raised_one(
    serve: Callable[..., Served], low_limit: int, env: dict[str, str], said: str
) -> None:
    served = serve(env=env)
    match = re.search(r"\?token=(\S+)", served.url_line)
    assert match is not None, served.url_line
    script = "echo limit=$(ulimit -Sn):$(ulimit -Hn); sleep 60"
    body = {"id": "lim", "command": ["/bin/sh", "-c", script]}
    auth = {"Authorization": f"Bearer {match.group(1)}"}
    with httpx.Client(base_url=served.base, headers=auth, timeout=30) as http:
        assert http.post("/api/v1/terminal/sessions", json=body).status_code == 201
        deadline = time.monotonic() + 20
        while "limit=" not in (text := _output(http)):
            assert time.monotonic() < deadline, f"the session said nothing: {text!r}"
            time.sleep(0.05)
    assert said in text, text
    assert _soft_limit(served.host_pid()) == low_limit


def _output(http: httpx.Client) -> str:
    entries = http.get("/api/v1/terminal/sessions/lim/history").json()
    return "".join(str(e.get("data", "")) for e in entries)
