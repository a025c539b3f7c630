"""Each Hearth user's sandbox uid: their number (:mod:`hearth.users`, kept in the store, never
reused) placed in the sandbox's range of terminal uids. Their terminals run as it, and their
kernels' working dirs belong to its group (one disk quota group per user)."""

from __future__ import annotations

from hearth.sandbox.sandbox import Sandbox
from hearth.store import SessionStore
from hearth.users import UserNumbers

__all__ = ["UserUids"]


class UserUids:
    def __init__(self, sandbox: Sandbox, store: SessionStore | None) -> None:
        self._sandbox = sandbox
        self._numbers = UserNumbers(store)

    def __call__(self, user: str) -> int:
        """``user``'s uid, allocated (and stored) at its first use."""
        return self._sandbox.terminal_uid(self._numbers(user))
