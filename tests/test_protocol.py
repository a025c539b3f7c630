from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from hearth.protocol import (
    OUTPUT_FRAME,
    FrameError,
    InputFrame,
    PingFrame,
    ResizeFrame,
    TerminalCreate,
    TerminalRename,
    decode_client_text,
    decode_output,
    encode_output,
)

# --- output frames --------------------------------------------------------------------------


def test_output_frame_layout() -> None:
    frame = encode_output(0x0102030405060708, b"hi")
    assert frame == b"\x01\x01\x02\x03\x04\x05\x06\x07\x08hi"
    assert frame[0] == OUTPUT_FRAME


@given(offset=st.integers(0, 2**64 - 1), data=st.binary(max_size=200))
def test_output_frames_roundtrip(offset: int, data: bytes) -> None:
    frame = encode_output(offset, data)
    assert len(frame) == 9 + len(data)
    assert decode_output(frame) == (offset, data)


def test_an_output_frame_may_carry_no_data() -> None:
    assert decode_output(encode_output(7, b"")) == (7, b"")


@pytest.mark.parametrize("frame", [b"", b"\x01", b"\x01" + b"\x00" * 7, b"\x02" + b"\x00" * 8])
def test_decode_output_rejects_what_is_not_an_output_frame(frame: bytes) -> None:
    with pytest.raises(FrameError, match="not an output frame"):
        decode_output(frame)


def test_encode_output_rejects_an_offset_out_of_range() -> None:
    with pytest.raises(Exception):  # noqa: B017 - struct.error, never a wrong frame
        encode_output(-1, b"x")
    with pytest.raises(Exception):  # noqa: B017
        encode_output(2**64, b"x")


# --- client text frames --------------------------------------------------------------------


def test_valid_frames() -> None:
    assert decode_client_text('{"type":"input","data":"ls\\r"}') == InputFrame(
        type="input", data="ls\r"
    )
    assert decode_client_text('{"type":"resize","rows":24,"cols":80}') == ResizeFrame(
        type="resize", rows=24, cols=80
    )
    assert decode_client_text('{"type":"ping"}') == PingFrame(type="ping")


def test_unknown_fields_are_ignored() -> None:
    frame = decode_client_text('{"type":"ping","id":3}')
    assert isinstance(frame, PingFrame)


def test_input_keeps_unicode_and_control_characters() -> None:
    frame = decode_client_text(json.dumps({"type": "input", "data": "é漢😀\x03\x1b[A"}))
    assert isinstance(frame, InputFrame)
    assert frame.data == "é漢😀\x03\x1b[A"
    assert frame.data.encode() == "é漢😀\x03\x1b[A".encode()


def test_resize_bounds_are_inclusive() -> None:
    for rows, cols in [(1, 1), (1000, 1000)]:
        frame = decode_client_text(json.dumps({"type": "resize", "rows": rows, "cols": cols}))
        assert isinstance(frame, ResizeFrame)
        assert (frame.rows, frame.cols) == (rows, cols)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "malformed JSON"),
        ("{", "malformed JSON"),
        ("{'type': 'ping'}", "malformed JSON"),
        ("ping", "malformed JSON"),
        ("[1, 2]", "JSON object with a string 'type'"),
        ('"ping"', "JSON object with a string 'type'"),
        ("null", "JSON object with a string 'type'"),
        ("42", "JSON object with a string 'type'"),
        ("{}", "JSON object with a string 'type'"),
        ('{"type": 3}', "JSON object with a string 'type'"),
        ('{"type": null}', "JSON object with a string 'type'"),
        ('{"type": "exec"}', "unknown frame type 'exec'; expected one of input, resize, ping"),
        ('{"type": "Ping"}', "unknown frame type 'Ping'"),
        ('{"type": "input"}', "bad input frame: data: Field required"),
        ('{"type": "input", "data": 5}', "bad input frame: data:"),
        ('{"type": "input", "data": null}', "bad input frame: data:"),
        ('{"type": "resize", "cols": 80}', "bad resize frame: rows: Field required"),
        ('{"type": "resize", "rows": 0, "cols": 80}', "bad resize frame: rows: .*greater than"),
        ('{"type": "resize", "rows": 24, "cols": 1001}', "bad resize frame: cols: .*less than"),
        ('{"type": "resize", "rows": -3, "cols": 80}', "bad resize frame: rows:"),
        ('{"type": "resize", "rows": 24.5, "cols": 80}', "bad resize frame: rows:"),
        ('{"type": "resize", "rows": "24", "cols": 80}', "bad resize frame: rows:"),
        ('{"type": "resize", "rows": true, "cols": 80}', "bad resize frame: rows:"),
        ('{"type": "resize", "rows": null, "cols": 80}', "bad resize frame: rows:"),
        ('{"type": "resize", "rows": [24], "cols": 80}', "bad resize frame: rows:"),
    ],
)
def test_bad_frames_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        decode_client_text(text)


