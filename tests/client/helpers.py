"""Shared bits of the client tests: the quiet shell and polling with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

SHELL = ["/bin/bash", "--norc", "--noprofile"]
T = TypeVar("T")


def poll(predicate: Callable[[], T], timeout: float = 15.0, what: str = "condition") -> T:
    """``predicate()`` once it is truthy; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.02)
