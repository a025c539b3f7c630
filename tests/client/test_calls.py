"""The client's pure parts: error answers, URLs, the attach state file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hearth.cli_attach import AttachState
from hearth.client import _calls
from hearth.errors import (
    BadGateway,
    BadRequest,
    DownloadFailed,
    LimitReached,
    NotFound,
    ServiceError,
)


def test_the_detail_of_an_error_answer_is_the_message() -> None:
    with pytest.raises(NotFound, match=r"^No session 'x'$"):
        _calls.raise_for_status(404, b'{"detail": "No session \'x\'"}')
    with pytest.raises(LimitReached):
        _calls.raise_for_status(429, b'{"detail": "too many"}')
    _calls.raise_for_status(204, b"")


def test_fastapis_422_becomes_one_readable_line() -> None:
    body = {
        "detail": [
            {"loc": ["body", "rows"], "msg": "Input should be greater than or equal to 1"},
            {"loc": ["query", "limit"], "msg": "Input should be a valid integer"},
        ]
    }
    with pytest.raises(BadRequest) as caught:
        _calls.raise_for_status(422, json.dumps(body).encode())
    assert caught.value.message == (
        "rows: Input should be greater than or equal to 1; limit: Input should be a valid integer"
    )


def test_a_body_that_is_not_json_is_shown_as_text() -> None:
    with pytest.raises(ServiceError, match="Bad Gateway"):
        _calls.raise_for_status(502, b"<html>Bad Gateway</html>")
    with pytest.raises(ServiceError, match="HTTP 503"):
        _calls.raise_for_status(503, b"")


def test_a_502_of_a_terminal_on_a_connection_is_a_bad_gateway() -> None:
    """``error_for_status`` reads a 502 as a failed download (the kernels' one); a terminal on a
    connection says which machine refused which step."""
    body = b'{"detail": "Authentication failed on u@h:22"}'
    with pytest.raises(BadGateway, match="Authentication failed"):
        call = _calls.create_terminal(connection_id="box")
        _calls.raise_for_status(502, body, call.errors)
    with pytest.raises(DownloadFailed):
        _calls.raise_for_status(502, body, _calls.create_terminal().errors)
    with pytest.raises(NotFound):  # the rest as everywhere
        _calls.raise_for_status(404, b'{"detail": "No connection"}', call.errors)


def test_a_connection_change_sends_only_what_is_given() -> None:
    assert _calls.change_connection("c").json == {}
    assert _calls.change_connection("c", host_key=None).json == {"host_key": None}  # clears it
    assert _calls.change_connection("c", name="n", port=2222).json == {"name": "n", "port": 2222}
    with_key = _calls.change_connection("c", private_key="K", passphrase="p")
    assert with_key.method == "PATCH" and with_key.path == "/api/v1/connections/c"
    assert with_key.json == {"auth": {"private_key": "K", "passphrase": "p"}}
    assert _calls.change_connection("c", password="pw").json == {"auth": {"password": "pw"}}
    with pytest.raises(ValueError, match="host can't be None"):
        _calls.change_connection("c", host=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not both"):
        _calls.change_connection("c", password="pw", private_key="K")
    with pytest.raises(ValueError, match="goes with its private key"):
        _calls.create_connection(host="h", username="u", passphrase="p")
    made = _calls.create_connection(host="h", username="u", private_key="K")
    assert made.json == {"host": "h", "port": 22, "username": "u", "auth": {"private_key": "K"}}
    assert repr(_calls.UNSET) == "UNSET"


def test_websocket_urls() -> None:
    assert _calls.terminal_ws_url("http://h:1", "a b", since=5, rows=24, cols=None) == (
        "ws://h:1/api/v1/terminal/ws/a%20b?reconnect=true&since=5&rows=24"
    )
    assert _calls.terminal_ws_url("https://h/p", "x").startswith("wss://h/p/api/v1/terminal/ws/x?")


def test_urls_are_normalized_and_checked() -> None:
    assert _calls.normalize_url("127.0.0.1:8765/") == "http://127.0.0.1:8765"
    with pytest.raises(ValueError, match="not a server URL"):
        _calls.normalize_url("ftp://host")


def test_the_attach_state_keeps_offsets_per_server_token_and_session(tmp_path: Path) -> None:
    state = AttachState(tmp_path / "sub" / "attach-state.json", limit=2)
    a = AttachState.key("http://h:1", "tok-1", "s")
    assert a != AttachState.key("http://h:1", "tok-2", "s")
    assert "tok-1" not in a  # only a hash of the token is written
    state.put(a, 10)
    assert state.get(a) == 10
    state.put("b", 1)
    state.put("c", 2)
    assert state.get(a) is None  # bounded: the oldest entry went
    state.put("c", None)
    assert json.loads((tmp_path / "sub" / "attach-state.json").read_text()) == {"b": 1}
    (tmp_path / "sub" / "attach-state.json").write_text("not json")
    assert state.get("b") is None
