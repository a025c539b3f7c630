"""Any node answers for any session (SPEC §12): an ASGI middleware in front of the routes.

For a request about one session (``paths.target_of``) held by another node, it authenticates
the user here and relays the request there (``relay.py``). A list is answered from every node.
A create is placed on the node with the most headroom (or the one the body names with
``"node"``). What this node answers itself is marked with its name (``"node"``), and what it
creates or deletes is written to the index at once.

A request relayed here by another node (signed, ``signing.HEADER``) is answered here, never
relayed again. A node without a cluster (no ``cluster_redis_url``) has no such middleware.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hearth.cluster.index import IndexDown, NodeView
from hearth.cluster.node import SAVED_AS, Node
from hearth.cluster.paths import ID_FIELDS, Key, Kind, Target, notebook_key, target_of
from hearth.cluster.relay import NodeUnreachable, Relay, local_path
from hearth.cluster.signing import HEADER, Signer
from hearth.errors import BadRequest, HearthError, HostUnavailable
from hearth.server.auth import Authenticator, check_origin, token_of

__all__ = ["Cluster", "ClusterMiddleware"]


@dataclass
class Cluster:
    node: Node
    relay: Relay
    signer: Signer
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @property
    def retry_after(self) -> str:
        return str(max(1, round(self.node.lease_s)))


class ClusterMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cluster: Cluster | None = None
        if scope["type"] in ("http", "websocket"):
            cluster = getattr(scope["app"].state, "cluster", None)
        if cluster is None:
            return await self.app(scope, receive, send)
        method = scope.get("method", "GET")
        target = target_of(method, scope["path"])
        if target is None:
            return await self.app(scope, receive, send)
        conn = HTTPConnection(scope)
        if HEADER in conn.headers:  # relayed here: answered here (the routes check the signature)
            user = _relayed_user(conn, cluster)
            return await self._here(cluster, target, user, scope, receive, send)
        user = _user(conn)
        if user is None:  # the routes answer 401 (or refuse the websocket) as on one node
            return await self.app(scope, receive, send)
        if target.role == "one":
            return await self._one(cluster, target, user, scope, receive, send)
        if target.role == "list":
            return await self._list(cluster, target, user, scope, receive, send)
        return await self._create(cluster, target, user, scope, receive, send)

    # --- one session ---------------------------------------------------------------------

    async def _one(
        self,
        cluster: Cluster,
        target: Target,
        user: str,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        assert target.id is not None
        key = Key(target.kind, user, target.id)
        node = cluster.node
        if key in node.here:
            return await self._here(cluster, target, user, scope, receive, send)
        try:
            owner = await node.index.owner(key)
        except IndexDown:
            return await self._here_or_503(cluster, target, user, scope, receive, send)
        if owner is None or owner == node.name:
            return await self._here(cluster, target, user, scope, receive, send)
        view = await _view(cluster, owner)
        if view is None or not view.up:
            return await _unavailable(cluster, scope, receive, send, owner, view)
        try:
            if scope["type"] == "websocket":
                return await cluster.relay.websocket(scope, receive, send, view.url, user)
            return await cluster.relay.http(scope, receive, send, view.url, user)
        except NodeUnreachable:
            return await _unavailable(cluster, scope, receive, send, owner, view)

    async def _here_or_503(
        self,
        cluster: Cluster,
        target: Target,
        user: str,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """Redis is down and the key is not known here: this node answers if it holds it; its
        404 becomes a 503 (the session may be on a node this one can't look up now)."""
        if scope["type"] == "websocket":
            return await self._here(cluster, target, user, scope, receive, send)
        unavailable = json.dumps(
            {
                "detail": "The cluster's index (Redis) can't be reached, and this node holds no "
                "such session; retry shortly."
            }
        ).encode()

        async def rewrite(status: int, body: bytes) -> bytes:
            return unavailable

        def held(start: Message) -> bool:
            return bool(start["status"] == 404)

        retry = [(b"retry-after", cluster.retry_after.encode())]
        await self.app(scope, receive, _Rewriting(send, held, rewrite, status=503, extra=retry))

    # --- answered here -------------------------------------------------------------------

    async def _here(
        self,
        cluster: Cluster,
        target: Target,
        user: str | None,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """This node answers: JSON about sessions gets ``"node"``; creates and deletes go to the
        index."""
        if user is None:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            if target.kind == "t" and target.id is not None and _may_create(scope):
                await cluster.node.placed(Key("t", user, target.id))  # before it exists
            return await self.app(scope, receive, send)
        method = scope["method"]
        if target.role == "one" and method == "DELETE":
            status = await _status_of(self.app, scope, receive, send)
            if status == 204 and target.id is not None:
                await cluster.node.deleted(Key(target.kind, user, target.id))
            return
        if target.role == "one" and method not in ("GET", "PATCH", "POST", "PUT"):
            return await self.app(scope, receive, send)

        async def rewrite(status: int, body: bytes) -> bytes:
            data = _annotated(body, target, cluster.node.name) if 200 <= status < 300 else None
            if data is None:
                return body
            # in the index before the client can ask elsewhere (a Jupyter session's PATCH may
            # have started its new kernel here)
            if target.role == "create" or (target.kind == "j" and method == "PATCH"):
                await cluster.node.created(target.kind, user, target.path, json.loads(data))
            return data

        await self.app(scope, receive, _Rewriting(send, _is_json, rewrite))

    # --- lists ---------------------------------------------------------------------------

    async def _list(
        self,
        cluster: Cluster,
        target: Target,
        user: str,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """This node's list and every other node's, each item with its ``node``; a node that
        can't answer shows what it listed last, ``node_reachable: false``."""
        status, headers, body = await _capture(self.app, scope, receive)
        if status != 200:
            return await _replay(send, status, headers, body)
        mine = _annotated(body, target, cluster.node.name)
        if mine is None:  # not a list: this node's answer says why
            return await _replay(send, status, headers, body)
        others = [v for v in cluster.node.views.values() if v.name != cluster.node.name]
        theirs = await asyncio.gather(*(_list_of(cluster, v, user, target.path) for v in others))
        # JSON arrays joined as they are, not parsed: thousands of sessions per node
        inner = [part.strip()[1:-1].strip() for part in (mine, *theirs)]
        merged = b"[" + b",".join(p for p in inner if p) + b"]"
        content = [(b"content-type", b"application/json")]
        await _replay(send, 200, [*content, (b"content-length", str(len(merged)).encode())], merged)

    # --- creates -------------------------------------------------------------------------

    async def _create(
        self,
        cluster: Cluster,
        target: Target,
        user: str,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        body = await _read_body(receive)
        try:
            request = json.loads(body) if body.strip() else {}
        except ValueError:
            request = None
        if not isinstance(request, dict):  # malformed: this node's route says what is wrong
            return await self.app(scope, _replaying(body, receive), send)
        asked = request.pop("node", None)
        if asked is not None:
            body = json.dumps(request).encode()
        try:
            node = await _placement(cluster, target.kind, user, request, asked)
            claimed = await _claim(cluster, target.kind, user, request, node)
        except HearthError as exc:
            return await _json_answer(send, exc.status_code, {"detail": exc.message})
        if claimed is not None and claimed[1] != (node.name if node else cluster.node.name):
            node = await _view(cluster, claimed[1])  # made meanwhile elsewhere: it answers
        if node is None or node.name == cluster.node.name:
            return await self._here(cluster, target, user, scope, _replaying(body, receive), send)
        try:
            await cluster.relay.http(scope, receive, send, node.url, user, body=body)
        except NodeUnreachable:
            if asked is not None:  # the node asked for is down: say so, place it nowhere
                read = _replaying(body, receive)  # (the body is read: nothing to drain)
                return await _unavailable(cluster, scope, read, send, node.name, node)
            await self._here(cluster, target, user, scope, _replaying(body, receive), send)


# --- placement ----------------------------------------------------------------------------


async def _placement(
    cluster: Cluster, kind: Kind, user: str, request: dict[str, Any], asked: Any
) -> NodeView | None:
    """The node a create goes to: the one holding what it names (its id, its connection, its
    kernel), else the one asked for, else the one with the most headroom. None: here."""
    here = cluster.node
    named = _named_keys(kind, user, request)
    for key in named:
        if key in here.here:
            return None
        try:
            owner = await here.index.owner(key)
        except IndexDown:
            return None
        if owner is not None and owner != here.name:
            return await _view(cluster, owner)
        if owner == here.name:
            return None
    if asked is not None:
        if not isinstance(asked, str):
            raise BadRequest("'node' names a node: a string, as GET /healthz lists them.")
        view = await _view(cluster, asked)
        if view is None:
            raise BadRequest(f"No node {asked!r} in this cluster; GET /healthz lists them.")
        if not view.up:
            raise HostUnavailable(f"Node {asked!r} is down; retry later or leave 'node' out.")
        return view
    if kind == "c":
        return None  # a connection is saved where it is made
    candidates = [v for v in here.views.values() if v.up]
    if not candidates:
        return None
    best = max(candidates, key=lambda v: _score(kind, v))
    _spend(kind, best)
    return best


async def _claim(
    cluster: Cluster, kind: Kind, user: str, request: dict[str, Any], node: NodeView | None
) -> tuple[Key, str] | None:
    """A create that names its own id claims it in the index for the node it goes to, so that
    two creates of one id through two nodes make one session: (the key, the node that has it).
    A claim whose create failed is dropped by that node's next sync."""
    field = {"t": "id", "k": "session_id", "c": "id"}.get(kind)
    if field is None or not isinstance(request.get(field), str):
        return None
    key = Key(kind, user, request[field])
    name = node.name if node is not None else cluster.node.name
    try:
        return key, await cluster.node.index.claim(key, name) or name
    except IndexDown:
        return None


def _named_keys(kind: Kind, user: str, request: dict[str, Any]) -> list[Key]:
    keys = []
    if kind == "t":
        if isinstance(request.get("id"), str):
            keys.append(Key("t", user, request["id"]))
        if isinstance(request.get("connection_id"), str):
            keys.append(Key("c", user, request["connection_id"]))
    elif kind == "k" and isinstance(request.get("session_id"), str):
        keys.append(Key("k", user, request["session_id"]))
    elif kind == "j":
        kernel = request.get("kernel")
        if isinstance(kernel, dict) and isinstance(kernel.get("id"), str):
            keys.append(Key("k", user, kernel["id"]))
        if isinstance(request.get("path"), str):  # a notebook has one session, wherever asked
            keys.append(notebook_key(user, request["path"]))
    elif kind == "c":
        if isinstance(request.get("id"), str):
            keys.append(Key("c", user, request["id"]))
        if isinstance(request.get("jump"), str):  # saved beside the connection it goes through
            keys.append(Key("c", user, request["jump"]))
    return keys


def _score(kind: Kind, view: NodeView) -> tuple[int | float, ...]:
    room = view.headroom
    memory = int(room.get("memory_available", 0))
    if kind == "t":
        return (int(room.get("terminals_free", 0)) > 0, int(room.get("terminals_free", 0)), memory)
    ready = int(room.get("pool_ready", 0))
    return (
        int(room.get("kernels_free", 0)) > 0,
        ready > 0,
        int(room.get("kernels_free", 0)),
        memory,
    )


def _spend(kind: Kind, view: NodeView) -> None:
    """Count the session just placed against the node's headroom until it announces anew, so
    that a burst of creates spreads."""
    room = view.headroom
    if kind == "t":
        room["terminals_free"] = int(room.get("terminals_free", 0)) - 1
    else:
        room["kernels_free"] = int(room.get("kernels_free", 0)) - 1
        room["pool_ready"] = max(0, int(room.get("pool_ready", 0)) - 1)


async def _view(cluster: Cluster, name: str) -> NodeView | None:
    view = cluster.node.views.get(name)
    if view is None:
        try:
            cluster.node.views = await cluster.node.index.nodes()
        except IndexDown:
            return None
        view = cluster.node.views.get(name)
    return view


async def _list_of(cluster: Cluster, view: NodeView, user: str, path: str) -> bytes:
    """``view``'s list at ``path`` (a JSON array, its items marked by that node), or what it
    saved."""
    lost = view.lost(_now(), cluster.node.lost_after)
    if view.up:
        try:
            return await cluster.relay.get_bytes(view.url, user, path)
        except NodeUnreachable:
            pass
    try:
        saved = await cluster.node.index.saved_list(view.name, user, SAVED_AS.get(path, path))
    except IndexDown:
        return b"[]"
    for item in saved:
        if isinstance(item, dict):
            item["node"] = view.name
            item["node_reachable"] = False
            if lost:
                if "status" in item:
                    item["status"] = "closed"
                item["closed_reason"] = "node_lost"
    return json.dumps(saved).encode()


def _now() -> float:
    return time.time()


# --- who asks -----------------------------------------------------------------------------


def _user(conn: HTTPConnection) -> str | None:
    auth: Authenticator = conn.app.state.authenticator
    if conn.scope["type"] == "websocket":
        try:
            check_origin(conn, conn.app.state.settings.allowed_origins)
        except HearthError:
            return None  # refused by the route, as on one node
    return auth.user_for(token_of(conn))


def _relayed_user(conn: HTTPConnection, cluster: Cluster) -> str | None:
    return cluster.signer.verify(
        conn.headers[HEADER], conn.scope.get("method", "GET"), local_path(conn.scope)
    )


# --- answers ------------------------------------------------------------------------------


# lists whose items are flat objects written with "id" first (terminals, connections)
_FLAT: tuple[Kind, ...] = ("t", "c")


def _marked(body: bytes, node: str) -> bytes | None:
    """A flat list marked without parsing it: ``{"id":`` opens each item and nothing else (in a
    JSON string its quotes would be escaped)."""
    stripped = body.strip()
    if not (stripped.startswith(b"[") and stripped.endswith(b"]")):
        return None
    return stripped.replace(b'{"id":', b'{"node":' + json.dumps(node).encode() + b',"id":')


def _annotated(body: bytes, target: Target, node: str) -> bytes | None:
    """The JSON answer with ``"node"`` on the session (or on each listed one); None if it is not
    an answer about sessions (a file's listing, a history)."""
    if target.role == "list" and target.kind in _FLAT:
        return _marked(body, node)
    try:
        data = json.loads(body)
    except ValueError:
        return None
    field = ID_FIELDS[target.path]
    if target.role == "list" and isinstance(data, list):
        for item in data:
            if isinstance(item, dict):
                item.setdefault("node", node)
        return json.dumps(data).encode()
    if isinstance(data, dict) and field is not None and field in data:
        if target.role == "one" and data[field] != target.id:
            return None
        data.setdefault("node", node)
        return json.dumps(data).encode()
    return None


def _may_create(scope: Scope) -> bool:
    """A terminal websocket that makes its session if it is missing (not ``reconnect`` or, on
    the legacy path, ``resume``)."""
    query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
    return not any(query.get(flag, "").lower() in ("true", "1") for flag in ("reconnect", "resume"))


async def _unavailable(
    cluster: Cluster, scope: Scope, receive: Receive, send: Send, owner: str, view: NodeView | None
) -> None:
    lost = view is not None and view.lost(_now(), cluster.node.lost_after)
    if lost:
        detail = (
            f"The node {owner!r} holding this session has been gone for longer than "
            "node_lost_timeout: the session is lost."
        )
        status = 404
    else:
        detail = f"The node {owner!r} holding this session can't be reached; retry shortly."
        status = 503
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send(
            {
                "type": "websocket.close",
                "code": 1013 if status == 503 else 4404,
                "reason": detail[:120],
            }
        )
        return
    await _read_body(receive)  # what the client sent is not sent on
    extra = [(b"retry-after", cluster.retry_after.encode())] if status == 503 else []
    await _json_answer(send, status, {"detail": detail}, extra)


async def _json_answer(
    send: Send, status: int, data: Any, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(data).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await _replay(send, status, headers + (extra or []), body)


async def _replay(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _is_json(start: Message) -> bool:
    for key, value in start.get("headers", []):
        if key.lower() == b"content-type":
            return bool(value.split(b";")[0].strip().lower() == b"application/json")
    return False


class _Rewriting:
    """A ``send`` that holds an answer ``held`` picks (by its start) and passes it on as
    ``rewrite`` makes it (``status`` and ``extra`` headers replacing its own, if given); any
    other answer goes through as it comes."""

    def __init__(
        self,
        send: Send,
        held: Any,
        rewrite: Any,
        status: int | None = None,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self._send, self._held, self._rewrite = send, held, rewrite
        self._status, self._extra = status, extra or []
        self._start: Message | None = None
        self._chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start" and self._held(message):
            self._start = message
            return
        if self._start is None or message["type"] != "http.response.body":
            return await self._send(message)
        self._chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        status = self._start["status"]
        body = await self._rewrite(status, b"".join(self._chunks))
        headers = [
            (k, v) for k, v in self._start.get("headers", []) if k.lower() != b"content-length"
        ]
        if self._extra:
            headers = [(k, v) for k, v in headers if k.lower() != b"content-type"]
            headers.append((b"content-type", b"application/json"))
        headers += [*self._extra, (b"content-length", str(len(body)).encode())]
        await _replay(self._send, self._status or status, headers, body)


async def _capture(
    app: ASGIApp, scope: Scope, receive: Receive
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Run the routes, keeping their answer (a list: small JSON)."""
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def keep(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, keep)
    return start.get("status", 500), list(start.get("headers", [])), b"".join(chunks)


async def _status_of(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> int:
    status = 0

    async def watch(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    await app(scope, receive, watch)
    return status


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again
