"""The wire of kernel sessions (pure, shared by the session core, the server and the client):
REST models (SPEC §4.2 and the Jupyter API's of §10), execution events, and the frames of
``WS /api/v1/sessions/{id}/ws``.

Execution events (``POST …/execute?stream=true``, the websocket): each output as
``{"type": <output_type>, …its fields}``, then ``{"type": "done", …}``. They are typed dicts:
the session core makes one per kernel message, so they cost no more than the dicts they are.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NotRequired, TypedDict

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from hearth.protocol import (
    KERNEL_NAME,
    SESSION_ID,
    DownloadUrl,
    FrameError,
    ProcessText,
    UnicodeText,
)

__all__ = [
    "DoneEvent",
    "ErrorEvent",
    "ExecuteFrame",
    "ExecutionResult",
    "FileSpec",
    "InterruptFrame",
    "JupyterKernel",
    "JupyterName",
    "JupyterSession",
    "KernelChoice",
    "KernelCreate",
    "KernelEvent",
    "KernelExecute",
    "KernelFile",
    "KernelPingFrame",
    "KernelStart",
    "KernelState",
    "OutputEvent",
    "PoolState",
    "SessionChange",
    "SessionStart",
    "WorkingFile",
    "decode_kernel_frame",
]


class _Answer(BaseModel):
    # an older client keeps working against a newer server: unknown fields are ignored
    model_config = ConfigDict(extra="ignore", frozen=True)


# --- kernel sessions (SPEC §4.2) -------------------------------------------------------------


class FileSpec(BaseModel):
    url: DownloadUrl = Field(description="http(s) URL to download")
    path: ProcessText | None = Field(
        None, description="where it lands, relative to the working dir"
    )


class KernelCreate(BaseModel):
    session_id: str | None = Field(None, pattern=SESSION_ID)
    files: list[FileSpec] = Field(default_factory=list)
    kernel_name: str | None = Field(None, pattern=KERNEL_NAME)


class KernelExecute(BaseModel):
    code: UnicodeText
    timeout: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="seconds; then the kernel is interrupted"
    )


class KernelFile(_Answer):
    """A file downloaded into a kernel session when it was created (by URL)."""

    url: str
    path: str
    size: int | None = None


class JupyterName(_Answer):
    """What makes a kernel session a Jupyter session (``/api/sessions``)."""

    id: str
    path: str
    name: str
    type: str


class KernelState(_Answer):
    """A kernel session as ``GET /api/v1/sessions/{id}`` shows it (SPEC §4.2)."""

    session_id: str
    status: str  # pooled, active, executing, idle, cleaning, dead (SPEC §4.1)
    kernel_name: str
    working_dir: str
    files: list[KernelFile] = Field(default_factory=list)
    created_at: float
    last_activity: float
    from_pool: bool = False
    execution_count: int = 0
    # Jupyter's view (SPEC §10): starting, idle, busy or dead, as its IOPub last said
    execution_state: str = "idle"
    connections: int = 0  # Jupyter clients on its channels
    jupyter: JupyterName | None = None
    # its kernel ended with the server (§8), or its node is gone for good (§12, set by the cluster)
    closed_reason: Literal["host_lost", "node_lost"] | None = None


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


# --- execution events ------------------------------------------------------------------------


class OutputEvent(TypedDict):
    """An output: ``type`` is its nbformat ``output_type`` (stream, execute_result,
    display_data, error, clear_output), with that output's fields."""

    type: str
    name: NotRequired[str]
    text: NotRequired[str]
    data: NotRequired[dict[str, Any]]
    metadata: NotRequired[dict[str, Any]]
    execution_count: NotRequired[int | None]
    ename: NotRequired[str]
    evalue: NotRequired[str]
    traceback: NotRequired[list[str]]
    wait: NotRequired[bool]


class ErrorEvent(TypedDict):
    type: Literal["error"]
    ename: str
    evalue: str
    traceback: list[str]


class DoneEvent(TypedDict):
    type: Literal["done"]
    status: str  # ok, error or timeout
    execution_count: int | None
    duration_ms: float
    restarted: bool


KernelEvent = OutputEvent | DoneEvent


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


# --- WS /api/v1/sessions/{id}/ws: client → server ----------------------------------------------