def test_a_huge_number_is_a_frame_error() -> None:
    """Python refuses to parse ints of more than 4300 digits: that's the client's fault."""
    text = '{"type": "resize", "rows": ' + "1" * 5000 + ', "cols": 80}'
    with pytest.raises(FrameError):
        decode_client_text(text)


def test_deeply_nested_json_is_a_frame_error() -> None:
    """A RecursionError would escape as a RuntimeError and drop the connection."""
    with pytest.raises(FrameError, match="malformed JSON"):
        decode_client_text('{"type": "input", "data": ' + "[" * 100_000 + "]" * 100_000 + "}")


def test_input_that_is_not_encodable_text_is_a_frame_error() -> None:
    """A lone surrogate ("\\ud800" in JSON) can't be written to a PTY as UTF-8."""
    with pytest.raises(FrameError, match="bad input frame: data:"):
        decode_client_text('{"type": "input", "data": "a\\ud800b"}')


def test_a_frame_error_is_a_value_error() -> None:
    assert issubclass(FrameError, ValueError)


@given(st.text(max_size=50))
def test_any_text_decodes_or_raises_a_frame_error(text: str) -> None:
    try:
        frame = decode_client_text(text)
    except FrameError:
        return
    assert isinstance(frame, InputFrame | ResizeFrame | PingFrame)


@given(
    st.dictionaries(
        st.sampled_from(["type", "data", "rows", "cols"]),
        st.one_of(
            st.sampled_from(["input", "resize", "ping"]),
            st.none(),
            st.booleans(),
            st.integers(),
            st.floats(allow_nan=False),
            st.text(max_size=5),
            st.lists(st.integers(), max_size=2),
        ),
    )
)
def test_any_json_object_decodes_or_raises_a_frame_error(raw: dict[str, object]) -> None:
    try:
        frame = decode_client_text(json.dumps(raw))
    except FrameError as exc:
        assert str(exc)
        return
    assert frame.type == raw["type"]
    if isinstance(frame, ResizeFrame):
        assert type(raw["rows"]) is int and type(raw["cols"]) is int
        assert 1 <= frame.rows <= 1000 and 1 <= frame.cols <= 1000


# --- REST models ---------------------------------------------------------------------------


def test_terminal_create_defaults() -> None:
    body = TerminalCreate.model_validate({})
    assert (body.id, body.name, body.command, body.cwd) == (None, None, None, None)
    assert (body.env, body.rows, body.cols) == ({}, 24, 80)


@pytest.mark.parametrize("id", ["a", "A-z_09", "x" * 64])
def test_terminal_create_accepts_session_ids(id: str) -> None:
    assert TerminalCreate.model_validate({"id": id}).id == id


@pytest.mark.parametrize("id", ["", "x" * 65, "a b", "a/b", "é", "a.b", "../x", "a\n"])
def test_terminal_create_rejects_bad_session_ids(id: str) -> None:
    with pytest.raises(ValidationError):
        TerminalCreate.model_validate({"id": id})


@pytest.mark.parametrize(
    "body",
    [
        {"command": []},
        {"command": [""]},
        {"rows": 0},
        {"cols": 1001},
        {"name": ""},
        {"unknown": 1},
        {"env": {"A": 1}},
    ],
)
def test_terminal_create_rejects_bad_bodies(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        TerminalCreate.model_validate(body)


def test_terminal_rename() -> None:
    assert TerminalRename(name="build").name == "build"
    with pytest.raises(ValidationError):
        TerminalRename(name="")
    with pytest.raises(ValidationError):
        TerminalRename.model_validate({"name": "x", "id": "y"})
