"""A sandboxed kernel from the pool finds its working dir at the path the API reports (it was
started in the pool, and its cwd was bound there), and sees no other session's directory."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from hearth.sandbox.mounts import MoveFailed
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


CWD_PROBE = "import os\nopen('by-relative-path.txt', 'w').write('here')\nprint(os.getcwd())"


def assert_cwd_is_working_dir(
    server: RunningServer, headers: dict[str, str], info: dict[str, object]
) -> None:
    """The kernel's own cwd is the working dir the API reports, and a file it writes there by
    relative path is one the files API lists."""
    sid = str(info["session_id"])
    assert execute(server, headers, sid, CWD_PROBE).strip() == info["working_dir"]
    r = httpx.get(f"{server.url}/api/v1/sessions/{sid}/files", headers=headers)
    r.raise_for_status()
    assert "by-relative-path.txt" in [f["path"] for f in r.json()]


def started_in(server: RunningServer, user: str, sid: str) -> str:
    """Where the session's current kernel was started (its cwd's bind in its sandbox)."""
    return str(server.call(lambda: server.core.kernels.pool.find(user, sid)._kernel.spec.cwd))


def test_a_pooled_kernels_cwd_is_its_working_dir_when_taken_recycled_and_restarted(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(session_pool_size=1)
    wait_pool_ready(server, 1)
    info = create(server, H_ALICE, "c1")
    assert info["from_pool"] is True
    assert_cwd_is_working_dir(server, H_ALICE, info)
    assert "/kernels/pool/" in started_in(server, "alice", "c1")  # moved, not restarted

    httpx.post(f"{server.url}/api/v1/sessions/c1/restart", headers=H_ALICE).raise_for_status()
    assert_cwd_is_working_dir(server, H_ALICE, info)

    # DELETE recycles: the pool kernel is stopped and a fresh one started, handed out next
    httpx.delete(f"{server.url}/api/v1/sessions/c1", headers=H_ALICE).raise_for_status()
    wait_pool_ready(server, 1)
    info = create(server, H_BOB, "c2")
    assert info["from_pool"] is True
    assert_cwd_is_working_dir(server, H_BOB, info)
    assert "/kernels/pool/" in started_in(server, "bob", "c2")


def test_a_cold_kernels_cwd_is_its_working_dir(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(session_pool_size=0)
    info = create(server, H_ALICE, "cold")
    assert info["from_pool"] is False
    assert_cwd_is_working_dir(server, H_ALICE, info)


def test_a_kernel_claimed_while_it_starts_in_the_pool_finds_its_cwd_moved(
    make_server: Callable[..., RunningServer],
) -> None:
    """At max_kernels, a create waits for the pool kernel being recycled: it was started in the
    pool, and handed out once ready."""
    server = make_server(session_pool_size=1, max_kernels=1)
    wait_pool_ready(server, 1)
    create(server, H_ALICE, "first")
    httpx.delete(f"{server.url}/api/v1/sessions/first", headers=H_ALICE).raise_for_status()
    info = create(server, H_BOB, "claimed")
    assert info["from_pool"] is False
    assert_cwd_is_working_dir(server, H_BOB, info)
    assert "/kernels/pool/" in started_in(server, "bob", "claimed")


def test_a_pooled_kernel_whose_move_fails_is_restarted_in_its_working_dir(
    make_server: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fail(outer: int, source: str, target: str) -> None:
        raise MoveFailed(f"moving {source} to {target} in the sandbox failed: test")

    monkeypatch.setattr("hearth.kernels.kernel.move_mount", fail)
    server = make_server(session_pool_size=1)
    wait_pool_ready(server, 1)
    info = create(server, H_ALICE, "m1")
    assert info["from_pool"] is True
    assert_cwd_is_working_dir(server, H_ALICE, info)
    assert started_in(server, "alice", "m1") == info["working_dir"]


def test_without_network_a_pooled_kernel_runs_in_its_working_dir(
    make_server: Callable[..., RunningServer],
) -> None:
    """``session_network = "none"``: the kernel has a loopback of its own; its channels are the
    same Unix sockets as on the host's network."""
    server = make_server(session_pool_size=1, session_network="none")
    wait_pool_ready(server, 1)
    info = create(server, H_ALICE, "n1")
    assert info["from_pool"] is True
    assert_cwd_is_working_dir(server, H_ALICE, info)
