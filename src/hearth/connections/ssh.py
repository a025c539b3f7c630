"""Opening a terminal on a saved connection: an asyncssh connection and a PTY channel, in the
session host. Nothing of the host user's ``~/.ssh``, agent or Kerberos is used: every option is
passed. A failed step is a :class:`BadGateway` that names it (and, for a host key, both
fingerprints), and leaves nothing open.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Mapping

from hearth.connections.quiet_asyncssh import asyncssh
from hearth.contract.connections import ConnectionInfo, ConnectionTest, KeyAuth, PasswordAuth
from hearth.errors import BadGateway, BadRequest
from hearth.terminals.ssh_source import WINDOW, SshSource, TerminalChannel

__all__ = ["open_terminal", "private_key", "probe"]

CONNECT_TIMEOUT = 15.0
# AES-GCM first: with AES-NI it costs a tenth of chacha20 per keystroke (docs/design/ssh-client.md)
CIPHERS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com"]


class _Client(asyncssh.SSHClient):
    """Checks the server's key against the connection's pin, and remembers what it saw."""

    def __init__(self, pinned: str | None) -> None:
        self.pinned = pinned
        self.seen: asyncssh.SSHKey | None = None

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        self.seen = key
        if self.pinned is None:
            return True  # trust on first use; pinned once the session opens
        if self.pinned.startswith("SHA256:"):
            return bool(key.get_fingerprint("sha256") == self.pinned)
        try:
            pinned = asyncssh.import_public_key(self.pinned)
        except (asyncssh.KeyImportError, ValueError):
            return False
        return bool(pinned == key)


def _options(
    info: ConnectionInfo, auth: PasswordAuth | KeyAuth | None, keepalive: float = 15.0
) -> asyncssh.SSHClientConnectionOptions:
    return asyncssh.SSHClientConnectionOptions(
        username=info.username,
        password=auth.password if isinstance(auth, PasswordAuth) else None,
        client_keys=[private_key(auth)] if isinstance(auth, KeyAuth) else None,
        known_hosts=([], [], []),  # every key goes through _Client.validate_host_public_key
        config=[],
        agent_path=None,
        agent_forwarding=False,
        x11_forwarding=False,
        gss_auth=False,
        gss_kex=False,
        kbdint_auth=False,
        connect_timeout=CONNECT_TIMEOUT,
        login_timeout=CONNECT_TIMEOUT,
        keepalive_interval=keepalive,  # three unanswered: "connection lost"
        keepalive_count_max=3,
        encryption_algs=CIPHERS,
    )


async def probe(
    info: ConnectionInfo,
    auth: PasswordAuth | KeyAuth | None,
    jump: tuple[ConnectionInfo, PasswordAuth | KeyAuth | None] | None = None,
) -> ConnectionTest:
    """Connect (through ``jump``'s machine, if given) and log in, then hang up: what
    ``…/connections/{id}/test`` answers. Nothing is pinned."""
    tunnel = None if jump is None else await _connect(*jump, 15.0, lambda id, key: None)
    try:
        return await _probe(info, auth, tunnel)
    finally:
        if tunnel is not None:
            tunnel.close()


async def _probe(
    info: ConnectionInfo,
    auth: PasswordAuth | KeyAuth | None,
    tunnel: asyncssh.SSHClientConnection | None,
) -> ConnectionTest:
    where = f"{info.username}@{info.host}:{info.port}"
    client = _Client(info.host_key)
    matches: bool | None = None if info.host_key is None else True  # None: nothing pinned yet
    authenticated: bool | None = True
    detail = None
    try:
        connection = await asyncssh.connect(
            info.host,
            info.port,
            tunnel=tunnel,
            client_factory=lambda: client,
            options=_options(info, auth),
        )
    except (asyncssh.HostKeyNotVerifiable, asyncssh.PermissionDenied) as exc:
        if client.seen is None:
            raise _failed(exc, where, client) from None
        detail = _failed(exc, where, client).message
        if isinstance(exc, asyncssh.HostKeyNotVerifiable):
            matches, authenticated = False, None  # no credentials for a server not trusted
        else:
            authenticated = False
    except Exception as exc:
        raise _failed(exc, where, client) from None
    else:
        connection.close()
    assert client.seen is not None
    return ConnectionTest(
        host_key=client.seen.export_public_key().decode().strip(),
        fingerprint=client.seen.get_fingerprint("sha256"),
        host_key_matches=matches,
        authenticated=authenticated,
        detail=detail,
    )


Credentials = tuple[ConnectionInfo, PasswordAuth | KeyAuth | None]


async def open_terminal(
    info: ConnectionInfo,
    auth: PasswordAuth | KeyAuth | None,
    *,
    command: str | None,
    env: Mapping[str, str],
    rows: int,
    cols: int,
    pin: Callable[[str, str], None],
    keepalive: float = 15.0,
    jump: Credentials | None = None,
) -> SshSource:
    """A PTY channel on ``info``'s machine (its login shell, or ``command``), through ``jump``'s
    machine when given (each hop with its own credentials and pin); ``pin(id, key)`` is called
    with a server's public key when its connection had none pinned."""
    tunnel = None
    if jump is not None:
        tunnel = await _connect(*jump, keepalive, pin)
    try:
        connection = await _connect(info, auth, keepalive, pin, tunnel)
    except BaseException:
        if tunnel is not None:
            tunnel.abort()
        raise
    where = _where(info)
    try:
        channel, session = await connection.create_session(
            TerminalChannel,
            command,
            term_type="xterm-256color",
            term_size=(cols, rows),
            env={k.encode(): v.encode() for k, v in env.items()},
            encoding=None,
            window=WINDOW,
        )
    except BaseException as exc:
        connection.abort()
        if tunnel is not None:
            tunnel.abort()
        if isinstance(exc, Exception):
            raise _failed(exc, where, _Client(info.host_key)) from None
        raise
    assert isinstance(session, TerminalChannel)
    return SshSource(connection, channel, session, where, tunnel=tunnel)


def _where(info: ConnectionInfo) -> str:
    return f"{info.username}@{info.host}:{info.port}"


async def _connect(
    info: ConnectionInfo,
    auth: PasswordAuth | KeyAuth | None,
    keepalive: float,
    pin: Callable[[str, str], None],
    tunnel: asyncssh.SSHClientConnection | None = None,
) -> asyncssh.SSHClientConnection:
    """A logged-in connection to ``info``'s machine (through ``tunnel``'s, if given)."""
    client = _Client(info.host_key)
    options = _options(info, auth, keepalive)
    try:
        connection = await asyncssh.connect(
            info.host, info.port, tunnel=tunnel, client_factory=lambda: client, options=options
        )
    except Exception as exc:
        raise _failed(exc, _where(info), client) from None
    if info.host_key is None and client.seen is not None:
        pin(info.id, client.seen.export_public_key().decode().strip())
    return connection


def private_key(auth: KeyAuth) -> asyncssh.SSHKey:
    try:
        return asyncssh.import_private_key(auth.private_key, auth.passphrase)
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError, ValueError) as exc:
        raise BadRequest(
            f"The private key can't be read ({exc}): give it whole (OpenSSH or PEM text), "
            "with its passphrase if it has one."
        ) from None


