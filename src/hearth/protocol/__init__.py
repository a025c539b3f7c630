"""The wire: REST models and websocket frames of terminal sessions (pure, shared by the server
and the client). Kernel sessions' are in ``hearth.protocol.kernels``, the Jupyter kernel
websocket's framing in ``hearth.protocol.jupyter``.

Terminal websocket frames (SPEC §3.4):
- output, server → client: binary, ``0x01`` + 8-byte big-endian offset + raw bytes;
- input, client → server: binary raw bytes, or text ``{"type": "input", "data": …}``;
- everything else: JSON text frames with a ``type``.
"""

from __future__ import annotations

import json
import struct
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)

__all__ = [
    "OUTPUT_FRAME",
    "ClientFrame",
    "FrameError",
    "TerminalCreate",
    "TerminalRename",
    "TerminalScreen",
    "TerminalState",
    "decode_client_text",
    "decode_output",
    "encode_output",
]

OUTPUT_FRAME = 0x01
_HEADER = struct.Struct(">BQ")
SESSION_ID = r"^[A-Za-z0-9_-]{1,64}$"
KERNEL_NAME = r"^[A-Za-z0-9._-]{1,128}$"  # Jupyter's kernelspec names


class FrameError(ValueError):
    """A client frame that can't be understood; the message says what is expected."""

    request_id: Any = None  # of the frame, when it had one: the answer is tagged with it


def encode_output(offset: int, data: bytes) -> bytes:
    return _HEADER.pack(OUTPUT_FRAME, offset) + data


def decode_output(frame: bytes) -> tuple[int, bytes]:
    if len(frame) < _HEADER.size or frame[0] != OUTPUT_FRAME:
        raise FrameError("not an output frame: expected 0x01, an 8-byte offset, then data")
    _, offset = _HEADER.unpack_from(frame)
    return offset, frame[_HEADER.size :]


# --- text that must reach a process --------------------------------------------------------
# JSON can carry what a process can't take: a NUL ends a C string, and a lone surrogate
# ("\ud800") has no UTF-8 form. Refused at the door, they are a 422 naming the field.


def _problem(text: str) -> str | None:
    """What makes ``text`` unfit for a process (an argument, a path, the environment)."""
    if "\0" in text:
        return "contains a NUL character, which a process can't take; remove it"
    return _unicode_problem(text)


def _unicode_problem(text: str) -> str | None:
    try:
        text.encode()
    except UnicodeEncodeError:
        return "contains a lone surrogate, which has no UTF-8 form; send valid Unicode"
    return None


def _unicode(text: str) -> str:
    if problem := _unicode_problem(text):
        raise ValueError(problem)
    return text


def _process_text(text: str) -> str:
    if problem := _problem(text):
        raise ValueError(problem)
    return text


def _env_name(name: str) -> str:
    # The error's location can't show a bad name (it may not be valid Unicode): the message does.
    if not name:
        raise ValueError("an environment variable needs a name; this one is empty")
    problem = "contains '=', which ends a name" if "=" in name else _problem(name)
    if problem:
        raise ValueError(f"the environment variable name {name!r} {problem}")
    return name


def _download_url(url: str) -> str:
    _process_text(url)
    if any(c.isspace() or not c.isprintable() for c in url):
        raise ValueError("a URL can't contain spaces or control characters; percent-encode them")
    parts = urlsplit(url)  # ValueError for a malformed one, e.g. "http://[::1"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("only http(s) URLs with a host can be downloaded")
    _ = parts.port  # ValueError for a port that is not one
    return url


UnicodeText = Annotated[str, AfterValidator(_unicode)]
ProcessText = Annotated[str, AfterValidator(_process_text)]
EnvName = Annotated[str, AfterValidator(_env_name)]
DownloadUrl = Annotated[str, AfterValidator(_download_url)]


# --- client → server text frames ---------------------------------------------------------


class _Frame(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class InputFrame(_Frame):
    type: Literal["input"]
    data: UnicodeText


class ResizeFrame(_Frame):
    type: Literal["resize"]
    # Strict: ``true`` or ``"24"`` is a client bug, not a size.
    rows: int = Field(ge=1, le=1000, strict=True)
    cols: int = Field(ge=1, le=1000, strict=True)


class PingFrame(_Frame):
    type: Literal["ping"]


ClientFrame = Annotated[InputFrame | ResizeFrame | PingFrame, Field(discriminator="type")]
_client_frame: TypeAdapter[InputFrame | ResizeFrame | PingFrame] = TypeAdapter(ClientFrame)
_KNOWN = ("input", "resize", "ping")


def decode_client_text(text: str) -> InputFrame | ResizeFrame | PingFrame:
    """Parse a client text frame; raises ``FrameError`` with what to send instead."""
    try:
        raw: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FrameError(f"malformed JSON ({exc.msg}); send a JSON object with a 'type'") from None
    except (ValueError, RecursionError):  # an int of more than 4300 digits; absurd nesting
        raise FrameError(
            "malformed JSON (too deep or too large); send a small JSON object"
        ) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise FrameError("a text frame is a JSON object with a string 'type'")
    if raw["type"] not in _KNOWN:
        raise FrameError(f"unknown frame type {raw['type']!r}; expected one of {', '.join(_KNOWN)}")
    try:
        return _client_frame.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "frame"
        raise FrameError(f"bad {raw['type']} frame: {where}: {first['msg']}") from None


# --- REST models -------------------------------------------------------------------------


class TerminalCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, pattern=SESSION_ID)
    name: str | None = Field(None, min_length=1, max_length=200)
    command: list[Annotated[ProcessText, Field(min_length=1)]] | None = Field(None, min_length=1)
    cwd: ProcessText | None = None
    env: dict[EnvName, ProcessText] = Field(default_factory=dict)
    rows: int = Field(24, ge=1, le=1000)
    cols: int = Field(80, ge=1, le=1000)
    connection_id: str | None = Field(
        None, pattern=SESSION_ID, description="open it on this saved connection's machine"
    )


class TerminalRename(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)


class TerminalState(BaseModel):
    """A terminal session as the API shows it (SPEC §3.1)."""

    id: str
    name: str
    user: str
    protocol: Literal["local", "ssh"]
    status: Literal["active", "disconnected", "closed"]
    alive: bool
    exit_code: int | None
    created_at: float
    last_activity: float
    expires_at: float | None
    rows: int
    cols: int
    viewers: int
    output_start: int
    output_end: int
    command: list[str] = Field(default_factory=list)
    closed_reason: Literal["host_lost", "node_lost"] | None = None  # node_lost: §12
    connection_id: str | None = None  # the saved connection it runs on (protocol "ssh")
    # why it ended, beyond its exit status: "connection lost: <why>", a memory limit
    exit_reason: str | None = None


class TerminalStatusAnswer(BaseModel):
    exists: bool
    alive: bool
    last_activity: float | None


class ResumeAnswer(BaseModel):
    session: TerminalState
    ws_url: str


class HistoryEntry(BaseModel):
    seq: int
    type: Literal["input", "output", "system", "error"]
    data: str
    offset: int
    timestamp: float


class CursorPosition(BaseModel):
    row: int
    col: int


class TerminalScreen(BaseModel):
    """A terminal's screen (SPEC §9): ``data`` redraws it, with its modes and scrollback, on a
    blank terminal of ``rows`` × ``cols``; live output goes on from ``offset``."""

    offset: int
    rows: int
    cols: int
    cursor: CursorPosition
    alternate: bool
    lines: list[str]  # the visible rows as plain text, trailing blanks cut (as capture-pane)
    data: str


class CleanupAnswer(BaseModel):
    closed: list[str]
