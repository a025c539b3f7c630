"""The session host's wire: length-prefixed frames on a Unix socket (SPEC §8).

Every frame is a 5-byte header — body length (u32, big-endian) and kind — then the body:
- ``JSON``: one JSON object; ``op`` says what it is (``hello``, ``call``, ``reply``, ``event``,
  ``end``, ``ack``, ``close``);
- ``DATA``: bytes of a stream — stream id (u32), offset (u64), then the bytes. For a terminal
  viewer the offset is the byte's place in the session's output; for other streams the count of
  bytes sent before.

Pure: building and reading frames, and turning the values that cross (errors, terminal events
and snapshots) into plain data and back.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from hearth import errors
from hearth.contract.terminals import (
    Event,
    Exited,
    Missed,
    Refused,
    ReplayDone,
    Resized,
    ViewerCount,
)

__all__ = [
    "DATA",
    "HEADER",
    "JSON",
    "MAX_FRAME",
    "PROTOCOL",
    "HostError",
    "ProtocolError",
    "data_frame",
    "error_from_wire",
    "error_to_wire",
    "event_from_wire",
    "event_to_wire",
    "json_frame",
    "read_data",
    "read_json",
]

PROTOCOL = 3  # raised on any change a host of the previous version could not serve
HEADER = struct.Struct(">IB")
_DATA_HEAD = struct.Struct(">IQ")
JSON, DATA = 0, 1
MAX_FRAME = 16 * 1024 * 1024  # far above any frame Hearth sends (output frames are ≤ 256 KiB)


class ProtocolError(Exception):
    """The peer sent something that is not a frame of this protocol: drop the connection."""


class HostError(Exception):
    """The host failed with an error of its own (a bug): its log has the traceback."""


def json_frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return HEADER.pack(len(body), JSON) + body


def data_frame(stream: int, offset: int, data: bytes) -> bytes:
    return HEADER.pack(_DATA_HEAD.size + len(data), DATA) + _DATA_HEAD.pack(stream, offset) + data


def read_data(body: bytes | memoryview) -> tuple[int, int, bytes]:
    if len(body) < _DATA_HEAD.size:
        raise ProtocolError("a data frame shorter than its header")
    stream, offset = _DATA_HEAD.unpack_from(body)
    return stream, offset, bytes(body[_DATA_HEAD.size :])


def read_json(body: bytes | memoryview) -> dict[str, Any]:
    try:
        message = json.loads(bytes(body))
    except ValueError as exc:
        raise ProtocolError(f"a frame that is not JSON: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise ProtocolError("a JSON frame without an 'op'")
    return message


# --- values that cross ---------------------------------------------------------------------

_ERRORS: dict[str, type[errors.HearthError]] = {
    name: cls
    for name in errors.__all__
    if isinstance(cls := getattr(errors, name), type) and issubclass(cls, errors.HearthError)
}


def error_to_wire(exc: BaseException) -> dict[str, str]:
    exc = errors.storage_error(exc) or exc
    if isinstance(exc, errors.HearthError) and type(exc).__name__ in _ERRORS:
        return {"type": type(exc).__name__, "message": exc.message}
    return {"type": "HostError", "message": f"{type(exc).__name__}: {exc}"}


def error_from_wire(error: dict[str, Any]) -> Exception:
    cls = _ERRORS.get(str(error.get("type")))
    message = str(error.get("message", ""))
    return HostError(message) if cls is None else cls(message)


def event_to_wire(event: Event) -> dict[str, Any]:
    """A terminal event other than output (output goes in DATA frames)."""
    if isinstance(event, ReplayDone):
        return {"type": "replay_done", "offset": event.offset}
    if isinstance(event, Missed):
        return {"type": "missed", "missed_bytes": event.missed_bytes, "offset": event.offset}
    if isinstance(event, Resized):
        return {"type": "resize", "rows": event.rows, "cols": event.cols}
    if isinstance(event, ViewerCount):
        return {"type": "viewers", "count": event.count}
    if isinstance(event, Exited):
        return {"type": "exit", "exit_code": event.exit_code, "reason": event.reason}
    if isinstance(event, Refused):
        return {"type": "refused", "message": event.message}
    raise TypeError(f"not a terminal event: {event!r}")


def event_from_wire(data: dict[str, Any]) -> Event:
    kind = data.get("type")
    if kind == "replay_done":
        return ReplayDone(data["offset"])
    if kind == "missed":
        return Missed(data["missed_bytes"], data["offset"])
    if kind == "resize":
        return Resized(data["rows"], data["cols"])
    if kind == "viewers":
        return ViewerCount(data["count"])
    if kind == "exit":
        return Exited(data["exit_code"], data.get("reason"))
    if kind == "refused":
        return Refused(data["message"])
    raise ProtocolError(f"unknown terminal event {kind!r}")
