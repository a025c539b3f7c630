"""The Jupyter kernel websocket framing, checked against Jupyter Server's own codec."""

from __future__ import annotations

import json
import struct

import pytest
from jupyter_client.session import Session
from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_binary_message,
    serialize_msg_to_ws_v1,
)

from hearth.protocol import FrameError
from hearth.protocol.jupyter import decode_legacy, decode_v1, encode_legacy, encode_v1


def _message(buffers: list[bytes] | None = None) -> dict[str, object]:
    msg: dict[str, object] = Session().msg("comm_msg", {"data": {"x": 1}, "comm_id": "c"})
    msg["buffers"] = buffers or []
    return msg


def _parts(msg: dict[str, object], extra: list[bytes] | None = None) -> list[bytes]:
    names = ("header", "parent_header", "metadata", "content")
    return [json.dumps(msg[n], default=str).encode() for n in names] + (extra or [])


def test_v1_frames_are_jupyter_servers() -> None:
    parts = _parts(_message(), [b"\x00buffer", b""])
    ours = encode_v1("shell", parts)
    assert ours == serialize_msg_to_ws_v1(parts, "shell")
    assert deserialize_msg_from_ws_v1(ours) == ("shell", parts)
    assert decode_v1(ours) == ("shell", parts)


def test_legacy_text_round_trip_keeps_every_field() -> None:
    msg = _message()
    text = json.dumps({**msg, "channel": "control"}, default=str)
    channel, parts = decode_legacy(text)
    assert channel == "control"
    back = encode_legacy(channel, parts)
    assert isinstance(back, str)
    decoded = json.loads(back)
    assert decoded["channel"] == "control"
    assert decoded["msg_type"] == "comm_msg"
    assert decoded["msg_id"] == msg["header"]["msg_id"]  # type: ignore[index]
    assert decoded["content"] == msg["content"]
    assert decoded["buffers"] == []


def test_legacy_binary_frames_are_jupyter_servers() -> None:
    msg = {**_message([b"abc", b"\xff" * 10]), "channel": "iopub"}
    blob = serialize_binary_message(msg)
    channel, parts = decode_legacy(blob)
    assert channel == "iopub" and parts[4:] == [b"abc", b"\xff" * 10]
    back = encode_legacy(channel, parts)
    assert isinstance(back, bytes)
    again = deserialize_binary_message(back)
    assert again["buffers"] == [b"abc", b"\xff" * 10]
    assert again["content"] == msg["content"] and again["channel"] == "iopub"


def test_a_message_without_a_channel_goes_to_shell_as_in_jupyter_server() -> None:
    channel, _ = decode_legacy(json.dumps(_message(), default=str))
    assert channel == "shell"


@pytest.mark.parametrize(
    ("frame", "says"),
    [
        ("not json", "JSON object"),
        ("[1, 2]", "JSON object"),
        ('{"header": {}}', "msg_id and a msg_type"),
        ('{"header": {"msg_id": "a", "msg_type": "x"}, "channel": "nope"}', "unknown channel"),
        (b"\x00\x00\x00\x09abcdefgh", "offset"),
        (b"\x00\x00", "4-byte count"),
        ("[" * 100_000, "JSON object"),
    ],
)
def test_malformed_legacy_frames_say_what_is_wrong(frame: str | bytes, says: str) -> None:
    with pytest.raises(FrameError, match=says):
        decode_legacy(frame)


def test_malformed_v1_frames_say_what_is_wrong() -> None:
    good = encode_v1("shell", _parts(_message()))
    with pytest.raises(FrameError, match="8-byte"):
        decode_v1(b"\x01")
    with pytest.raises(FrameError, match="four JSON parts"):
        decode_v1(struct.pack("<Q", 2) + good[8:])
    with pytest.raises(FrameError, match="four JSON parts"):
        decode_v1(struct.pack("<Q", 10**12) + good[8:])
    with pytest.raises(FrameError, match="last offset"):
        decode_v1(good + b"x")
    with pytest.raises(FrameError, match="unknown channel"):
        decode_v1(encode_v1("other", _parts(_message())))
    backwards = bytearray(good)
    backwards[16:24] = struct.pack("<Q", 1)
    with pytest.raises(FrameError, match="in order"):
        decode_v1(bytes(backwards))


def test_a_kernel_message_that_is_not_json_is_refused_in_the_legacy_form() -> None:
    with pytest.raises(ValueError):
        encode_legacy("iopub", [b'{"msg_id": "a"}', b"{}", b"{", b"{}"])
