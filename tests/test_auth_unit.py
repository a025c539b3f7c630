"""Authentication pieces, driven by starlette connections built from plain ASGI scopes."""

from __future__ import annotations

import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.requests import HTTPConnection

from hearth.errors import OriginRefused, Unauthorized
from hearth.server.auth import (
    COOKIE_NAME,
    Authenticator,
    check_origin,
    current_user,
    load_or_create_token,
    token_of,
)

ALICE, BOB = "tok-alice-0123456789", "tok-bob-9876543210"


def connection(
    headers: dict[str, str] | None = None,
    query: str = "",
    *,
    scheme: str = "http",
    app: Any = None,
) -> HTTPConnection:
    scope: dict[str, Any] = {
        "type": "websocket" if scheme.startswith("ws") else "http",
        "scheme": scheme,
        "path": "/api/v1/terminal/ws/a1",
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "server": ("127.0.0.1", 8765),
    }
    if app is not None:
        scope["app"] = app
    return HTTPConnection(scope)


# --- Authenticator ---------------------------------------------------------------------------


def test_authenticator_finds_the_user_of_a_token() -> None:
    auth = Authenticator({ALICE: "alice", BOB: "bob"})
    assert auth.user_for(ALICE) == "alice"
    assert auth.user_for(BOB) == "bob"


@pytest.mark.parametrize("token", [None, "", "wrong", ALICE[:-1], ALICE + "x", ALICE.upper(), " "])
def test_authenticator_refuses_anything_else(token: str | None) -> None:
    assert Authenticator({ALICE: "alice"}).user_for(token) is None


def test_authenticator_takes_non_ascii_tokens() -> None:
    auth = Authenticator({"jeton-été-2024": "zoé"})
    assert auth.user_for("jeton-été-2024") == "zoé"
    assert auth.user_for("jeton-ete-2024") is None


def test_authenticator_needs_a_token() -> None:
    with pytest.raises(ValueError, match="at least one token"):
        Authenticator({})


# --- token_of ----------------------------------------------------------------------------------


def test_token_from_a_bearer_header() -> None:
    assert token_of(connection({"Authorization": f"Bearer {ALICE}"})) == ALICE
    assert token_of(connection({"Authorization": f"bearer   {ALICE}  "})) == ALICE


def test_token_from_the_query() -> None:
    assert token_of(connection(query=f"token={ALICE}&reconnect=true")) == ALICE


def test_token_from_the_cookie() -> None:
    assert token_of(connection({"Cookie": f"other=1; {COOKIE_NAME}={ALICE}"})) == ALICE
    assert COOKIE_NAME == "hearth_token"


def test_the_header_wins_over_the_query_and_the_query_over_the_cookie() -> None:
    both = connection(
        {"Authorization": f"Bearer {ALICE}", "Cookie": f"{COOKIE_NAME}={BOB}"}, f"token={BOB}"
    )
    assert token_of(both) == ALICE
    assert token_of(connection({"Cookie": f"{COOKIE_NAME}={BOB}"}, f"token={ALICE}")) == ALICE


def test_no_token() -> None:
    assert token_of(connection()) is None
    assert token_of(connection(query="token=")) is None
    assert token_of(connection({"Authorization": "Bearer "})) is None


def test_other_schemes_are_not_tokens() -> None:
    assert token_of(connection({"Authorization": f"Basic {ALICE}"})) is None
    assert token_of(connection({"Authorization": f"Basic {ALICE}"}, f"token={BOB}")) == BOB


# --- current_user ------------------------------------------------------------------------------


def app_with(tokens: dict[str, str]) -> Any:
    return SimpleNamespace(state=SimpleNamespace(authenticator=Authenticator(tokens)))


def test_current_user() -> None:
    app = app_with({ALICE: "alice", BOB: "bob"})
    assert current_user(connection({"Authorization": f"Bearer {BOB}"}, app=app)) == "bob"
    assert current_user(connection(query=f"token={ALICE}", app=app)) == "alice"


