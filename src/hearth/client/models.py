"""What the client hands back: typed answers of the REST API, the wire models themselves.

Terminal sessions, their history and screen are those of ``hearth.protocol``; kernel sessions,
files, the pool, execution answers and events are those of ``hearth.protocol.kernels``
(``KernelInfo`` is its ``KernelState``). Every model ignores fields it does not know, so an
older client keeps working against a newer server.
"""

from __future__ import annotations

from hearth.protocol import HistoryEntry, TerminalScreen, TerminalState
from hearth.protocol.kernels import (
    ExecutionResult,
    KernelEvent,
    KernelFile,
    KernelState,
    PoolState,
    WorkingFile,
)

__all__ = [
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

KernelInfo = KernelState  # a kernel session as GET /api/v1/sessions/{id} shows it (SPEC §4.2)
