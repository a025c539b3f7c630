"""Tokens → users, and the websocket Origin check.

A request carries its token as ``Authorization: Bearer`` (or ``token``, as Jupyter clients send it),
as ``?token=`` (browsers' websockets),
or as the ``hearth_token`` cookie that ``/login`` sets. Tokens are compared in constant time and
never logged.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends
from starlette.requests import HTTPConnection

from hearth.cluster.relay import local_path
from hearth.cluster.signing import HEADER as RELAY_HEADER
from hearth.errors import OriginRefused, Unauthorized

__all__ = [
    "COOKIE_NAME",
    "Authenticator",
    "CurrentUser",
    "check_origin",
    "current_user",
    "load_or_create_token",
    "token_of",
    "websocket_user",
]

COOKIE_NAME = "hearth_token"
DEFAULT_USER = "default"


class Authenticator:
    def __init__(self, tokens: dict[str, str]) -> None:
        if not tokens:
            raise ValueError("an authenticator needs at least one token")
        self._tokens = [(t.encode(), user) for t, user in tokens.items()]

    def users(self) -> list[str]:
        return sorted({user for _, user in self._tokens})

    def user_for(self, token: str | None) -> str | None:
        """The user owning ``token``; every configured token is compared, in constant time."""
        if not token:
            return None
        given = token.encode()
        found: str | None = None
        for candidate, user in self._tokens:
            if hmac.compare_digest(candidate, given):
                found = user
        return found


def token_of(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("bearer", "token") and value.strip():  # "token": Jupyter's form
        return value.strip()
    return conn.query_params.get("token") or conn.cookies.get(COOKIE_NAME)


def current_user(conn: HTTPConnection) -> str:
    if RELAY_HEADER in conn.headers:
        return _relayed_user(conn)
    auth: Authenticator = conn.app.state.authenticator
    user = auth.user_for(token_of(conn))
    if user is None:
        raise Unauthorized(
            "Missing or wrong token: send 'Authorization: Bearer <token>' (or 'token <token>'), "
            "'?token=<token>', "
            "or log in at /login?token=<token>."
        )
    return user


def _relayed_user(conn: HTTPConnection) -> str:
    """The user another node of the cluster authenticated, if its signature holds (SPEC §12)."""
    cluster = getattr(conn.app.state, "cluster", None)
    method = conn.scope.get("method", "GET")
    user: str | None = None
    if cluster is not None:
        user = cluster.signer.verify(conn.headers[RELAY_HEADER], method, local_path(conn.scope))
    if user is None:
        raise Unauthorized(
            "A relayed call whose signature does not hold: every node needs the same "
            "cluster_secret, and clocks within a minute of each other."
        )
    return user


async def _current_user(conn: HTTPConnection) -> str:
    # async, so FastAPI doesn't hand every request to a worker thread just to check a token
    return current_user(conn)


CurrentUser = Annotated[str, Depends(_current_user)]


def check_origin(conn: HTTPConnection, allowed: list[str]) -> None:
    """Refuse a cross-site websocket: an Origin that is neither ours nor explicitly allowed."""
    origin = conn.headers.get("origin")
    if origin is None:
        return  # not a browser: nothing to hijack
    host = conn.headers.get("host", "")
    scheme = "https" if conn.url.scheme in ("https", "wss") else "http"
    parts = urlsplit(origin)
    if f"{parts.scheme}://{parts.netloc}".lower() == f"{scheme}://{host}".lower():
        return
    # Browsers send the host in lower case; the configured list may not be.
    if origin.rstrip("/").lower() in {o.rstrip("/").lower() for o in allowed} or "*" in allowed:
        return
    raise OriginRefused(
        f"Origin {origin!r} is not this server's; "
        "add it to the allowed_origins setting to allow it."
    )


def load_or_create_token(data_dir: Path) -> dict[str, str]:
    """The generated token of user ``default``, kept in the data directory across restarts."""
    path = data_dir / "token"
    if path.is_file():
        token = path.read_text().strip()
        if token:
            return {token: DEFAULT_USER}
    token = secrets.token_urlsafe(32)
    data_dir.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    return {token: DEFAULT_USER}


def websocket_user(conn: HTTPConnection) -> str:
    """A websocket's user, once its Origin and its token are checked: a ``HearthError`` to
    refuse with after accepting (a close code says more to a browser than a refused upgrade)."""
    check_origin(conn, conn.app.state.settings.allowed_origins)
    return current_user(conn)
