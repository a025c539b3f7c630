"""The metadata store: who owns which session, its name and how it was started.

SQLite embedded by default; the interface is small (a record per session, keyed by kind, user
and id) so that a shared registry can replace it later. Live state (buffers, processes) is not
here: it is derived from the session's process.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Protocol

__all__ = ["SessionStore", "SqliteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    kind TEXT NOT NULL,
    user TEXT NOT NULL,
    id TEXT NOT NULL,
    data TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (kind, user, id)
);
"""


class SessionStore(Protocol):
    def put(self, kind: str, user: str, id: str, data: dict[str, Any]) -> None: ...
    def get(self, kind: str, user: str, id: str) -> dict[str, Any] | None: ...
    def delete(self, kind: str, user: str, id: str) -> None: ...
    def list(self, kind: str, user: str | None = None) -> list[dict[str, Any]]: ...
    def close(self) -> None: ...


class SqliteStore:
    """One SQLite file in WAL mode; writes are tiny and rare, so they run on the event loop."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def put(self, kind: str, user: str, id: str, data: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO sessions(kind, user, id, data, updated_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(kind, user, id) DO UPDATE SET data=excluded.data, "
            "updated_at=excluded.updated_at",
            (kind, user, id, json.dumps(data), time.time()),
        )

    def get(self, kind: str, user: str, id: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT data FROM sessions WHERE kind=? AND user=? AND id=?", (kind, user, id)
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def delete(self, kind: str, user: str, id: str) -> None:
        self._db.execute("DELETE FROM sessions WHERE kind=? AND user=? AND id=?", (kind, user, id))

    def list(self, kind: str, user: str | None = None) -> list[dict[str, Any]]:
        if user is None:
            rows = self._db.execute("SELECT data FROM sessions WHERE kind=?", (kind,))
        else:
            rows = self._db.execute(
                "SELECT data FROM sessions WHERE kind=? AND user=?", (kind, user)
            )
        return [dict(json.loads(r[0])) for r in rows.fetchall()]

    def close(self) -> None:
        self._db.close()
