"""The client without I/O: every API call as a ``Call`` (what to send, how to read the answer),
the mapping of error answers to ``hearth.errors``, and where URL and token come from.

``Client`` and ``AsyncClient`` only move these calls over httpx, so the two never drift apart.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Generic, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import httpx
from pydantic import TypeAdapter

from hearth.client.models import (
    ConnectionInfo,
    ConnectionTest,
    ExecutionResult,
    HistoryEntry,
    KernelEvent,
    KernelInfo,
    PoolState,
    TerminalScreen,
    TerminalState,
    WorkingFile,
)
from hearth.config import default_data_dir
from hearth.errors import BadGateway, HearthError, ServiceError, error_for_status

__all__ = [
    "DEFAULT_URL",
    "UNSET",
    "Call",
    "ClientLifecycle",
    "ClientState",
    "Unset",
    "raise_for_status",
    "resolve",
]

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:8765"
TERMINALS = "/api/v1/terminal/sessions"
KERNELS = "/api/v1/sessions"
CONNECTIONS = "/api/v1/connections"


# --- where the server is and who we are --------------------------------------------------------


def resolve(
    url: str | None,
    token: str | None,
    environ: Mapping[str, str] | None = None,
    data_dir: Path | None = None,
) -> tuple[str, str | None]:
    """The server URL and token: the given ones, else ``HEARTH_URL`` / ``HEARTH_TOKEN``, else
    ``http://127.0.0.1:8765`` and the token ``hearth serve`` generated in its default data
    directory (``None`` when there is none: the server will answer 401)."""
    env = os.environ if environ is None else environ
    url = url or env.get("HEARTH_URL") or DEFAULT_URL
    token = token or env.get("HEARTH_TOKEN") or _generated_token(data_dir or default_data_dir())
    return normalize_url(url), token


def _generated_token(data_dir: Path) -> str | None:
    try:
        return (data_dir / "token").read_text().strip() or None
    except OSError:
        return None


def normalize_url(url: str) -> str:
    """``host:port`` or ``http(s)://host:port[/prefix]``, without a trailing slash."""
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not a server URL; give one like {DEFAULT_URL}")
    return url.rstrip("/")


def terminal_ws_url(
    base: str,
    id: str,
    *,
    reconnect: bool = True,
    since: int | None = None,
    restore: str | None = None,
    **size: int | None,
) -> str:
    """The websocket URL of terminal session ``id`` (SPEC §3.4); ``restore="screen"``: start
    from its screen (SPEC §9); ``size``: ``rows``, ``cols``."""
    query: dict[str, str | int] = {"reconnect": "true" if reconnect else "false"}
    if since is not None:
        query["since"] = since
    if restore is not None:
        query["restore"] = restore
    query.update({k: v for k, v in size.items() if v is not None})
    scheme, rest = base.split("://", 1)
    ws = "wss" if scheme == "https" else "ws"
    return f"{ws}://{rest}/api/v1/terminal/ws/{_seg(id)}?{urlencode(query)}"


# --- the client's life cycle --------------------------------------------------------------------


class ClientState(enum.Enum):
    UNOPENED = "unopened"  # built, no request sent yet
    OPENED = "opened"  # used, or entered with ``with``
    CLOSED = "closed"  # closed: it can't be used again


class ClientLifecycle:
    """A client's state and its legal moves: opened once, used while open, closed once."""

    def __init__(self) -> None:
        self.state = ClientState.UNOPENED

    def enter(self) -> None:
        if self.state is not ClientState.UNOPENED:
            raise RuntimeError(
                f"Cannot open a client that is {self.state.value}: make a new client instead."
            )
        self.state = ClientState.OPENED

    def use(self) -> None:
        if self.state is ClientState.CLOSED:
            raise RuntimeError("Cannot send a request: the client was closed. Make a new one.")
        self.state = ClientState.OPENED

    def close(self) -> bool:
        """True the first time (then release the resources), False after."""
        if self.state is ClientState.CLOSED:
            return False
        self.state = ClientState.CLOSED
        return True


