"""Joining the cluster and leaving it: this node's lease, its index, its relay."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from hearth.cluster.index import ClusterIndex, NodeNameTaken
from hearth.cluster.middleware import Cluster
from hearth.cluster.node import Node, headroom_of
from hearth.cluster.relay import Relay
from hearth.cluster.signing import HEADER, Signer
from hearth.config import Settings
from hearth.contract.calls import HostMetrics

__all__ = ["NodeNameTaken", "join", "leave"]


async def join(
    app: Any, settings: Settings, metrics: Callable[[], Awaitable[HostMetrics]], users: list[str]
) -> Cluster:
    """Take this node's lease and write its part of the index (refused with ``NodeNameTaken``
    if another node has its name). ``app`` answers this node's own lists, asked as each user."""
    assert settings.cluster_redis_url is not None and settings.cluster_secret is not None
    signer = Signer(settings.cluster_secret, settings.node_name)
    here = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://node")

    async def list_here(user: str, path: str) -> list[Any]:
        answer = await here.get(path, headers={HEADER: signer.sign(user, "GET", path)})
        items = answer.json() if answer.status_code == 200 else []
        return items if isinstance(items, list) else []

    async def headroom() -> dict[str, Any]:
        return headroom_of(await metrics(), settings)

    index = ClusterIndex(settings.cluster_redis_url)
    node = Node(settings, index, users, list_here, headroom)
    cluster = Cluster(node, Relay(signer), signer)
    app.state.cluster = cluster  # the node's own list calls are relayed ones: checked by it
    try:
        await node.start()
    except BaseException:
        app.state.cluster = None
        await cluster.relay.aclose()
        await index.aclose()
        await here.aclose()
        raise
    cluster.closers.append(here.aclose)
    return cluster


async def leave(cluster: Cluster) -> None:
    await cluster.node.stop()
    await cluster.relay.aclose()
    for close in cluster.closers:
        await close()
