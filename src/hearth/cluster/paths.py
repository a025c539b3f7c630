"""Which requests name a session, a list or a create: what a node must relay, merge or place
(SPEC §12). Every path of the API that holds sessions is in this one table; a path not in it is
answered by the node it reached (health, metrics, the pool, the web pages).

A *key* names one resource across the cluster: its kind, its owner and its id (ids are the
user's own, so two users may both have a terminal "build").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["ID_FIELDS", "KINDS", "Key", "Kind", "Target", "notebook_key", "target_of"]

# t: terminal sessions, k: kernel sessions (Jupyter's kernels too), j: Jupyter's sessions,
# c: saved connections (they live on the node that saved them, as do its terminals)
Kind = Literal["t", "k", "j", "c"]
KINDS: tuple[Kind, ...] = ("t", "k", "j", "c")


@dataclass(frozen=True)
class Key:
    kind: Kind
    user: str
    id: str

    def field(self) -> str:
        return f"{self.kind}/{self.user}/{self.id}"

    @classmethod
    def parse(cls, field: str) -> Key | None:
        kind, _, rest = field.partition("/")
        user, _, id = rest.partition("/")
        if kind not in KINDS or not user or not id:
            return None
        return cls(kind, user, id)


def notebook_key(user: str, path: str) -> Key:
    """Where a notebook's Jupyter session is: Jupyter's clients ask for it by its path."""
    return Key("j", user, f"path:{path}")


@dataclass(frozen=True)
class Target:
    """What a request is about: ``one`` resource (its kind and id), the ``list`` of a kind, or
    a ``create`` of one."""

    role: Literal["one", "list", "create"]
    kind: Kind
    id: str | None = None
    path: str = ""  # the collection's path (as a list or a create), whose models it answers


_ID = r"([A-Za-z0-9_.\-]{1,128})"
_TERMINALS = "/api/v1/terminal/sessions"
# (the path, its kind, the collection whose models it answers)
_ONE: list[tuple[re.Pattern[str], Kind, str]] = [
    (re.compile(rf"^/api/(?:v1/)?terminal/sessions?/{_ID}(?:/.*)?$"), "t", _TERMINALS),
    (re.compile(rf"^/api/v1/terminal/ws/{_ID}$"), "t", _TERMINALS),
    (re.compile(rf"^/ws/terminal/{_ID}$"), "t", _TERMINALS),
    (re.compile(rf"^/api/v1/sessions/{_ID}(?:/.*)?$"), "k", "/api/v1/sessions"),
    (re.compile(rf"^/api/kernels/{_ID}(?:/.*)?$"), "k", "/api/kernels"),
    (re.compile(rf"^/api/sessions/{_ID}$"), "j", "/api/sessions"),
    (re.compile(rf"^/api/v1/connections/{_ID}(?:/.*)?$"), "c", "/api/v1/connections"),
]
_COLLECTIONS: dict[str, Kind] = {
    "/api/v1/terminal/sessions": "t",
    "/api/terminal/sessions": "t",
    "/api/v1/sessions": "k",
    "/api/kernels": "k",
    "/api/sessions": "j",
    "/api/v1/connections": "c",
}
# the field of a create's answer (and of a list's items) that holds the id, by path
ID_FIELDS = {
    "/api/v1/terminal/sessions": "id",
    "/api/terminal/sessions": "id",
    "/api/v1/sessions": "session_id",
    "/api/kernels": "id",
    "/api/sessions": "id",
    "/api/v1/connections": "id",
}


def target_of(method: str, path: str) -> Target | None:
    path = path.rstrip("/") or "/"
    kind = _COLLECTIONS.get(path)
    if kind is not None:
        if method == "GET":
            return Target("list", kind, path=path)
        if method == "POST":
            return Target("create", kind, path=path)
        return None
    for pattern, kind, collection in _ONE:
        match = pattern.match(path)
        if match is not None:
            return Target("one", kind, match.group(1), collection)
    return None
