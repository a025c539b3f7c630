"""An owner for tasks that outlive the call that started them: it keeps them, and ``aclose``
cancels and awaits every one, so none is left running (or failing unseen) after its owner ends.

Python's TaskGroup owns tasks too, but ends them all when one fails and can only be awaited from
the task that entered it: these tasks are a connection's calls and streams, each handling its
own errors, started from protocol callbacks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["TaskSet"]

log = logging.getLogger("hearth.tasks")

T = TypeVar("T")


class TaskSet:
    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        if self.closed:
            coro.close()
            raise RuntimeError(f"{self.name} is closed: no task may start in it")
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("a task failed", extra={"owner": self.name}, exc_info=exc)

    def cancel(self) -> None:
        """No more tasks; those running are cancelled (``aclose`` awaits them)."""
        self.closed = True
        for task in self._tasks:
            task.cancel()

    async def join(self) -> None:
        """Wait for every task to end by itself (and those started meanwhile)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def aclose(self) -> None:
        self.cancel()
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
