"""The Python client of Hearth: ``Client`` (sync) and ``AsyncClient`` (asyncio), with the same
methods. It depends on ``hearth.protocol``, ``hearth.contract`` (the models both sides share) and
``hearth.errors`` only, never on the server.
"""

from hearth.client.aio import AsyncClient, AsyncKernelSession
from hearth.client.models import (
    ConnectionInfo,
    ConnectionTest,
    ExecutionResult,
    HistoryEntry,
    KernelFile,
    KernelInfo,
    PoolState,
    TerminalState,
    WorkingFile,
)
from hearth.client.sync import Client, KernelSession

__all__ = [
    "AsyncClient",
    "AsyncKernelSession",
    "Client",
    "ConnectionInfo",
    "ConnectionTest",
    "ExecutionResult",
    "HistoryEntry",
    "KernelFile",
    "KernelInfo",
    "KernelSession",
    "PoolState",
    "TerminalState",
    "WorkingFile",
]