# --- calls --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API request and how to read its successful answer's body."""

    method: str
    path: str
    parse: Callable[[bytes], T]
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None
    long: bool = False  # may run for long (kernel start, code execution): no read timeout
    # the error of a status that means something else for this call than ``error_for_status``
    # says (a 502 of a terminal on a connection is another machine's refusal, not a download's)
    errors: Mapping[int, type[HearthError]] = field(default_factory=dict)


def _seg(value: str) -> str:
    return quote(value, safe="")


def _model(adapter: TypeAdapter[T]) -> Callable[[bytes], T]:
    return adapter.validate_json


def _none(body: bytes) -> None:
    return None


def _raw(body: bytes) -> bytes:
    return body


def _text(body: bytes) -> str:
    return body.decode()


def _dict(body: bytes) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(body)
    return value


_terminal = _model(TypeAdapter(TerminalState))
_terminals = _model(TypeAdapter(list[TerminalState]))
_history = _model(TypeAdapter(list[HistoryEntry]))
_screen = _model(TypeAdapter(TerminalScreen))
_kernel = _model(TypeAdapter(KernelInfo))
_kernels = _model(TypeAdapter(list[KernelInfo]))
_result = _model(TypeAdapter(ExecutionResult))
_files = _model(TypeAdapter(list[WorkingFile]))
_pool = _model(TypeAdapter(PoolState))
_connection = _model(TypeAdapter(ConnectionInfo))
_connections = _model(TypeAdapter(list[ConnectionInfo]))
_tested = _model(TypeAdapter(ConnectionTest))


def create_terminal(
    *,
    name: str | None = None,
    id: str | None = None,
    command: list[str] | None = None,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    rows: int | None = None,
    cols: int | None = None,
    connection_id: str | None = None,
    node: str | None = None,
) -> Call[TerminalState]:
    given: dict[str, Any] = {"name": name, "id": id, "command": command, "cwd": cwd}
    given |= {"env": env, "rows": rows, "cols": cols, "connection_id": connection_id}
    given |= {"node": node}  # only a cluster's nodes know it (SPEC §12)
    body = {k: v for k, v in given.items() if v is not None}
    errors: dict[int, type[HearthError]] = {502: BadGateway} if connection_id else {}
    return Call("POST", TERMINALS, _terminal, json=body, errors=errors)


def list_terminals() -> Call[list[TerminalState]]:
    return Call("GET", TERMINALS, _terminals)


def get_terminal(id: str) -> Call[TerminalState]:
    return Call("GET", f"{TERMINALS}/{_seg(id)}", _terminal)


def rename_terminal(id: str, name: str) -> Call[TerminalState]:
    return Call("PATCH", f"{TERMINALS}/{_seg(id)}", _terminal, json={"name": name})


def close_terminal(id: str) -> Call[None]:
    return Call("DELETE", f"{TERMINALS}/{_seg(id)}", _none)


def terminal_history(id: str, since: int | None, limit: int | None) -> Call[list[HistoryEntry]]:
    params = {k: v for k, v in {"since": since, "limit": limit}.items() if v is not None}
    return Call("GET", f"{TERMINALS}/{_seg(id)}/history", _history, params=params)


def terminal_screen(id: str) -> Call[TerminalScreen]:
    return Call("GET", f"{TERMINALS}/{_seg(id)}/screen", _screen)


def terminal_recording(id: str) -> Call[str]:
    return Call("GET", f"{TERMINALS}/{_seg(id)}/recording.cast", _text)


def create_kernel(
    session_id: str | None,
    files: list[dict[str, str]] | None,
    kernel_name: str | None,
    node: str | None = None,
) -> Call[KernelInfo]:
    body: dict[str, Any] = {"files": list(files or [])}
    if session_id is not None:
        body["session_id"] = session_id
    if kernel_name is not None:
        body["kernel_name"] = kernel_name
    if node is not None:  # only a cluster's nodes know it (SPEC §12)
        body["node"] = node
    return Call("POST", KERNELS, _kernel, json=body, long=True)


def list_kernels() -> Call[list[KernelInfo]]:
    return Call("GET", KERNELS, _kernels)


