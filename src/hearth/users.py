"""Each Hearth user's number: kept in the store, stable across restarts, never reused. It names
the user's sandbox uid (their terminals run as it) and their disk quota group."""

from __future__ import annotations

from hearth.store import SessionStore

__all__ = ["UserNumbers"]


class UserNumbers:
    def __init__(self, store: SessionStore | None) -> None:
        self._store = store
        self._known: dict[str, int] = {}  # without a store (tests): for this process only

    def __call__(self, user: str) -> int:
        if self._store is None:
            return self._known.setdefault(user, len(self._known))
        record = self._store.get("account", user, "uid")
        if record is None:
            taken = [r["index"] for r in self._store.list("account")]
            record = {"index": max(taken, default=-1) + 1}
            self._store.put("account", user, "uid", record)
        return int(record["index"])
