"""The session life cycle: legal moves pass, illegal ones say what and why."""

from __future__ import annotations

import pytest

from hearth.kernels.status import IllegalTransition, KernelLifecycle, KernelStatus

S = KernelStatus


def test_the_documented_life_cycle_is_legal() -> None:
    life = KernelLifecycle("k1")
    for to in (
        S.POOLED,
        S.ACTIVE,
        S.EXECUTING,
        S.ACTIVE,
        S.IDLE,
        S.CLEANING,
        S.STARTING,
        S.POOLED,
        S.ACTIVE,
        S.DEAD,
        S.STARTING,
        S.ACTIVE,
        S.CLEANING,
        S.CLOSED,
    ):
        life.move(to, "test")
    assert life.status is S.CLOSED


def test_an_illegal_move_names_the_call_and_the_state() -> None:
    life = KernelLifecycle("a1b2", S.POOLED)
    with pytest.raises(IllegalTransition) as caught:
        life.move(S.EXECUTING, "execute code in")
    assert str(caught.value) == "Cannot execute code in kernel session 'a1b2': it is pooled."
    assert life.status is S.POOLED


def test_closed_is_final() -> None:
    life = KernelLifecycle("x", S.CLOSED)
    assert not any(life.can(to) for to in S if to is not S.CLOSED)


def test_statuses_are_the_contract_names() -> None:
    assert {s.value for s in S} >= {"pooled", "active", "executing", "idle", "cleaning", "dead"}
