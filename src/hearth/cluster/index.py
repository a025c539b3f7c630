"""The cluster's index in Redis (SPEC §12): who the nodes are, where each session lives, and what
each node's lists showed last. Redis is an index, not the truth: every node's own session host
and store stay authoritative, and a node writes all of its part again when Redis comes back
empty (``Node`` in ``hearth.cluster.node``).

Keys (all under ``hearth:``):

- ``lease:<node>``: the node's instance id, expiring after ``node_lease_s`` unless renewed. Its
  presence is what "up" means. A second node with the name but another instance is refused.
- ``nodes``: hash node → JSON {url, instance, seen, headroom, version}; ``seen`` outlives the
  lease, so a node gone for good is told from one just restarting (``node_lost_timeout``).
- ``where``: hash "kind/user/id" → node, for every session, Jupyter session and connection.
- ``list:<node>:<user>:<path>``: hash id → the item that node's list at ``path`` answered
  for it, for listing a node's sessions (``node_reachable: false``) while it is down.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError

from hearth.cluster.paths import Key

__all__ = ["ClusterIndex", "IndexDown", "NodeNameTaken", "NodeView"]

PREFIX = "hearth:"
SENTINEL = "redis+sentinel://"


class IndexDown(Exception):
    """Redis did not answer."""


class NodeNameTaken(Exception):
    """Another node (another data directory) holds this node's name."""


@dataclass
class NodeView:
    name: str
    url: str
    up: bool  # its lease is held
    seen: float  # when it last renewed it (wall clock)
    headroom: dict[str, Any] = field(default_factory=dict)
    version: str = ""

    def lost(self, now: float, lost_after: float) -> bool:
        return not self.up and now - self.seen > lost_after


