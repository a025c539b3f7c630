"""Kernel sessions: Jupyter kernels handed out from a warm pool and recycled to a clean slate.

Plain asyncio, no web framework: :class:`hearth.kernels.service.KernelService` is the whole
interface the session core uses (imported from its module: the web tier needs only the events).
"""

from hearth.kernels.status import KernelStatus
from hearth.protocol.outputs import ExecutionEvent, Outputs

__all__ = ["ExecutionEvent", "KernelStatus", "Outputs"]
