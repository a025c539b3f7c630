"""The Jupyter kernel websocket protocol (SPEC §10), pure: a message is its channel and its parts —
header, parent_header, metadata, content (each JSON), then binary buffers.

Two encodings on ``/api/kernels/{id}/channels``, as in Jupyter Server:
- ``v1.kernel.websocket.jupyter.org`` (the subprotocol): one binary frame, a little-endian 8-byte
  count ``n``, ``n`` 8-byte offsets, then the channel name and the parts at those offsets;
- the legacy form: a JSON text frame ``{"channel", "header", "parent_header", "metadata",
  "content", "buffers": []}``; with buffers, a binary frame: a big-endian 4-byte count of parts,
  their offsets, the JSON, then the buffers.

The session host speaks v1 on its stream, so a v1 client is relayed untouched, and the web tier
converts the legacy form.
"""

from __future__ import annotations

import json
import secrets
import struct
import time
from itertools import pairwise
from typing import Any

from hearth.protocol import FrameError

__all__ = [
    "CHANNELS",
    "CLIENT_CHANNELS",
    "V1_PROTOCOL",
    "decode_legacy",
    "decode_v1",
    "encode_legacy",
    "encode_v1",
    "own_message",
]

V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
CLIENT_CHANNELS = ("shell", "control", "stdin")  # what a client may send on
CHANNELS = (*CLIENT_CHANNELS, "iopub")
_JSON_PARTS = ("header", "parent_header", "metadata", "content")
_LE64 = struct.Struct("<Q")
_MAX_PARTS = 1024  # buffers of one message; more is not a message, it is an attack


def own_message(msg_type: str, content: dict[str, Any], session: str = "hearth") -> list[bytes]:
    """The parts of a message of Hearth's own (a status it reports, a refusal it explains), as
    Jupyter Server makes its own: a new header, no parent."""
    header = {
        "msg_id": secrets.token_hex(16),
        "msg_type": msg_type,
        "session": session,
        "username": "hearth",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()),
        "version": "5.3",
    }
    return [_dump(header), b"{}", b"{}", _dump(content)]


def encode_v1(channel: str, parts: list[bytes]) -> bytes:
    names = channel.encode()
    count = len(parts) + 2  # the channel's start, each part's start, and the end
    offsets = [8 * (1 + count)]
    offsets.append(offsets[-1] + len(names))
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    head = struct.pack(f"<{count + 1}Q", count, *offsets)
    return b"".join((head, names, *parts))


def decode_v1(frame: bytes) -> tuple[str, list[bytes]]:
    """The channel and parts of a v1 frame; ``FrameError`` says what is wrong with it."""
    size = len(frame)
    if size < 8:
        raise FrameError("a v1 kernel message starts with an 8-byte count of offsets")
    (count,) = _LE64.unpack_from(frame)
    if not 6 <= count <= _MAX_PARTS + 6 or size < 8 * (count + 1):
        raise FrameError(
            "a v1 kernel message needs offsets for its channel and its four JSON parts"
        )
    offsets = struct.unpack_from(f"<{count}Q", frame, 8)
    if offsets[0] != 8 * (count + 1) or any(b < a for a, b in pairwise(offsets)):
        raise FrameError("the offsets of a v1 kernel message must be in order, after the header")
    if offsets[-1] != size:
        raise FrameError("the last offset of a v1 kernel message must be its length")
    channel = _channel(frame[offsets[0] : offsets[1]])
    view = memoryview(frame)
    parts = [bytes(view[a:b]) for a, b in pairwise(offsets[1:])]
    return channel, parts


def _channel(raw: bytes) -> str:
    name = raw.decode(errors="replace")
    if name not in CHANNELS:
        raise FrameError(f"unknown channel {name[:40]!r}; use one of {', '.join(CHANNELS)}")
    return name


def decode_legacy(frame: str | bytes) -> tuple[str, list[bytes]]:
    """The channel and parts of a legacy frame (JSON text, or binary with buffers)."""
    buffers: list[bytes] = []
    text: str | bytes = frame
    if isinstance(frame, bytes):
        text, buffers = _split_binary(frame)
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        raise FrameError(
            "a kernel message is a JSON object with channel, header, parent_header, metadata "
            "and content"
        ) from None
    if not isinstance(message, dict):
        raise FrameError("a kernel message is a JSON object")
    header = message.get("header")
    if not (
        isinstance(header, dict)
        and isinstance(header.get("msg_id"), str)
        and isinstance(header.get("msg_type"), str)
    ):
        raise FrameError("a kernel message needs a header with a msg_id and a msg_type")
    channel = message.get("channel") or "shell"  # Jupyter Server's default
    if channel not in CHANNELS:
        raise FrameError(f"unknown channel {str(channel)[:40]!r}; use one of {', '.join(CHANNELS)}")
    parts = [_dump(message.get(name) or {}) for name in _JSON_PARTS]
    return channel, parts + buffers


def encode_legacy(channel: str, parts: list[bytes]) -> str | bytes:
    """A kernel message as Jupyter Server's legacy form sends it: text, or binary with buffers.
    Raises ``ValueError`` for parts that are not JSON (a kernel's message to drop)."""
    header = json.loads(parts[0])
    values = [parts[i].decode() for i in range(4)]
    for value in values[1:]:
        json.loads(value)  # each part must be JSON for the whole to be
    head: dict[str, Any] = {"channel": channel}
    if isinstance(header, dict):
        head.update(msg_id=header.get("msg_id"), msg_type=header.get("msg_type"))
    fields = ",".join(f'"{name}":{value}' for name, value in zip(_JSON_PARTS, values, strict=True))
    text = f'{json.dumps(head)[:-1]},{fields},"buffers":[]}}'
    buffers = parts[4:]
    if not buffers:
        return text
    return _join_binary([text.encode(), *buffers])


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _split_binary(frame: bytes) -> tuple[bytes, list[bytes]]:
    if len(frame) < 8:
        raise FrameError("a binary kernel message starts with a 4-byte count of parts")
    (count,) = struct.unpack_from("!I", frame)
    if not 1 <= count <= _MAX_PARTS or len(frame) < 4 * (count + 1):
        raise FrameError("a binary kernel message needs an offset for each of its parts")
    offsets = [*struct.unpack_from(f"!{count}I", frame, 4), len(frame)]
    if offsets[0] < 4 * (count + 1) or any(b < a for a, b in pairwise(offsets)):
        raise FrameError("the offsets of a binary kernel message must be in order")
    pieces = [frame[a:b] for a, b in pairwise(offsets)]
    return pieces[0], pieces[1:]


def _join_binary(pieces: list[bytes]) -> bytes:
    count = len(pieces)
    offsets = [4 * (count + 1)]
    for piece in pieces[:-1]:
        offsets.append(offsets[-1] + len(piece))
    return struct.pack(f"!{count + 1}I", count, *offsets) + b"".join(pieces)