def get_kernel(id: str) -> Call[KernelInfo]:
    return Call("GET", f"{KERNELS}/{_seg(id)}", _kernel)


def execute(id: str, code: str, timeout: float | None, stream: bool = False) -> Call[Any]:
    body: dict[str, Any] = {"code": code}
    if timeout is not None:
        body["timeout"] = timeout
    params = {"stream": "true"} if stream else {}
    return Call(
        "POST", f"{KERNELS}/{_seg(id)}/execute", _result, params=params, json=body, long=True
    )


def parse_event(line: str) -> KernelEvent:
    """One NDJSON event of a streamed execution."""
    event: KernelEvent = json.loads(line)
    return event


def interrupt_kernel(id: str) -> Call[KernelInfo]:
    return Call("POST", f"{KERNELS}/{_seg(id)}/interrupt", _kernel, long=True)


def restart_kernel(id: str) -> Call[KernelInfo]:
    return Call("POST", f"{KERNELS}/{_seg(id)}/restart", _kernel, long=True)


def terminate_kernel(id: str) -> Call[None]:
    return Call("DELETE", f"{KERNELS}/{_seg(id)}", _none, long=True)


def kernel_files(id: str) -> Call[list[WorkingFile]]:
    return Call("GET", f"{KERNELS}/{_seg(id)}/files", _files)


def _file_path(id: str, path: str) -> str:
    return f"{KERNELS}/{_seg(id)}/files/{quote(path.lstrip('/'), safe='/')}"


def upload(id: str, path: str, data: bytes | str) -> Call[dict[str, Any]]:
    content = data.encode() if isinstance(data, str) else bytes(data)
    return Call("PUT", _file_path(id, path), _dict, content=content, long=True)


def download(id: str, path: str) -> Call[bytes]:
    return Call("GET", _file_path(id, path), _raw, long=True)


def pool() -> Call[PoolState]:
    return Call("GET", "/api/v1/pool", _pool)


# --- saved connections (SPEC §11) ---------------------------------------------------------------


class Unset(enum.Enum):
    """The type of :data:`UNSET`."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset.UNSET
"""An argument not given: ``connections.change`` sends only the fields it is not."""


def _auth(
    password: str | None, private_key: str | None, passphrase: str | None
) -> dict[str, str] | None:
    """The ``auth`` object of a connection: a password, or a private key and its passphrase."""
    if password is not None and private_key is not None:
        raise ValueError("Give a password or a private key, not both.")
    if passphrase is not None and private_key is None:
        raise ValueError(
            "A passphrase goes with its private key: give private_key too (the secret is "
            "replaced whole)."
        )
    if password is not None:
        return {"password": password}
    if private_key is not None:
        auth = {"private_key": private_key}
        if passphrase is not None:
            auth["passphrase"] = passphrase
        return auth
    return None


def create_connection(
    *,
    host: str,
    username: str,
    port: int = 22,
    password: str | None = None,
    private_key: str | None = None,
    passphrase: str | None = None,
    host_key: str | None = None,
    id: str | None = None,
    name: str | None = None,
) -> Call[ConnectionInfo]:
    given: dict[str, Any] = {"id": id, "name": name, "host": host, "port": port}
    given |= {"username": username, "host_key": host_key}
    given["auth"] = _auth(password, private_key, passphrase)
    body = {k: v for k, v in given.items() if v is not None}
    return Call("POST", CONNECTIONS, _connection, json=body)


def list_connections() -> Call[list[ConnectionInfo]]:
    return Call("GET", CONNECTIONS, _connections)


def get_connection(id: str) -> Call[ConnectionInfo]:
    return Call("GET", f"{CONNECTIONS}/{_seg(id)}", _connection)


def change_connection(
    id: str,
    *,
    name: str | Unset = UNSET,
    host: str | Unset = UNSET,
    port: int | Unset = UNSET,
    username: str | Unset = UNSET,
    password: str | Unset = UNSET,
    private_key: str | Unset = UNSET,
    passphrase: str | Unset = UNSET,
    host_key: str | Unset | None = UNSET,
) -> Call[ConnectionInfo]:
    """A PATCH of the fields given, and of those only; ``host_key=None`` is sent as null."""
    kept = {"name": name, "host": host, "port": port, "username": username}
    secrets = {"password": password, "private_key": private_key, "passphrase": passphrase}
    for field_name, value in (kept | secrets).items():
        if value is None:
            raise ValueError(
                f"{field_name} can't be None: leave it out to keep what the connection has."
            )
    body: dict[str, Any] = {k: v for k, v in kept.items() if v is not UNSET}
    if host_key is not UNSET:
        body["host_key"] = host_key
    given = {k: None if v is UNSET else v for k, v in secrets.items()}
    auth = _auth(given["password"], given["private_key"], given["passphrase"])
    if auth is not None:
        body["auth"] = auth
    return Call("PATCH", f"{CONNECTIONS}/{_seg(id)}", _connection, json=body)


def delete_connection(id: str) -> Call[None]:
    return Call("DELETE", f"{CONNECTIONS}/{_seg(id)}", _none)


def test_connection(id: str) -> Call[ConnectionTest]:
    path = f"{CONNECTIONS}/{_seg(id)}/test"
    return Call("POST", path, _tested, long=True, errors={502: BadGateway})


# --- errors -------------------------------------------------------------------------------------


def raise_for_status(
    status: int, body: bytes, errors: Mapping[int, type[HearthError]] | None = None
) -> None:
    """Raise the typed error of an error answer, with the server's message; ``errors``: the
    call's own error for a status, where it has one."""
    if status < 400:
        return
    message = _detail(status, body)
    cls = (errors or {}).get(status)
    raise cls(message) if cls is not None else error_for_status(status, message)


