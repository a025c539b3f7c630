"""The event loop Hearth's processes run on: uvloop where it is installed (it comes with
uvicorn's standard extras), else asyncio's own.

Measured on the project's 2-core machine: a round trip between two processes over a Unix socket
takes 120 µs with asyncio's loop on both sides and 38 µs with uvloop (17 µs blocking); the web
server and the session host cross that socket on every keystroke and every output frame.
"""

from __future__ import annotations

import asyncio
import io
import logging
import signal
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["loop_factory", "run"]

log = logging.getLogger("hearth.loops")

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """``main`` on Hearth's loop. ``kill -USR1`` the process to have it log where each of its
    tasks waits (what a hang is made of)."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        if threading.current_thread() is threading.main_thread():  # only it gets signals
            runner.get_loop().add_signal_handler(signal.SIGUSR1, dump_tasks)
        return runner.run(main)


def dump_tasks() -> None:
    out = io.StringIO()
    tasks = asyncio.all_tasks()
    for task in tasks:
        task.print_stack(limit=8, file=out)
    log.warning("tasks", extra={"count": len(tasks), "stacks": out.getvalue()})
