"""A session that spawns many busy processes takes no more CPU than any other (SPEC §7.1): each
session is a cgroup of its own with the same weight, whatever it forks or ``setsid``s."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.client.helpers import poll
from tests.conftest import RunningServer
from tests.sandbox.test_attacks import H_ALICE, H_BOB, execute, terminal_output

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/usr/bin/bwrap").exists(),
    reason="needs root (session cgroups) and bubblewrap",
)

BUSY = 40
# bob's kernel spins for a while and says how much of that wall time was its CPU time
SPIN = """
import time
start, cpu = time.perf_counter(), time.process_time()
while time.perf_counter() - start < 3.0:
    pass
print(round((time.process_time() - cpu) / (time.perf_counter() - start), 3))
"""


def test_forty_busy_processes_leave_another_session_half_a_core(server: RunningServer) -> None:
    r = httpx.post(
        f"{server.url}/api/v1/sessions", json={"session_id": "bk"}, headers=H_BOB, timeout=60
    )
    assert r.status_code == 201, r.text
    script = (
        f"i=0; while [ $i -lt {BUSY} ]; do setsid sh -c 'while :; do :; done' & i=$((i+1)); done;"
        " echo SPAWNED; exec cat"
    )
    r = httpx.post(
        f"{server.url}/api/v1/terminal/sessions",
        json={"id": "hog", "command": ["/bin/sh", "-c", script]},
        headers=H_ALICE,
    )
    assert r.status_code == 201, r.text
    poll(lambda: "SPAWNED" in terminal_output(server, H_ALICE, "hog"), what="the busy loops")
    share = float(execute(server, H_BOB, "bk", SPIN))
    # without a cgroup per session bob's one process gets 1/41 of the CPU (about 0.05 core)
    assert share >= 0.5, f"bob's kernel got {share} of a core beside {BUSY} busy processes"
    httpx.delete(f"{server.url}/api/v1/terminal/sessions/hog", headers=H_ALICE)