def _detail(status: int, body: bytes) -> str:
    try:
        detail = json.loads(body)["detail"]
    except (ValueError, KeyError, TypeError):
        text = body.decode(errors="replace").strip()
        return text[:300] or f"the server answered HTTP {status}"
    if isinstance(detail, list):  # FastAPI's 422: [{"loc": [...], "msg": ...}, ...]
        return "; ".join(_validation_problem(p) for p in detail) or "invalid request"
    return str(detail)


def _validation_problem(problem: Any) -> str:
    if not isinstance(problem, dict):
        return str(problem)
    loc = [str(p) for p in problem.get("loc", []) if p not in ("body", "query", "path")]
    msg = str(problem.get("msg", "invalid"))
    return f"{'.'.join(loc)}: {msg}" if loc else msg


def unreachable(url: str, reason: object) -> HearthError:
    """The error for a server that can't be reached at all."""
    return ServiceError(
        f"Cannot reach the Hearth server at {url} ({reason}). Is it running? Start it with "
        "'hearth serve', or point to it with --url or HEARTH_URL."
    )


def timed_out(url: str, call: Call[Any]) -> HearthError:
    return ServiceError(
        f"The Hearth server at {url} did not answer {call.method} {call.path} in time; "
        "it may be overloaded. Try again, or pass a longer timeout to the client."
    )


@contextlib.contextmanager
def transport_errors(url: str, call: Call[Any]) -> Iterator[None]:
    """Turn httpx's transport failures into the error tree (the same for sync and async)."""
    try:
        yield
    except httpx.TimeoutException:
        raise timed_out(url, call) from None
    except httpx.ConnectError as exc:
        raise unreachable(url, _reason(exc)) from None
    except httpx.TransportError as exc:
        raise ServiceError(
            f"The connection to the Hearth server at {url} broke during {call.method} "
            f"{call.path} ({_reason(exc)}). Try again."
        ) from None


def _reason(exc: Exception) -> str:
    text = str(exc)
    if "refused" in text.lower():
        return "connection refused"
    return text or type(exc).__name__


def timeout_of(call: Call[Any], default: httpx.Timeout) -> httpx.Timeout:
    """Long calls wait for their answer as long as it takes; the rest use ``default``."""
    if not call.long:
        return default
    return httpx.Timeout(default.connect, read=None, write=default.write, pool=default.pool)
