"""This node's part in the cluster (SPEC §12): it holds its lease, announces its headroom, and
keeps the index of its own sessions in Redis, written again whole when Redis lost it.

Everything here is the web tier's: the session host knows nothing of other nodes. A node whose
Redis is down keeps serving its own sessions; ``health()`` then says ``degraded``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hearth import __version__
from hearth.cluster.index import ClusterIndex, IndexDown, NodeNameTaken, NodeView
from hearth.cluster.paths import ID_FIELDS, Key, Kind, notebook_key
from hearth.config import Settings

__all__ = ["LISTS", "SAVED_AS", "Node", "NodeNameTaken", "headroom_of"]

log = logging.getLogger("hearth.cluster")

# the lists a node saves for each user, so that others can show them while it is down
LISTS: dict[str, Kind] = {
    "/api/v1/terminal/sessions": "t",  # the legacy path's list is the same (SAVED_AS)
    "/api/v1/sessions": "k",
    "/api/kernels": "k",
    "/api/sessions": "j",
    "/api/v1/connections": "c",
}
# a list answered at another path, saved once
SAVED_AS = {"/api/terminal/sessions": "/api/v1/terminal/sessions"}
# the lists whose items name the keys this node holds (the others repeat them)
_KEYED = ("/api/v1/terminal/sessions", "/api/v1/sessions", "/api/sessions", "/api/v1/connections")
SYNC_EVERY = 30.0  # seconds between full writes of this node's part, changes aside

ListCall = Callable[[str, str], Awaitable[list[Any]]]  # (user, path) → that list, from here
Headroom = Callable[[], Awaitable[dict[str, Any]]]


class Node:
    def __init__(
        self,
        settings: Settings,
        index: ClusterIndex,
        users: list[str],
        list_here: ListCall,
        headroom: Headroom,
    ) -> None:
        self.name = settings.node_name
        self.url = (settings.advertise_url or _default_url(settings)).rstrip("/")
        self.lease_s = settings.node_lease_s
        self.lost_after = settings.node_lost_timeout
        self.index = index
        self.instance = _instance_id(settings.data_dir.expanduser())
        self._users = users
        self._list_here = list_here
        self._headroom = headroom
        self.here: set[Key] = set()  # what this node holds, as last written to the index
        self.views: dict[str, NodeView] = {}  # the nodes, as last read
        self.index_up = False
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- life ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Take the lease (refused if another node has the name), then write this node's part;
        a Redis that is down only makes the node start degraded."""
        try:
            await self._beat(first=True)
        except IndexDown as exc:
            log.warning(
                "cluster index unreachable; serving this node's sessions", extra={"error": str(exc)}
            )
        self._task = asyncio.create_task(self._run(), name="cluster node")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.index.release(self.name, self.instance)
        await self.index.aclose()

    def changed(self) -> None:
        """Something was created or deleted here: write the lists soon."""
        self._changed.set()

    async def _run(self) -> None:
        last_sync = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self.lease_s / 3)
            try:
                resync = await self._beat()
                if resync or self._changed.is_set() or time.monotonic() - last_sync > SYNC_EVERY:
                    self._changed.clear()
                    await self.sync()
                    last_sync = time.monotonic()
            except IndexDown as exc:
                if self.index_up:
                    log.warning("cluster index unreachable", extra={"error": str(exc)})
                self.index_up = False
            except NodeNameTaken:
                log.error("another node took this node's name; leaving the cluster index")
                self.index_up = False
            except Exception:  # a bug: logged, and the next beat tries again
                log.exception("cluster beat failed")

    async def _beat(self, first: bool = False) -> bool:
        """Renew the lease and announce the headroom; True when this node's part must be written
        again (Redis had no lease of it: first start, or Redis came back empty)."""
        was_up = self.index_up
        held = await self.index.hold_lease(self.name, self.instance, self.lease_s)
        view = NodeView(self.name, self.url, True, time.time(), await self._headroom(), __version__)
        await self.index.announce(view, self.instance)
        self.views = await self.index.nodes()
        self.index_up = True
        if not was_up and not first:
            log.warning("cluster index reachable again")
        if first:
            await self.sync()
        return not held or not was_up

    # --- this node's part ----------------------------------------------------------------

    async def sync(self) -> None:
        """Write every user's lists from here, and where each of their sessions is."""
        before = set(self.here)  # what is made while this runs is not in its lists
        lists: dict[tuple[str, str], dict[str, Any]] = {}
        keys: set[Key] = set()
        for user in self._users:
            for path, kind in LISTS.items():
                items = await self._list_here(user, path)
                lists[user, path] = _by_id(path, items)
                if path in _KEYED:
                    keys |= _keys_of(kind, user, path, items)
        await self.index.save_lists(self.name, lists)
        await self.index.place(sorted(keys, key=Key.field), self.name)
        # what the index has here that is not (ended, or a claim whose create failed), but
        # what was made while this ran
        stale = (await self.index.on(self.name)) - keys - (self.here - before)
        await self.index.forget(sorted(stale, key=Key.field), self.name)
        self.here = keys | (self.here - before)

    async def created(self, kind: Kind, user: str, path: str, answer: Any) -> None:
        """A create answered here: its keys are placed on this node now (a call through another
        node a moment later must find it)."""
        keys = _keys_of(kind, user, path, [answer])
        if kind == "j" and isinstance(answer, dict):  # a Jupyter session made its kernel here
            keys |= _keys_of("k", user, "/api/kernels", [answer.get("kernel") or {}])
        self.here |= keys
        with contextlib.suppress(IndexDown):
            await self.index.place(sorted(keys, key=Key.field), self.name)
            for id, item in _by_id(path, [answer]).items():  # listed while this node is down
                await self.index.save_item(self.name, user, path, id, item)
        self.changed()

    async def placed(self, key: Key) -> None:
        """``key`` is being made here (a terminal a websocket opens): in the index now."""
        if key not in self.here:
            self.here.add(key)
            with contextlib.suppress(IndexDown):
                await self.index.place([key], self.name)
            self.changed()

    async def deleted(self, key: Key) -> None:
        self.here.discard(key)
        paths = [path for path, kind in LISTS.items() if kind == key.kind]
        with contextlib.suppress(IndexDown):
            await self.index.forget([key], self.name)
            await self.index.drop_item(self.name, key.user, paths, key.id)
        self.changed()

    # --- what it tells -------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        now = time.time()
        nodes = [
            {
                "name": v.name,
                "url": v.url,
                "reachable": v.up,
                "lost": v.lost(now, self.lost_after),
                "version": v.version,
            }
            for v in sorted(self.views.values(), key=lambda v: v.name)
        ]
        return {
            "cluster": "ok" if self.index_up else "degraded",
            "node": self.name,
            "nodes": nodes,
        }


