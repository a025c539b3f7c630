"""What the client hands back: typed answers of the REST API.

Terminal sessions, their history and screen come back as the wire models of
``hearth.protocol`` (``TerminalState``, ``HistoryEntry``, ``TerminalScreen``); kernel answers
are defined here. Every model ignores fields it does not know, so an older client keeps working
against a newer server.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hearth.protocol import HistoryEntry, TerminalScreen, TerminalState

__all__ = [
    "ExecutionResult",
    "HistoryEntry",
    "KernelFile",
    "KernelInfo",
    "PoolState",
    "TerminalScreen",
    "TerminalState",
    "WorkingFile",
]


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class KernelFile(_Answer):
    """A file downloaded into a kernel session when it was created (by URL)."""

    url: str
    path: str
    size: int | None = None


class KernelInfo(_Answer):
    """A kernel session as ``GET /api/v1/sessions/{id}`` shows it (SPEC §4.2)."""

    session_id: str
    status: str
    kernel_name: str
    working_dir: str
    files: list[KernelFile] = Field(default_factory=list)
    created_at: float | None = None
    last_activity: float | None = None
    from_pool: bool = False
    execution_count: int = 0
    closed_reason: str | None = None  # "host_lost": its kernel ended with the server (§8)


class WorkingFile(_Answer):
    """A file under a kernel session's working directory."""

    path: str
    size: int
    modified: float | None = None


class PoolState(_Answer):
    """The warm pool: how many kernels it aims for, has ready, is starting, lends out."""

    target: int
    ready: int
    starting: int
    active: int
    max_kernels: int


class ExecutionResult(_Answer):
    """The answer of one ``execute``.

    ``outputs`` are nbformat v4 outputs, keyed by ``output_type``: ``stream`` (``name``,
    ``text``), ``execute_result`` / ``display_data`` (``data``: a MIME bundle) and ``error``
    (``ename``, ``evalue``, ``traceback``). ``status`` is ``"error"`` when the code raised and
    ``"timeout"`` when it ran out of time (the kernel was then interrupted). ``restarted`` says
    the kernel died and was restarted: every variable of the session is gone.
    """

    status: Literal["ok", "error", "timeout"] | str
    outputs: list[dict[str, Any]] = Field(default_factory=list)
    execution_count: int | None = None
    duration_ms: float | None = None
    restarted: bool = False

    @property
    def text(self) -> str:
        """All stream text (stdout and stderr), in order: what a terminal would have shown."""
        return "".join(o.get("text", "") for o in self.outputs if o["output_type"] == "stream")

    @property
    def result(self) -> str | None:
        """The ``text/plain`` form of the value of the last expression, if there was one."""
        for o in self.outputs:
            if o["output_type"] == "execute_result":
                text: str | None = o.get("data", {}).get("text/plain")
                return text
        return None

    @property
    def error(self) -> dict[str, Any] | None:
        """The ``error`` output (``ename``, ``evalue``, ``traceback``) if the code raised."""
        for o in self.outputs:
            if o["output_type"] == "error":
                return o
        return None
