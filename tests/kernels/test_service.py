"""The pool's life cycle through the service, with real ipykernel kernels and a pool of one."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from hearth.errors import BadRequest, LimitReached, NotFound
from hearth.kernels.service import KernelService
from hearth.store import SqliteStore

from .conftest import FakeClock, kernel_settings, run, text_of, until


async def test_start_up_fills_the_pool_and_a_create_takes_from_it(service: KernelService) -> None:
    assert service.pool_state() == {
        "target": 1,
        "ready": 1,
        "starting": 0,
        "active": 0,
        "max_kernels": 4,
    }
    info, created = await service.create("alice", "s1")
    assert created and info.from_pool and info.status == "active"
    assert info.session_id == "s1" and info.kernel_name == "python3"
    workdir = service.dirs.of("alice", "s1")
    assert info.working_dir == str(workdir)
    # taking from the pool starts a refill at once (just after the first answer's window)
    await until(lambda: service.pool_state()["starting"] + service.pool_state()["ready"] == 1, 2)
    result = await run(service, "alice", "s1", "import os; print(os.getcwd())")
    assert text_of(result) == f"{workdir}\n"
    await until(lambda: service.pool_state()["ready"] == 1)


async def test_reuse_returns_the_same_session_and_keeps_its_state(service: KernelService) -> None:
    await service.create("alice", "s1")
    await run(service, "alice", "s1", "kept = 7")
    info, created = await service.create("alice", "s1")
    assert not created and info.session_id == "s1"
    assert text_of(await run(service, "alice", "s1", "kept")) == "7"
    assert [s.session_id for s in service.sessions("alice")] == ["s1"]


async def test_a_generated_id_and_an_empty_pool_give_a_cold_start(service: KernelService) -> None:
    first, _ = await service.create("alice")
    second, _ = await service.create("alice")  # the refill may not be ready yet
    assert first.from_pool
    assert first.session_id != second.session_id
    assert {s.session_id for s in service.sessions("alice")} == {
        first.session_id,
        second.session_id,
    }
    result = await run(service, "alice", second.session_id, "import os; os.getcwd()")
    assert second.session_id in text_of(result)


async def test_another_users_session_is_answered_as_a_missing_one(service: KernelService) -> None:
    await service.create("alice", "mine")
    with pytest.raises(NotFound) as theirs:
        service.get("bob", "mine")
    with pytest.raises(NotFound) as missing:
        service.get("bob", "nothing")
    assert str(theirs.value).replace("mine", "X") == str(missing.value).replace("nothing", "X")
    for call in (
        lambda: service.execute("bob", "mine", "1"),
        lambda: service.terminate("bob", "mine"),
        lambda: service.open_file("bob", "mine", "a.txt"),
    ):
        with pytest.raises(NotFound):
            call()
    assert service.sessions("bob") == []
    info, created = await service.create("bob", "mine")  # same id, unrelated session
    assert created and info.working_dir != service.get("alice", "mine").working_dir


async def test_bad_input_is_refused_before_anything_starts(service: KernelService) -> None:
    with pytest.raises(BadRequest, match="session id"):
        await service.create("alice", "no/slash")
    with pytest.raises(BadRequest, match="kernelspec"):
        await service.create("alice", "k", kernel_name="cobol")
    with pytest.raises(BadRequest, match="http"):
        await service.create("alice", "k", files=[{"url": "file:///etc/passwd"}])
    with pytest.raises(BadRequest, match="Invalid file path"):
        await service.create("alice", "k", files=[{"url": "http://x/a", "path": "../a"}])
    await service.create("alice", "k")
    with pytest.raises(BadRequest, match="timeout"):
        service.execute("alice", "k", "1", timeout=0)
    assert [s.session_id for s in service.sessions("alice")] == ["k"]


async def test_max_kernels_refuses_with_a_clear_message(tmp_path: Path) -> None:
    settings = kernel_settings(tmp_path, session_pool_size=1, max_kernels=2)
    async with KernelService(settings) as svc:
        await svc.create("alice", "a")
        await svc.create("alice", "b")  # taken from the refill, or claimed while it starts
        with pytest.raises(LimitReached, match="max_kernels"):
            await svc.create("alice", "c")
        assert svc.pool_state()["active"] == 2


async def test_terminate_recycles_into_a_pool_with_room_then_destroys(tmp_path: Path) -> None:
    settings = kernel_settings(tmp_path, session_pool_size=1, max_kernels=2)
    async with KernelService(settings) as svc:
        await svc.create("alice", "a")
        await svc.create("alice", "b")
        assert svc.pool_state()["ready"] + svc.pool_state()["starting"] == 0  # at the limit
        svc.terminate("alice", "a")  # the pool has room: recycle
        with pytest.raises(NotFound):
            svc.get("alice", "a")
        assert not svc.dirs.of("alice", "a").exists()
        await until(lambda: svc.pool_state()["ready"] == 1)
        svc.terminate("alice", "b")  # the pool is full: destroy
        await until(
            lambda: (
                svc.pool_state()
                == {"target": 1, "ready": 1, "starting": 0, "active": 0, "max_kernels": 2}
            )
        )
        assert list(svc.dirs.sessions.glob("*/*")) == []


async def test_idle_sessions_are_reclaimed_by_the_clock(
    service: KernelService, clock: FakeClock
) -> None:
    await service.create("alice", "idle")
    await service.create("alice", "busy")
    clock.advance(500)
    await run(service, "alice", "busy", "1")
    clock.advance(200)  # idle: 700 s > 600 s; busy: 200 s
    assert service.pool.reclaim_idle() == ["idle"]
    with pytest.raises(NotFound):
        service.get("alice", "idle")
    assert service.get("alice", "busy").status == "active"


async def test_a_dead_pooled_kernel_is_replaced(service: KernelService) -> None:
    pooled = next(iter(service.pool._sessions.values()))
    kernel = await pooled.wait_ready()
    os.kill(kernel.pid, signal.SIGKILL)
    await until(lambda: pooled.status.value == "dead" or service.pool_state()["ready"] == 0)
    await until(lambda: service.pool_state()["ready"] == 1)
    info, _ = await service.create("alice", "after")
    assert info.from_pool
    assert text_of(await run(service, "alice", "after", "1+1")) == "2"


async def test_death_between_executes_is_reported_on_the_next_answer(
    service: KernelService,
) -> None:
    await service.create("alice", "d")
    await run(service, "alice", "d", "x = 1")
    died = await run(service, "alice", "d", "import os; os._exit(1)")
    assert died["status"] == "error" and died["restarted"]
    assert died["outputs"][0]["ename"] == "DeadKernelError"
    after = await run(service, "alice", "d", "'x' in dir()")
    assert after["status"] == "ok" and text_of(after) == "False" and not after["restarted"]
    assert after["execution_count"] == 1
    # a death noticed between executes
    kernel = await service.pool.find("alice", "d").wait_ready()  # type: ignore[union-attr]
    os.kill(kernel.pid, signal.SIGKILL)
    await until(
        lambda: (
            service.get("alice", "d").status in ("dead", "starting", "active")
            and service.pool.find("alice", "d").restarted_pending
        )
    )  # type: ignore[union-attr]
    later = await run(service, "alice", "d", "1")
    assert later["restarted"] and later["status"] == "ok"


async def test_restart_and_interrupt(service: KernelService) -> None:
    await service.create("alice", "r")
    await run(service, "alice", "r", "y = 2")
    info = await service.restart("alice", "r")
    assert info.status == "active"
    result = await run(service, "alice", "r", "import os; print('y' in dir(), os.getcwd())")
    assert text_of(result) == f"False {service.dirs.of('alice', 'r')}\n"
    assert (await service.interrupt("alice", "r")).status == "active"


async def test_records_are_stored_and_those_of_a_previous_run_listed_lost(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.sqlite3")
    settings = kernel_settings(tmp_path, session_pool_size=0)
    try:
        async with KernelService(settings, store=store) as svc:
            await svc.create("alice", "kept")
            record = store.get("kernel", "alice", "kept")
            assert record is not None and record["user"] == "alice"
            svc.terminate("alice", "kept")
            assert store.get("kernel", "alice", "kept") is None
            await svc.create("alice", "left")
            store.put("kernel", "bob", "ghost", {"user": "bob", "session_id": "ghost"})
        async with KernelService(settings, store=store) as svc:
            lost = sorted(store.list("kernel"), key=lambda r: r["session_id"])
            assert [(r["session_id"], r["status"], r["closed_reason"]) for r in lost] == [
                ("ghost", "dead", "host_lost"),
                ("left", "dead", "host_lost"),
            ]
            assert svc.get("bob", "ghost").closed_reason == "host_lost"
            svc.terminate("bob", "ghost")  # deleted: gone from the store too
            assert store.get("kernel", "bob", "ghost") is None
    finally:
        store.close()


async def test_a_reader_that_stalls_or_leaves_neither_stops_the_time_limit_nor_holds_the_session(
    service: KernelService,
) -> None:
    await service.create("alice", "s1")
    events = service.execute("alice", "s1", "print('started', flush=True)\nwhile True: pass", 1.0)
    first = await anext(events)
    assert first["type"] == "stream"
    # the reader stops reading here: the run still meets its limit (interrupted after 1 s) and
    # lets the next execution in
    await until(lambda: service.get("alice", "s1").status == "active", 15)
    assert text_of(await run(service, "alice", "s1", "print(6 * 7)")) == "42\n"
    rest = [event async for event in events]  # the slow reader gets all of it, in order
    assert rest[-1]["type"] == "done" and rest[-1]["status"] == "timeout"

    # a reader that leaves: the cell runs to its end, the lock is not left held
    gone = service.execute(
        "alice", "s1", "print('go', flush=True); import time; time.sleep(2); done_here = 1"
    )
    await anext(gone, None)
    await gone.aclose()
    # still running, so still executing (it used to say active while the cell ran on)
    assert service.get("alice", "s1").status == "executing"
    await until(lambda: service.get("alice", "s1").status == "active", 15)
    assert text_of(await run(service, "alice", "s1", "print(done_here)")) == "1\n"


async def test_an_execution_queued_by_a_user_never_runs_in_the_next_users_kernel(
    tmp_path: Path,
) -> None:
    settings = kernel_settings(tmp_path, session_pool_size=1, max_kernels=1)
    async with KernelService(settings) as svc:
        await svc.create("alice", "a")
        busy = svc.execute("alice", "a", "import time; time.sleep(1)")
        queued = svc.execute("alice", "a", "left_by_alice = 1")  # waits for the first
        svc.terminate("alice", "a")  # recycled for whoever comes next
        await svc.create("bob", "b")  # the only kernel: the same session, recycled
        assert text_of(await run(svc, "bob", "b", "print('left_by_alice' in dir())")) == "False\n"
        with pytest.raises(NotFound):
            [event async for event in queued]
        await busy.aclose()


async def test_an_execution_queued_on_a_session_that_ends_is_told_why(tmp_path: Path) -> None:
    """Its reader gets an error, not an end without ``done`` (which a synchronous execute would
    turn into a 500)."""
    settings = kernel_settings(tmp_path, session_pool_size=0)
    async with KernelService(settings) as svc:
        await svc.create("alice", "a")
        busy = svc.execute("alice", "a", "import time; time.sleep(30)")
        queued = svc.execute("alice", "a", "1")  # waits for the first
        svc.terminate("alice", "a")  # no room in the pool: the session ends
        with pytest.raises(NotFound, match="closed meanwhile"):
            [event async for event in queued]
        await busy.aclose()