def _by_id(path: str, items: list[Any]) -> dict[str, Any]:
    field = ID_FIELDS[path]
    return {
        item[field]: item
        for item in items
        if isinstance(item, dict) and isinstance(item.get(field), str)
    }


def _keys_of(kind: Kind, user: str, path: str, items: list[Any]) -> set[Key]:
    field = ID_FIELDS[path]
    keys = set()
    for item in items:
        if isinstance(item, dict) and isinstance(item.get(field), str):
            if kind == "c" and item.get("shared"):
                continue  # the operator's connections are on every node
            keys.add(Key(kind, user, item[field]))
            if kind == "j" and isinstance(item.get("path"), str):
                keys.add(notebook_key(user, item["path"]))
    return keys


def headroom_of(metrics: Any, settings: Settings) -> dict[str, Any]:
    """What a node can still take, from its host's metrics."""
    terminals = sum(
        n for kind, status, n in metrics.sessions if kind == "terminal" and status != "closed"
    )
    pool = metrics.kernels.get("pool", {})
    return {
        "terminals_free": settings.max_terminals - terminals,
        "kernels_free": settings.max_kernels - int(pool.get("active", 0)),
        "pool_ready": int(pool.get("ready", 0)),
        "memory_available": _memory_available(),
    }


def _memory_available() -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def _default_url(settings: Settings) -> str:
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = socket.getfqdn()
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def _instance_id(data_dir: Path) -> str:
    """This data directory's node: the same after a restart, another for another directory."""
    path = data_dir / "node-id"
    with contextlib.suppress(OSError):
        text = path.read_text().strip()
        if text:
            return text
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(16)
    path.write_text(value + "\n")
    return value
