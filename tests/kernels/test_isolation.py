"""A recycled kernel is a clean slate: nothing of its previous user survives.

The pool holds one kernel and max_kernels is 2, so the recycle is deterministic: alice takes the
pooled kernel, carol takes the refill (the limit is reached, nothing more starts), alice lets go
— the pool has room, so her kernel is recycled into it — and bob is handed that very slot.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from hearth.kernels.procs import is_gone
from hearth.kernels.service import KernelService

from .conftest import FakeClock, kernel_settings, run, text_of, until

LEAVE_TRACES = """
import os, sys, subprocess, threading, time, types
secret = "alice-secret-value"
sys.modules["alice_module"] = types.ModuleType("alice_module")
import colorsys
os.environ["ALICE_SECRET"] = "1"
open("alice.txt", "w").write("private")
os.makedirs("nested/deeper"); open("nested/deeper/x.txt", "w").write("x")
child = subprocess.Popen(["sleep", "300"])
escaped = subprocess.Popen(["sleep", "301"], start_new_session=True)
shell = subprocess.run(["sh", "-c", "sleep 302 >/dev/null 2>&1 & echo $!"],
                       capture_output=True, text=True)
ticker = threading.Thread(target=lambda: time.sleep(300), name="alice-thread", daemon=True)
ticker.start()
os.chdir("/tmp")
print(os.getpid(), child.pid, escaped.pid, int(shell.stdout))
"""

INSPECT = """
import json, os, sys, threading
ip = get_ipython()
print(json.dumps({
    "pid": os.getpid(),
    "cwd": os.getcwd(),
    "listing": sorted(os.listdir(".")),
    "names": [n for n in ("secret", "child", "escaped", "ticker") if n in ip.user_ns],
    "modules": [m for m in ("alice_module", "colorsys") if m in sys.modules],
    "env": os.environ.get("ALICE_SECRET"),
    "threads": [t.name for t in threading.enumerate()],
    "history": [h for h in ip.history_manager.search("*alice-secret*")],
    "count": ip.execution_count,
}))
"""


async def inspect(svc: KernelService, user: str, sid: str) -> dict[str, Any]:
    import json

    result = await run(svc, user, sid, INSPECT)
    assert result["status"] == "ok", result
    return json.loads(text_of(result))  # type: ignore[no-any-return]


@pytest.mark.parametrize("how", ["terminate", "terminate-while-busy", "idle-timeout"])
async def test_nothing_of_the_previous_user_survives_a_recycle(
    tmp_path: Path, clock: FakeClock, how: str
) -> None:
    settings = kernel_settings(tmp_path, session_pool_size=1, max_kernels=2)
    async with KernelService(settings, clock=clock) as svc:
        alice, _ = await svc.create("alice", "work")
        baseline = await inspect(svc, "alice", "work")
        assert baseline["modules"] == [] and baseline["cwd"] == alice.working_dir
        traces = await run(svc, "alice", "work", LEAVE_TRACES)
        assert traces["status"] == "ok", traces
        pids = [int(p) for p in text_of(traces).split()]
        assert not any(is_gone(p) for p in pids)
        alice_slot = svc.pool.find("alice", "work")
        await svc.create("carol", "filler")  # the pool's refill: now at max_kernels
        assert svc.pool_state()["ready"] + svc.pool_state()["starting"] == 0

        if how == "terminate":
            svc.terminate("alice", "work")
        elif how == "terminate-while-busy":
            busy = asyncio.ensure_future(run(svc, "alice", "work", "import time; time.sleep(60)"))
            await until(lambda: svc.get("alice", "work").status == "executing")
            svc.terminate("alice", "work")
            assert (await busy)["status"] == "error"
        else:
            clock.advance(settings.session_pool_max_idle_time + 1)
            await run(svc, "carol", "filler", "1")  # carol stays active
            assert svc.pool.reclaim_idle() == ["work"]
        await until(lambda: svc.pool_state()["ready"] == 1)

        bob, _ = await svc.create("bob", "next")
        assert bob.from_pool and svc.pool.find("bob", "next") is alice_slot  # the recycled slot
        seen = await inspect(svc, "bob", "next")
        assert seen["pid"] != pids[0]  # a fresh process
        assert seen["cwd"] == bob.working_dir == str(svc.dirs.of("bob", "next"))
        assert seen["listing"] == []
        assert seen["names"] == [] and seen["modules"] == [] and seen["env"] is None
        assert "alice-thread" not in seen["threads"]
        assert seen["history"] == [] and seen["count"] == baseline["count"]
        assert bob.files == [] and bob.execution_count == 0
        assert await svc.list_files("bob", "next") == []
        assert not await asyncio.to_thread(Path(alice.working_dir).exists)
        await until(lambda: all(is_gone(p) for p in pids), 5)
