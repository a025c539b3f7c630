"""Comparing a call made to the node that holds a session with the same call made through
another node (SPEC §12: "the same answers … as a direct call"), for tests/cluster/test_any_node.py.

A stateful call (an execute, a rename, a delete) can't be made twice on one session with the same
answer, so every call is made on **twins**: two sessions created alike on node b, one called on b
itself, the other through a, always in the same order. Their answers must then be equal once each
twin's own names (its id, a Jupyter session's kernel and path) are written as placeholders and the
fields in ``DROPPED`` are left out.
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.cluster.nodes import Node
from tests.conftest import ALICE

# Fields that legitimately differ between the twins' answers, each a time: what differs between
# two sessions created, or two calls made, a few milliseconds apart. Nothing else is left out.
DROPPED = frozenset(
    {
        "created_at",  # when each twin was created (a kernel: handed out)
        "last_activity",  # when each twin was last created, called or written to
        "expires_at",  # a terminal's last_activity + session_timeout
        "duration_ms",  # how long an execute took on each twin's kernel
        "timestamp",  # when a history entry happened; when a recording started (its header)
        "modified",  # a file's mtime: each twin's copy was written at its own moment
        "updated_at",  # when each twin's saved connection was last changed
    }
)
# Headers whose value says something about the answer (the others: date, server, length)
MEANINGFUL_HEADERS = (
    "content-type",
    "content-disposition",
    "content-encoding",
    "location",
    "retry-after",
    "cache-control",
)


@dataclass(frozen=True)
class Call:
    """One call of the API. ``{id}`` (and ``{kernel}``, ``{label}``) in the path, the JSON body
    or a header stand for the twin's; ``token`` None: no credentials at all; ``expect``: the
    status the direct call must answer (a case where both fail alike is not a pass)."""

    name: str
    method: str
    path: str
    expect: int
    json: Any = None
    content: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    token: str | None = ALICE

    def __str__(self) -> str:
        return self.name


@dataclass
class Twin:
    """One of the two sessions: its names (``id`` always; ``kernel``, ``label`` for a Jupyter
    session), and the node it is called through."""

    node: Node
    fields: dict[str, str]

    @property
    def id(self) -> str:
        return self.fields["id"]

    def fill(self, value: Any) -> Any:
        """``value`` (a path, a JSON body) with the placeholders replaced by this twin's names."""
        if isinstance(value, str):
            for name, concrete in self.fields.items():
                value = value.replace("{" + name + "}", concrete)
            return value
        if isinstance(value, dict):
            return {self.fill(k): self.fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.fill(v) for v in value]
        return value

    def neutral(self, value: Any) -> Any:
        """``value`` (an answer) with this twin's names written as placeholders, and the fields
        of ``DROPPED`` left out."""
        if isinstance(value, str):
            # longest first: a label may be part of a path that is a field too
            for name, concrete in sorted(self.fields.items(), key=lambda f: -len(f[1])):
                value = value.replace(concrete, "{" + name + "}")
            return value
        if isinstance(value, dict):
            return {self.neutral(k): self.neutral(v) for k, v in value.items() if k not in DROPPED}
        if isinstance(value, list):
            return [self.neutral(v) for v in value]
        return value


@dataclass
class Twins:
    direct: Twin  # on b, called on b
    relayed: Twin  # on b, called through a
    created: tuple[httpx.Response, httpx.Response] | None = field(default=None, repr=False)

    def __iter__(self) -> Iterator[Twin]:
        return iter((self.direct, self.relayed))


def label(prefix: str) -> str:
    """A fresh id no other string of an answer contains by chance."""
    return f"{prefix}{secrets.token_hex(5)}"


def send(twin: Twin, call: Call, timeout: float = 60) -> httpx.Response:
    headers = {k: twin.fill(v) for k, v in call.headers}
    if call.token is not None:
        headers.setdefault("Authorization", f"Bearer {call.token}")
    with httpx.Client(base_url=twin.node.url, timeout=timeout) as client:
        return client.request(
            call.method,
            twin.fill(call.path),
            json=twin.fill(call.json) if call.json is not None else None,
            content=call.content,
            headers=headers,
        )


@dataclass(frozen=True)
class Answer:
    status: int
    header_counts: Mapping[str, int]  # a relay must neither lose nor repeat a header
    headers: Mapping[str, str]
    body: Any


def answer_of(response: httpx.Response, twin: Twin) -> Answer:
    kind = response.headers.get("content-type", "").split(";")[0].strip()
    body: Any
    if kind == "application/json":
        body = twin.neutral(response.json())
    elif kind == "application/x-ndjson":
        body = [twin.neutral(json.loads(line)) for line in response.text.splitlines()]
    elif kind == "application/x-asciicast":
        header, *events = (json.loads(line) for line in response.text.splitlines())
        # an event's first element is its time since the recording started: left out, as is
        # the header's timestamp (the twins' outputs came at their own moments)
        body = [twin.neutral(header), [twin.neutral(e[1:]) for e in events]]
    else:
        body = response.content
    counts = Counter(k.lower() for k, _ in response.headers.multi_items())
    headers = {
        k: twin.neutral(response.headers[k]) for k in MEANINGFUL_HEADERS if k in response.headers
    }
    return Answer(response.status_code, dict(counts), headers, body)


def assert_same(
    call: Call | str, direct: httpx.Response, relayed: httpx.Response, twins: Twins
) -> None:
    """The direct call answered as expected, and the relayed one the same."""
    expect = call.expect if isinstance(call, Call) else None
    if expect is not None:
        assert direct.status_code == expect, (
            f"{call}: b itself answered {direct.status_code}: {direct.text[:800]}"
        )
    mine, theirs = answer_of(direct, twins.direct), answer_of(relayed, twins.relayed)
    assert theirs == mine, (
        f"{call}: through a\n  {theirs}\ndirectly on b\n  {mine}\n(relayed body: {relayed.text[:800]})"
    )


def make_twins(a: Node, b: Node, create: Call, fields_of: Any) -> Twins:
    """Create two sessions on b alike, one with the call made to b, one with it made to a;
    ``fields_of(label, answer)``: the twin's names from its create's answer."""
    made = []
    for node in (b, a):
        name = label(create.name)
        probe = Twin(node, {"id": name, "label": name})
        response = send(probe, create)
        assert response.status_code == create.expect, (
            f"create {create.path} on {node.name}: {response.status_code} {response.text[:800]}"
        )
        made.append((Twin(node, fields_of(name, response.json())), response))
    twins = Twins(made[0][0], made[1][0], (made[0][1], made[1][1]))
    for twin in twins:
        assert twin.fields["id"], twins
    return twins