def _failed(exc: Exception, where: str, client: _Client) -> BadGateway | BadRequest:
    """The step that failed, said so that the user knows what to fix."""
    if isinstance(exc, BadRequest):
        return exc
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        got = client.seen.get_fingerprint("sha256") if client.seen is not None else "none"
        pinned = client.pinned or ""
        if not pinned.startswith("SHA256:"):
            try:
                pinned = asyncssh.import_public_key(pinned).get_fingerprint("sha256")
            except (asyncssh.KeyImportError, ValueError):
                pinned = "an unreadable key"
        return BadGateway(
            f"Host key of {where} does not match the connection's: pinned {pinned}, got {got}. "
            "If the server's key changed on purpose, PATCH the connection's host_key (or set "
            "it to null to pin the next one)."
        )
    if isinstance(exc, asyncssh.PermissionDenied):
        return BadGateway(f"Authentication failed on {where}: check the password or the key.")
    if isinstance(exc, asyncssh.ChannelOpenError):
        return BadGateway(f"{where} refused a terminal: {exc.reason}")
    if isinstance(exc, asyncssh.DisconnectError):
        return BadGateway(f"{where} ended the connection: {exc.reason}")
    if isinstance(exc, socket.gaierror):
        return BadGateway(f"Cannot resolve the host of {where}: {exc.strerror or exc}")
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return BadGateway(f"No SSH answer from {where} within {CONNECT_TIMEOUT:g} s.")
    if isinstance(exc, OSError):
        return BadGateway(f"Cannot reach {where}: {exc.strerror or exc}")
    return BadGateway(f"Cannot open a terminal on {where}: {type(exc).__name__}: {exc}")
