"""A sandboxed kernel from the pool finds its working dir at the path the API reports (it was
started in the pool, and its cwd was bound there), and sees no other session's directory."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningServer
from tests.sandbox.test_attacks import H_ALICE, H_BOB, execute

pytestmark = pytest.mark.skipif(
    not Path("/usr/bin/bwrap").exists() and os.environ.get("CI") != "true",
    reason="needs bubblewrap (apt-get install bubblewrap)",
)


def create(server: RunningServer, headers: dict[str, str], sid: str) -> dict[str, object]:
    r = httpx.post(
        f"{server.url}/api/v1/sessions", json={"session_id": sid}, headers=headers, timeout=60
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def wait_pool_ready(server: RunningServer, n: int) -> None:
    from tests.client.helpers import poll

    poll(
        lambda: httpx.get(f"{server.url}/api/v1/pool", headers=H_ALICE).json()["ready"] >= n,
        what="a ready pooled kernel",
        timeout=60,
    )


PROBE = """
import json, os
wd = {wd!r}
with open(os.path.join(wd, "from-kernel.txt"), "w") as f:
    f.write("written at the API's path")
print(json.dumps({{
    "listing": sorted(os.listdir(os.path.dirname(os.path.dirname(wd)))),
    "mine": sorted(os.listdir(os.path.dirname(wd))),
    "same_dir": os.path.samefile(wd, os.getcwd()),
}}))
"""


def test_a_pooled_kernel_opens_its_working_dir_by_the_apis_path(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(session_pool_size=1)
    wait_pool_ready(server, 1)
    info = create(server, H_ALICE, "a1")
    assert info["from_pool"] is True
    wd = str(info["working_dir"])
    seen = json.loads(execute(server, H_ALICE, "a1", PROBE.format(wd=wd)))
    assert seen["same_dir"] is True
    assert seen["listing"] == ["alice"]  # the view of sessions/ holds its own user only
    assert seen["mine"] == ["a1"]
    r = httpx.get(f"{server.url}/api/v1/sessions/a1/files/from-kernel.txt", headers=H_ALICE)
    assert r.status_code == 200 and r.text == "written at the API's path"

    # recycled for the next user: alice's link is gone from what the kernel sees
    httpx.delete(f"{server.url}/api/v1/sessions/a1", headers=H_ALICE).raise_for_status()
    wait_pool_ready(server, 1)
    info = create(server, H_BOB, "b1")
    assert info["from_pool"] is True
    seen = json.loads(execute(server, H_BOB, "b1", PROBE.format(wd=str(info["working_dir"]))))
    assert seen["listing"] == ["bob"]
    assert seen["mine"] == ["b1"]
