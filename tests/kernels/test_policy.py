"""The pool's decisions and the idle policy, on plain numbers."""

from __future__ import annotations

from hearth.kernels.policy import Acquire, PoolCounts, PoolPolicy, Release, idle_expired

POLICY = PoolPolicy(target=2, max_kernels=4)


def test_a_ready_kernel_is_taken_even_at_the_limit() -> None:
    assert POLICY.acquire(PoolCounts(ready=1, users=3)) is Acquire.TAKE


def test_an_empty_pool_with_room_starts_a_kernel_for_the_caller() -> None:
    assert POLICY.acquire(PoolCounts(starting=2, users=1)) is Acquire.COLD


def test_without_room_the_caller_waits_for_a_starting_pool_kernel() -> None:
    assert POLICY.acquire(PoolCounts(starting=1, users=3)) is Acquire.CLAIM


def test_without_room_and_nothing_coming_the_caller_is_refused() -> None:
    counts = PoolCounts(users=3, destroying=1)
    assert POLICY.acquire(counts) is Acquire.REFUSE
    assert "max_kernels" in POLICY.refused_message(counts)


def test_refill_tops_up_to_the_target_but_never_beyond_max_kernels() -> None:
    assert POLICY.refill(PoolCounts()) == 2
    assert POLICY.refill(PoolCounts(ready=1)) == 1
    assert POLICY.refill(PoolCounts(ready=1, starting=1)) == 0
    assert POLICY.refill(PoolCounts(users=3)) == 1
    assert POLICY.refill(PoolCounts(users=4)) == 0


def test_release_recycles_into_a_pool_that_is_not_full_and_destroys_otherwise() -> None:
    assert POLICY.release(PoolCounts(ready=1, users=1)) is Release.RECYCLE
    assert POLICY.release(PoolCounts(ready=1, starting=1, users=1)) is Release.DESTROY
    assert PoolPolicy(0, 4).release(PoolCounts(users=1)) is Release.DESTROY


def test_idle_expired_lists_the_idle_keys_oldest_first() -> None:
    seen = [("a", 100.0), ("b", 50.0), ("c", 400.0), ("d", 99.0)]
    assert idle_expired(seen, now=400.0, max_idle=300.0) == ["b", "d", "a"]
    assert idle_expired(seen, now=399.0, max_idle=300.0) == ["b", "d"]
    assert idle_expired([], now=1.0, max_idle=1.0) == []
