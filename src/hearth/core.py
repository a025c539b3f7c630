"""The session core: everything that holds sessions, behind the calls the web tier makes.

It owns the store, the terminal manager and the kernel service (and through them the PTYs,
buffers, logs, kernels and the pool). The session host (``hearth.host``) runs one and serves it
on its socket; nothing else reaches sessions.
"""

from __future__ import annotations

import contextlib
from typing import Self

from hearth.config import Settings
from hearth.connections.sealed import Sealer
from hearth.connections.service import Connections
from hearth.kernels.service import KernelService
from hearth.sandbox import Sandbox
from hearth.store import SqliteStore
from hearth.terminals.manager import TerminalManager

__all__ = ["SessionCore"]


class SessionCore:
    terminals: TerminalManager
    kernels: KernelService
    connections: Connections

    def __init__(self, settings: Settings, sandbox: Sandbox) -> None:
        self.settings = settings
        self.sandbox = sandbox
        self.store_path = settings.data_dir.expanduser() / "hearth.sqlite3"
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            store = SqliteStore(self.store_path)
            stack.callback(store.close)
            sealer = Sealer.for_data_dir(self.store_path.parent, self.settings.connection_key)
            s = self.settings
            self.connections = Connections(
                store, sealer, s.connection_allowed_hosts, operator=s.connections
            )
            manager = TerminalManager(
                self.settings, store=store, sandbox=self.sandbox, connections=self.connections
            )
            self.terminals = await stack.enter_async_context(manager)
            self.kernels = await stack.enter_async_context(
                KernelService(self.settings, store=store, sandbox=self.sandbox)
            )
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    async def end_all(self) -> None:
        """Every session ends as if deleted: what ``hearth shutdown`` does before the host
        stops."""
        self.kernels.end_all()
        await self.terminals.end_all()