class _Frame(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    request_id: Any = None  # echoed on every frame that answers it


class ExecuteFrame(_Frame):
    type: Literal["execute"]
    code: UnicodeText
    timeout: float | None = Field(None, gt=0, allow_inf_nan=False, strict=True)  # not `true`


class InterruptFrame(_Frame):
    type: Literal["interrupt"]


class KernelPingFrame(_Frame):
    type: Literal["ping"]


_KernelFrame = Annotated[
    ExecuteFrame | InterruptFrame | KernelPingFrame, Field(discriminator="type")
]
_kernel_frame: TypeAdapter[ExecuteFrame | InterruptFrame | KernelPingFrame] = TypeAdapter(
    _KernelFrame
)
_KINDS = ("execute", "interrupt", "ping")


def decode_kernel_frame(text: str) -> ExecuteFrame | InterruptFrame | KernelPingFrame:
    """A client frame of the kernel websocket; ``FrameError`` says what to send instead (its
    ``request_id`` is kept on the error, to tag the answer)."""
    try:
        raw: Any = json.loads(text)
    except (ValueError, RecursionError):
        raise FrameError(
            'Frames are JSON objects, e.g. {"type": "execute", "code": "1+1"}.'
        ) from None
    if not isinstance(raw, dict):
        raise FrameError("Frames are JSON objects with a 'type'.")
    tag = raw.get("request_id")
    kind = raw.get("type")
    if kind not in _KINDS:
        error = FrameError(
            f"Unknown frame type {str(kind)[:40]!r}: use execute, interrupt or ping."
        )
        error.request_id = tag
        raise error
    try:
        return _kernel_frame.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "frame"
        error = FrameError(_frame_problem(kind, where, first["msg"], raw))
        error.request_id = tag
        raise error from None


def _frame_problem(kind: str, where: str, message: str, raw: dict[str, Any]) -> str:
    if where == "code":
        if isinstance(raw.get("code"), str):
            return "'code' has a lone surrogate, which has no UTF-8 form: send valid Unicode."
        return "An execute frame needs a 'code' string."
    if where == "timeout":
        return "'timeout' must be a positive number of seconds."
    return f"Bad {kind} frame: {where}: {message}."


# --- the Jupyter Server kernel API (SPEC §10) ------------------------------------------------


class KernelStart(BaseModel):
    """``POST /api/kernels``: Jupyter's body. A pooled kernel is already running, so ``env``
    and ``path`` (Jupyter Server sends them through a gateway) are not applied."""

    model_config = ConfigDict(extra="allow")

    name: str | None = Field(default=None, pattern=KERNEL_NAME)
    path: str | None = None
    env: dict[str, str] = Field(default_factory=dict)


class JupyterKernel(BaseModel):
    """A kernel as Jupyter Server shows it: a kernel session, under Jupyter's names."""

    id: str
    name: str
    last_activity: str  # the exact form Jupyter Server's gateway client parses
    execution_state: str
    connections: int

    @classmethod
    def of(cls, state: KernelState) -> JupyterKernel:
        at = datetime.fromtimestamp(state.last_activity, UTC)
        return cls(
            id=state.session_id,
            name=state.kernel_name,
            last_activity=at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            execution_state="dead" if state.status == "dead" else state.execution_state,
            connections=state.connections,
        )


class KernelChoice(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str | None = None
    name: str | None = Field(default=None, pattern=KERNEL_NAME)


class SessionStart(BaseModel):
    model_config = ConfigDict(extra="allow")

    path: str = Field(max_length=4096)
    type: str = Field(max_length=64)
    name: str | None = Field(default=None, max_length=4096)
    kernel: KernelChoice = Field(default_factory=lambda: KernelChoice())


class SessionChange(BaseModel):
    model_config = ConfigDict(extra="allow")

    path: str | None = Field(default=None, max_length=4096)
    type: str | None = Field(default=None, max_length=64)
    name: str | None = Field(default=None, max_length=4096)
    kernel: KernelChoice | None = None


class JupyterSession(BaseModel):
    """A session as Jupyter Server shows it (``notebook`` too, for a notebook)."""

    model_config = ConfigDict(extra="allow")

    id: str
    path: str
    name: str
    type: str
    kernel: JupyterKernel

    @classmethod
    def of(cls, state: KernelState) -> JupyterSession:
        named = state.jupyter
        assert named is not None
        extra = {"notebook": {"path": named.path, "name": named.name}}
        return cls(
            id=named.id,
            path=named.path,
            name=named.name,
            type=named.type,
            kernel=JupyterKernel.of(state),
            **(extra if named.type == "notebook" else {}),
        )