class ClusterIndex:
    def __init__(self, url: str, *, timeout: float = 1.0) -> None:
        options: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry_on_timeout": False,
            "decode_responses": True,
            "health_check_interval": 0,
        }
        self._redis = redis_for(url, options)

    async def aclose(self) -> None:
        await self._redis.aclose()

    # --- nodes ---------------------------------------------------------------------------

    async def hold_lease(self, node: str, instance: str, lease_s: float) -> bool:
        """Take or renew ``node``'s lease for ``instance``. False if Redis had no lease for it
        (first start, or Redis came back empty): the caller then writes its part again."""
        key = f"{PREFIX}lease:{node}"
        try:
            held = await self._redis.get(key)
            if held is not None and held != instance:
                raise NodeNameTaken(
                    f"Another node (another data directory) runs as {node!r} in this cluster: "
                    "give this one its own node_name."
                )
            await self._redis.set(key, instance, px=int(lease_s * 1000))
        except RedisError as exc:
            raise IndexDown(str(exc)) from None
        return held is not None

    async def announce(self, view: NodeView, instance: str) -> None:
        record = {
            "url": view.url,
            "instance": instance,
            "seen": view.seen,
            "headroom": view.headroom,
            "version": view.version,
        }
        await self._run(self._redis.hset(f"{PREFIX}nodes", view.name, json.dumps(record)))

    async def release(self, node: str, instance: str) -> None:
        """Give the lease up at a clean stop (the node is down at once, not after its lease)."""
        key = f"{PREFIX}lease:{node}"
        try:
            if await self._redis.get(key) == instance:
                await self._redis.delete(key)
        except RedisError:
            pass

    async def nodes(self) -> dict[str, NodeView]:
        records = await self._run(self._redis.hgetall(f"{PREFIX}nodes"))
        views: dict[str, NodeView] = {}
        for name, raw in records.items():
            record = json.loads(raw)
            views[name] = NodeView(
                name, record["url"], False, record["seen"], record["headroom"], record["version"]
            )
        if views:
            leases = await self._run(self._redis.mget([f"{PREFIX}lease:{n}" for n in views]))
            for view, lease in zip(views.values(), leases, strict=True):
                view.up = lease is not None
        return views

    # --- where sessions are --------------------------------------------------------------

    async def owner(self, key: Key) -> str | None:
        owner: str | None = await self._run(self._redis.hget(f"{PREFIX}where", key.field()))
        return owner

    async def claim(self, key: Key, node: str) -> str | None:
        """Record ``key`` on ``node`` unless it is somewhere already: None if it was recorded
        now, else the node it is on."""
        where = f"{PREFIX}where"
        if await self._run(self._redis.hsetnx(where, key.field(), node)):
            return None
        return await self.owner(key) or node

    async def place(self, keys: list[Key], node: str) -> None:
        if keys:
            mapping = {k.field(): node for k in keys}
            await self._run(self._redis.hset(f"{PREFIX}where", mapping=mapping))  # type: ignore[arg-type]

    async def on(self, node: str) -> set[Key]:
        """Every key recorded on ``node``."""
        found: set[Key] = set()
        try:
            async for field, owner in self._redis.hscan_iter(f"{PREFIX}where", count=1000):
                key = Key.parse(field) if owner == node else None
                if key is not None:
                    found.add(key)
        except (RedisError, OSError) as exc:
            raise IndexDown(str(exc)) from None
        return found

    async def forget(self, keys: list[Key], node: str) -> None:
        """Drop ``keys`` that are still recorded on ``node`` (not one placed elsewhere since)."""
        for key in keys:
            if await self.owner(key) == node:
                await self._run(self._redis.hdel(f"{PREFIX}where", key.field()))

    # --- what each node listed ------------------------------------------------------------

    async def save_lists(self, node: str, lists: dict[tuple[str, str], dict[str, Any]]) -> None:
        """Replace ``node``'s saved lists: (user, path) → {id: the item it answered}."""
        async with self._redis.pipeline(transaction=True) as pipe:
            for (user, path), items in lists.items():
                key = _list_key(node, user, path)
                pipe.delete(key)
                if items:
                    pipe.hset(key, mapping={i: json.dumps(v) for i, v in items.items()})
            await self._run(pipe.execute())

    async def save_item(self, node: str, user: str, path: str, id: str, item: Any) -> None:
        await self._run(self._redis.hset(_list_key(node, user, path), id, json.dumps(item)))

    async def drop_item(self, node: str, user: str, paths: list[str], id: str) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for path in paths:
                pipe.hdel(_list_key(node, user, path), id)
            await self._run(pipe.execute())

    async def saved_list(self, node: str, user: str, path: str) -> list[Any]:
        raw = await self._run(self._redis.hvals(_list_key(node, user, path)))
        items = [json.loads(r) for r in raw]
        return sorted(items, key=lambda i: i.get("created_at", 0) if isinstance(i, dict) else 0)

    async def _run(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except RedisError as exc:
            raise IndexDown(str(exc)) from None
        except OSError as exc:
            raise IndexDown(str(exc)) from None


def redis_for(url: str, options: dict[str, Any]) -> aioredis.Redis:
    """A client of ``redis://…`` (``rediss://`` with TLS, ``unix://``), or of the master that
    Sentinel names for ``redis+sentinel://[:password@]host:port[,host:port…]/service[/db]``:
    after a failover it follows the new master."""
    if not url.startswith(SENTINEL):
        return aioredis.Redis.from_url(url, **options)
    rest = url[len(SENTINEL) :]
    credentials, _, rest = rest.rpartition("@")
    hosts, _, path = rest.partition("/")
    service, _, db = path.partition("/")
    if not hosts or not service:
        raise ValueError(f"{SENTINEL}host:port[,host:port…]/service[/db]: got {url!r}")
    sentinels = []
    for host in hosts.split(","):
        name, _, port = host.rpartition(":")
        sentinels.append((name or host, int(port or 26379)))
    password = unquote(credentials.partition(":")[2]) if credentials else None
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        sentinels, sentinel_kwargs={"socket_timeout": options["socket_timeout"]}
    )
    master: aioredis.Redis = sentinel.master_for(
        service, db=int(db or 0), password=password, **options
    )
    return master


def _list_key(node: str, user: str, path: str) -> str:
    return f"{PREFIX}list:{node}:{user}:{path}"
