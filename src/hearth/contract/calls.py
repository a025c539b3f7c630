"""Every call a web tier may make of the session host, declared once.

A :class:`Call` names the call, types its arguments (a pydantic model, validated by the host) and
its answer (validated by the web tier), says whether the host runs it **ordered** (inline, in
arrival order, so keystrokes reach the PTY in the order they came: it must answer without
waiting) or **concurrently** (as a task of its own), and which stream, if any, it opens under its
id. The host's dispatch (:mod:`hearth.host.server`) and the web tier's stubs
(:mod:`hearth.server.host_client`) are both derived from :data:`CALLS`; the names of an argument
model's fields are the parameters of the method of :mod:`hearth.contract.api` it calls.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, field_serializer

from hearth.contract.connections import (
    ConnectionInfo,
    ConnectionPatch,
    ConnectionSpec,
    ConnectionTest,
)
from hearth.contract.terminals import TerminalInfo, TerminalSocket, TerminalSpec
from hearth.protocol import HistoryEntry
from hearth.protocol.kernels import KernelState

__all__ = ["CALLS", "Call", "Stream"]

A = TypeVar("A", bound=BaseModel)
R = TypeVar("R")


class Stream(enum.Enum):
    """What a call opens under its id, besides its answer."""

    NONE = "none"
    VIEWER = "viewer"  # terminal output (DATA frames at the session's offsets) and events
    EVENTS = "events"  # JSON events (an execution's), then the end
    BYTES = "bytes"  # a download's bytes, then the end
    UPLOAD = "upload"  # the caller's bytes in; the answer comes after their end
    DUPLEX = "duplex"  # bytes both ways (a Jupyter client's channels)


class Args(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class Call(Generic[A, R]):
    name: str  # "<api>.<method>": the method of hearth.contract.api it calls
    args: type[A]
    answer: TypeAdapter[R]
    ordered: bool
    stream: Stream = Stream.NONE
    # False: no reply when it succeeds, so the caller never waits (a keystroke); a failure goes
    # to the viewer the call names, as a Refused event in its stream
    answered: bool = True
    # an argument sent as the DATA frame right after the call, not in its JSON (terminal input)
    data_field: str | None = field(default=None)

    @property
    def api(self) -> str:
        return self.name.partition(".")[0]

    @property
    def method(self) -> str:
        return self.name.partition(".")[2]

    def dump_args(self, args: A) -> dict[str, Any]:
        exclude = {self.data_field} if self.data_field else None
        return args.model_dump(mode="json", exclude=exclude)

    def load_args(self, raw: dict[str, Any]) -> A:
        return self.args.model_validate(raw)

    def dump_answer(self, answer: R) -> Any:
        return self.answer.dump_python(answer, mode="json")

    def load_answer(self, raw: Any) -> R:
        return self.answer.validate_python(raw)


# --- arguments -----------------------------------------------------------------------------


class NoArgs(Args):
    pass


class UserArgs(Args):
    user: str


class TerminalArgs(Args):
    user: str
    id: str


class CreateTerminal(Args):
    user: str
    spec: TerminalSpec


class RenameTerminal(TerminalArgs):
    name: str


class WriteTerminal(TerminalArgs):
    data: bytes


class ResizeTerminal(TerminalArgs):
    rows: int
    cols: int
    by: int | None = None


class TerminalHistory(TerminalArgs):
    since: int = 0
    limit: int | None = None


class AttachTerminal(TerminalArgs):
    since: int | None = None
    size: tuple[int, int] | None = None


class ViewerInput(Args):
    stream: int  # the viewer's: the id of the call that attached it
    data: bytes


class ViewerResize(Args):
    stream: int
    rows: int
    cols: int


class AttachScreen(TerminalArgs):
    size: tuple[int, int] | None = None


class HandOverTerminal(TerminalArgs):
    """A terminal websocket handed to the host before its handshake: its descriptor travels
    apart (see :mod:`hearth.host.handover`), under ``ticket``."""

    ticket: int
    request: str  # the HTTP request that opened it, as latin-1 text
    socket: TerminalSocket
    heartbeat: float  # seconds between pings


class CreateConnection(UserArgs):
    spec: ConnectionSpec


class ConnectionArgs(UserArgs):
    id: str


class ChangeConnection(ConnectionArgs):
    patch: ConnectionPatch

    @field_serializer("patch")
    def _what_is_set(self, patch: ConnectionPatch) -> dict[str, Any]:
        """Only the fields given: a field left out is unchanged, one sent as null is cleared."""
        return patch.model_dump(mode="json", exclude_unset=True)


class CreateKernel(Args):
    user: str
    session_id: str | None = None
    files: list[dict[str, Any]] | None = None
    kernel_name: str | None = None


class KernelArgs(Args):
    user: str
    session_id: str


class Execute(KernelArgs):
    code: str
    timeout: float | None = None


class KernelFile(KernelArgs):
    path: str


class KernelChannels(KernelArgs):
    client_session: str | None = None


class Annotate(KernelArgs):
    jupyter: dict[str, str] | None


class KernelspecFile(Args):
    name: str
    path: str


# --- answers -------------------------------------------------------------------------------


class Answer(BaseModel):
    model_config = ConfigDict(frozen=True)


class Attached(Answer):
    """Where a new viewer starts, and the session as it was then (a reattach is one call)."""

    viewer: int
    replay_from: int
    replay_bytes: int
    missed_bytes: int
    session: TerminalInfo
    screen: dict[str, Any] | None = None  # the screen it starts from (attach_screen)


class FileHead(Answer):
    name: str
    size: int


class HostMetrics(Answer):
    sessions: list[tuple[str, str, int]]  # (kind, state, count)
    kernels: dict[str, Any]
    buffered_bytes: int
    screen_model: dict[str, Any] | None
    # of the websockets handed to the host (by kind: "terminal")
    websockets_open: dict[str, int] = {}
    bytes_streamed: dict[str, int] = {}


# --- the table -----------------------------------------------------------------------------

_NONE: TypeAdapter[None] = TypeAdapter(None)
_INFO: TypeAdapter[TerminalInfo] = TypeAdapter(TerminalInfo)
_STATE: TypeAdapter[KernelState] = TypeAdapter(KernelState)
_OBJECT: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])


def _answer(tp: type[R] | Any) -> TypeAdapter[Any]:
    return TypeAdapter(tp)


# terminals
TERMINALS_CREATE = Call("terminals.create", CreateTerminal, _INFO, ordered=False)
TERMINALS_ENSURE = Call("terminals.ensure", CreateTerminal, _INFO, ordered=False)
TERMINALS_GET = Call("terminals.get", TerminalArgs, _INFO, ordered=True)
TERMINALS_LIST: Call[UserArgs, list[TerminalInfo]] = Call(
    "terminals.list_sessions", UserArgs, _answer(list[TerminalInfo]), ordered=True
)
TERMINALS_LIST_JSON: Call[UserArgs, FileHead] = Call(
    "terminals.list_json", UserArgs, _answer(FileHead), ordered=True, stream=Stream.BYTES
)
TERMINALS_TOUCH = Call("terminals.touch", TerminalArgs, _INFO, ordered=True)
TERMINALS_RENAME = Call("terminals.rename", RenameTerminal, _INFO, ordered=True)
TERMINALS_CLOSE = Call("terminals.close", TerminalArgs, _NONE, ordered=False)
TERMINALS_CLEANUP: Call[UserArgs, list[str]] = Call(
    "terminals.cleanup", UserArgs, _answer(list[str]), ordered=False
)
TERMINALS_WRITE = Call("terminals.write", WriteTerminal, _NONE, ordered=True, data_field="data")
TERMINALS_RESIZE = Call("terminals.resize", ResizeTerminal, _NONE, ordered=True)
TERMINALS_HISTORY: Call[TerminalHistory, list[HistoryEntry]] = Call(
    "terminals.history", TerminalHistory, _answer(list[HistoryEntry]), ordered=True
)
TERMINALS_RECORDING: Call[TerminalArgs, str] = Call(
    "terminals.recording", TerminalArgs, _answer(str), ordered=True
)
TERMINALS_ATTACH: Call[AttachTerminal, Attached] = Call(
    "terminals.attach", AttachTerminal, _answer(Attached), ordered=True, stream=Stream.VIEWER
)
TERMINALS_ATTACH_SCREEN: Call[AttachScreen, Attached] = Call(
    "terminals.attach_screen", AttachScreen, _answer(Attached), ordered=False,
    stream=Stream.VIEWER,
)  # fmt: skip
# a viewer's own input and window: ordered with the viewer's other calls, unanswered
VIEWER_WRITE = Call(
    "viewer.write", ViewerInput, _NONE, ordered=True, answered=False, data_field="data"
)
VIEWER_RESIZE = Call("viewer.resize", ViewerResize, _NONE, ordered=True, answered=False)
TERMINALS_SCREEN = Call("terminals.screen", TerminalArgs, _OBJECT, ordered=False)

# kernels
KERNELS_CREATE: Call[CreateKernel, tuple[KernelState, bool]] = Call(
    "kernels.create", CreateKernel, _answer(tuple[KernelState, bool]), ordered=False
)
KERNELS_GET = Call("kernels.get", KernelArgs, _STATE, ordered=True)
KERNELS_LIST: Call[UserArgs, list[KernelState]] = Call(
    "kernels.sessions", UserArgs, _answer(list[KernelState]), ordered=True
)
KERNELS_TERMINATE = Call("kernels.terminate", KernelArgs, _NONE, ordered=True)
KERNELS_EXECUTE = Call("kernels.execute", Execute, _NONE, ordered=True, stream=Stream.EVENTS)
KERNELS_INTERRUPT = Call("kernels.interrupt", KernelArgs, _STATE, ordered=False)
KERNELS_RESTART = Call("kernels.restart", KernelArgs, _STATE, ordered=False)
KERNELS_LIST_FILES: Call[KernelArgs, list[dict[str, Any]]] = Call(
    "kernels.list_files", KernelArgs, _answer(list[dict[str, Any]]), ordered=False
)
KERNELS_OPEN_FILE: Call[KernelFile, FileHead] = Call(
    "kernels.open_file", KernelFile, _answer(FileHead), ordered=True, stream=Stream.BYTES
)
KERNELS_WRITE_FILE = Call(
    "kernels.write_file", KernelFile, _OBJECT, ordered=False, stream=Stream.UPLOAD
)
KERNELS_CHANNELS = Call(
    "kernels.channels", KernelChannels, _NONE, ordered=True, stream=Stream.DUPLEX
)
KERNELS_ANNOTATE = Call("kernels.annotate", Annotate, _STATE, ordered=True)
KERNELS_KERNELSPECS = Call("kernels.kernelspecs", NoArgs, _OBJECT, ordered=True)
KERNELS_OPEN_KERNELSPEC_FILE: Call[KernelspecFile, FileHead] = Call(
    "kernels.open_kernelspec_file", KernelspecFile, _answer(FileHead), ordered=True,
    stream=Stream.BYTES,
)  # fmt: skip
KERNELS_POOL: Call[NoArgs, dict[str, int]] = Call(
    "kernels.pool_state", NoArgs, _answer(dict[str, int]), ordered=True
)

# saved connections (SPEC §11): their secrets go in, never out
_CONNECTION: TypeAdapter[ConnectionInfo] = TypeAdapter(ConnectionInfo)
CONNECTIONS_CREATE = Call("connections.create", CreateConnection, _CONNECTION, ordered=True)
CONNECTIONS_LIST: Call[UserArgs, list[ConnectionInfo]] = Call(
    "connections.list_connections", UserArgs, _answer(list[ConnectionInfo]), ordered=True
)
CONNECTIONS_GET = Call("connections.get", ConnectionArgs, _CONNECTION, ordered=True)
CONNECTIONS_CHANGE = Call("connections.change", ChangeConnection, _CONNECTION, ordered=True)
CONNECTIONS_DELETE = Call("connections.delete", ConnectionArgs, _NONE, ordered=True)
CONNECTIONS_TEST: Call[ConnectionArgs, ConnectionTest] = Call(
    "connections.test", ConnectionArgs, _answer(ConnectionTest), ordered=False
)

# websockets handed to the host: the stream ends when the socket does
SOCKETS_TERMINAL = Call(
    "sockets.terminal", HandOverTerminal, _NONE, ordered=False, stream=Stream.EVENTS
)

# the host itself
HOST_METRICS: Call[NoArgs, HostMetrics] = Call(
    "host.metrics", NoArgs, _answer(HostMetrics), ordered=True
)
HOST_SHUTDOWN = Call("host.shutdown", NoArgs, _NONE, ordered=False)

CALLS: dict[str, Call[Any, Any]] = {
    call.name: call
    for call in [v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, Call)]
}
