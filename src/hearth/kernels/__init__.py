"""Kernel sessions: Jupyter kernels handed out from a warm pool and recycled to a clean slate.

Plain asyncio, no web framework: :class:`KernelService` is the whole interface the web tier uses.
"""

from hearth.kernels.outputs import Event, Outputs
from hearth.kernels.service import KernelService
from hearth.kernels.status import KernelStatus

__all__ = ["Event", "KernelService", "KernelStatus", "Outputs"]
