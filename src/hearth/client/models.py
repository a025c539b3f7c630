"""What the client hands back: typed answers of the REST API, the wire models themselves.

Terminal sessions, their history and screen are those of ``hearth.protocol``; kernel sessions,
files, the pool, execution answers and events are those of ``hearth.protocol.kernels``
(``KernelInfo`` is its ``KernelState``); saved connections are the ``ConnectionInfo`` of
``hearth.contract.connections``. Every model ignores fields it does not know, so an older client
keeps working against a newer server.

On many nodes (SPEC §12) the cluster adds to every session it answers about the ``node`` holding
it, ``node_reachable: false`` to a listed one whose node can't be reached now, and
``closed_reason: "node_lost"`` once that node is gone for good: not fields of the wire models
(the cluster's middleware adds them), so the client's own ``TerminalState`` and ``KernelInfo``
add them to those, ``node`` None on a single node.
"""

from __future__ import annotations

from pydantic import ConfigDict

from hearth import protocol as _protocol
from hearth.contract import connections as _contract
from hearth.protocol import HistoryEntry, TerminalScreen
from hearth.protocol.kernels import (
    ExecutionResult,
    KernelEvent,
    KernelFile,
    KernelState,
    PoolState,
    WorkingFile,
)

__all__ = [
    "ConnectionInfo",
    "ConnectionTest",
    "ExecutionResult",
    "HistoryEntry",
    "KernelEvent",
    "KernelFile",
    "KernelInfo",
    "PoolState",
    "TerminalScreen",
    "TerminalState",
    "WorkingFile",
]


class ConnectionTest(_contract.ConnectionTest):
    """What ``connections.test(id)`` found: the server's ``host_key`` and ``fingerprint``,
    ``host_key_matches`` (None: nothing pinned yet), ``authenticated`` (None: not tried, the
    key did not match) and ``detail`` (what failed)."""

    model_config = ConfigDict(extra="ignore")


class TerminalState(_protocol.TerminalState):
    """A terminal session as the REST API shows it (SPEC §3.1), with, on many nodes (SPEC §12),
    the ``node`` holding it (None on a single node) and whether that node can be reached now
    (``node_reachable``; False: what it showed last, ``closed_reason == "node_lost"`` once it is
    gone for good)."""

    node: str | None = None
    node_reachable: bool = True


class KernelInfo(KernelState):
    """A kernel session as ``GET /api/v1/sessions/{id}`` shows it (SPEC §4.2), with ``node``
    and ``node_reachable`` as ``TerminalState`` has them (SPEC §12)."""

    node: str | None = None
    node_reachable: bool = True


class ConnectionInfo(_contract.ConnectionInfo):
    """A saved connection as every answer of ``/api/v1/connections`` shows it (SPEC §11): its
    ``id``, ``name``, ``host``, ``port``, ``username``, ``auth`` (``"password"``,
    ``"private_key"`` or ``"none"``: which kind of secret is kept, never the secret),
    ``host_key`` (given, or pinned at the first connect; ``None`` until then), ``created_at``,
    ``updated_at``. The server's own model, which refuses fields it does not know, made to
    ignore them like every model here."""

    model_config = ConfigDict(extra="ignore")