@pytest.mark.parametrize("query", ["", "token=nope-nope-nope"])
def test_current_user_refuses_and_says_how_to_log_in(query: str) -> None:
    with pytest.raises(Unauthorized, match=r"Bearer <token>.*\?token=<token>.*/login") as info:
        current_user(connection(query=query, app=app_with({ALICE: "alice"})))
    assert info.value.status_code == 401
    assert info.value.close_code == 4401
    assert "nope-nope-nope" not in info.value.message


# --- check_origin ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "host", "origin"),
    [
        ("ws", "localhost:8765", "http://localhost:8765"),
        ("wss", "hearth.example", "https://hearth.example"),
        ("https", "hearth.example", "https://hearth.example"),
        ("http", "Hearth.Example:8765", "http://hearth.example:8765"),
        ("ws", "[::1]:8765", "http://[::1]:8765"),
        ("ws", "localhost:8765", "http://localhost:8765/"),
    ],
)
def test_our_own_origin_passes(scheme: str, host: str, origin: str) -> None:
    check_origin(connection({"Host": host, "Origin": origin}, scheme=scheme), [])


def test_no_origin_is_not_a_browser_and_passes() -> None:
    check_origin(connection({"Host": "localhost:8765"}, scheme="ws"), [])


@pytest.mark.parametrize(
    ("scheme", "host", "origin"),
    [
        ("ws", "localhost:8765", "http://evil.example"),
        ("ws", "localhost:8765", "http://localhost:8766"),  # another port is another origin
        ("ws", "localhost:8765", "https://localhost:8765"),  # another scheme too
        ("wss", "hearth.example", "http://hearth.example"),
        ("ws", "localhost:8765", "http://localhost:8765.evil.example"),
        ("ws", "localhost:8765", "http://localhost:8765@evil.example"),
        ("ws", "localhost:8765", "null"),
        ("ws", "localhost:8765", ""),
        ("ws", "", "http://localhost:8765"),  # no Host: nothing is ours
    ],
)
def test_a_foreign_origin_is_refused(scheme: str, host: str, origin: str) -> None:
    headers = {"Origin": origin} | ({"Host": host} if host else {})
    with pytest.raises(OriginRefused, match="allowed_origins") as info:
        check_origin(connection(headers, scheme=scheme), [])
    assert info.value.close_code == 4403


def test_allowed_origins_pass() -> None:
    conn = connection({"Host": "localhost:8765", "Origin": "https://app.example"}, scheme="ws")
    check_origin(conn, ["https://app.example"])
    check_origin(conn, ["https://other.example", "https://app.example/"])
    check_origin(conn, ["https://App.Example"])  # host names are case-insensitive
    check_origin(conn, ["*"])
    with pytest.raises(OriginRefused):
        check_origin(conn, ["https://other.example", "http://app.example"])


# --- load_or_create_token ----------------------------------------------------------------------


def test_a_token_is_generated_once_and_kept(tmp_path: Path) -> None:
    data_dir = tmp_path / "deep" / "data"
    tokens = load_or_create_token(data_dir)
    ((token, user),) = tokens.items()
    assert user == "default"
    assert len(token) >= 32
    path = data_dir / "token"
    assert path.read_text().strip() == token
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0  # only the owner can read it
    assert load_or_create_token(data_dir) == {token: "default"}


def test_two_data_dirs_get_two_tokens(tmp_path: Path) -> None:
    assert load_or_create_token(tmp_path / "a") != load_or_create_token(tmp_path / "b")


def test_an_existing_token_file_is_used(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("  my-own-token-123\n\n")
    assert load_or_create_token(tmp_path) == {"my-own-token-123": "default"}


def test_an_empty_token_file_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("\n")
    ((token, _),) = load_or_create_token(tmp_path).items()
    assert token
    assert (tmp_path / "token").read_text().strip() == token
