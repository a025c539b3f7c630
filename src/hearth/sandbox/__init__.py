"""Sessions as sandboxes (SPEC §7): a pure launch description, the cgroups that hold its limits,
and the sandbox in force, which prepares each session process's launch."""

from hearth.sandbox.launch import Bind, Launch, Limits, command
from hearth.sandbox.sandbox import (
    UNSANDBOXED_USERS,
    Prepared,
    Sandbox,
    SandboxUnavailable,
    open_sandbox,
)

__all__ = [
    "UNSANDBOXED_USERS",
    "Bind",
    "Launch",
    "Limits",
    "Prepared",
    "Sandbox",
    "SandboxUnavailable",
    "command",
    "open_sandbox",
]
