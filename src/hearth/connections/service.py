"""A user's saved connections, in the store: their fields in clear, their secrets sealed."""

from __future__ import annotations

import fnmatch
import secrets as random
import time
from collections.abc import Sequence
from typing import Any, Literal

from hearth.connections.sealed import Sealer
from hearth.contract.connections import (
    ConnectionInfo,
    ConnectionPatch,
    ConnectionSpec,
    KeyAuth,
    OperatorConnection,
    PasswordAuth,
    auth_kind,
)
from hearth.errors import BadRequest, Conflict, NotFound, ServiceError
from hearth.store import SessionStore

__all__ = ["Connections", "host_allowed"]

KIND = "connection"
MAX_PER_USER = 256


def host_allowed(host: str, patterns: Sequence[str]) -> bool:
    """Whether ``connection_allowed_hosts`` lets connections reach ``host``."""
    return any(fnmatch.fnmatchcase(host.lower(), p.lower()) for p in patterns)


def check_host(host: str, patterns: Sequence[str]) -> None:
    if not host_allowed(host, patterns):
        raise BadRequest(
            f"Connections may not reach {host} (the server's connection_allowed_hosts): ask "
            "its operator, or use another host."
        )


class Connections:
    """A user's own connections (in the store) and the operator's for them (in the settings)."""

    def __init__(
        self,
        store: SessionStore,
        sealer: Sealer,
        allowed_hosts: Sequence[str] = ("*",),
        operator: Sequence[OperatorConnection] = (),
    ) -> None:
        self._store = store
        self._sealer = sealer
        self.allowed_hosts = list(allowed_hosts)
        self._operator = {c.id: c for c in operator}
        self._started = time.time()

    def create(self, user: str, spec: ConnectionSpec) -> ConnectionInfo:
        check_host(spec.host, self.allowed_hosts)
        self._check_jump(user, spec.id, spec.jump)
        records = self._store.list(KIND, user)
        if len(records) >= MAX_PER_USER:
            raise Conflict(f"At most {MAX_PER_USER} connections per user: delete one first.")
        id = spec.id or f"c-{random.token_hex(6)}"
        if self._store.get(KIND, user, id) is not None or self._shared(user, id) is not None:
            raise Conflict(f"A connection {id!r} exists already: PATCH it, or pick another id.")
        now = time.time()
        record: dict[str, Any] = {
            "id": id,
            "name": spec.name or f"{spec.username}@{spec.host}",
            "protocol": spec.protocol,
            "host": spec.host,
            "port": spec.port,
            "username": spec.username,
            "auth": auth_kind(spec.auth),
            "host_key": spec.host_key,
            "jump": spec.jump,
            "created_at": now,
            "updated_at": now,
        }
        if spec.auth is not None:
            _check_key(spec.auth)
            record["sealed"] = self._sealer.seal(spec.auth.model_dump(), _bound(user, id))
        self._store.put(KIND, user, id, record)
        return _info(record)

    def list_connections(self, user: str) -> list[ConnectionInfo]:
        shared = [self._shared_info(c) for c in self._operator.values() if user in c.users]
        records = sorted(self._store.list(KIND, user), key=lambda r: r["created_at"])
        return [*shared, *(_info(r) for r in records)]

    def get(self, user: str, id: str) -> ConnectionInfo:
        if (shared := self._shared(user, id)) is not None:
            return self._shared_info(shared)
        return _info(self._record(user, id))

    def change(self, user: str, id: str, patch: ConnectionPatch) -> ConnectionInfo:
        self._refuse_shared(user, id)
        record = self._record(user, id)
        if patch.host is not None:
            check_host(patch.host, self.allowed_hosts)
        if patch.jump is not None:
            self._check_jump(user, id, patch.jump)
        given = patch.model_dump(exclude_unset=True, exclude={"auth"})
        if {"host", "port"} & given.keys() and "host_key" not in given:
            given["host_key"] = None  # another machine: its key is pinned again
        record.update(given)
        if "auth" in patch.model_fields_set:
            record["auth"] = auth_kind(patch.auth)
            record.pop("sealed", None)
            if patch.auth is not None:
                _check_key(patch.auth)
                record["sealed"] = self._sealer.seal(patch.auth.model_dump(), _bound(user, id))
        record["updated_at"] = time.time()
        self._store.put(KIND, user, id, record)
        return _info(record)

    def delete(self, user: str, id: str) -> None:
        self._refuse_shared(user, id)
        self._record(user, id)
        through = [c.id for c in self.list_connections(user) if c.jump == id]
        if through:
            raise Conflict(
                f"Connections {', '.join(through)} are reached through {id!r}: change their "
                "jump first."
            )
        self._store.delete(KIND, user, id)

    def pin(self, user: str, id: str, host_key: str) -> None:
        """Keep the key a first connect saw (``StrictHostKeyChecking=accept-new``)."""
        record = self._record(user, id)
        record["host_key"] = host_key
        self._store.put(KIND, user, id, record)

    def credentials(
        self, user: str, id: str
    ) -> tuple[ConnectionInfo, PasswordAuth | KeyAuth | None]:
        """The connection and its opened secrets: for the SSH client in this process only."""
        if (shared := self._shared(user, id)) is not None:
            return self._shared_info(shared), _operator_auth(shared)
        record = self._record(user, id)
        sealed = record.get("sealed")
        if sealed is None:
            return _info(record), None
        opened = self._sealer.open(sealed, _bound(user, id))
        auth = PasswordAuth(**opened) if "password" in opened else KeyAuth(**opened)
        return _info(record), auth

    def _check_jump(self, user: str, id: str | None, jump: str | None) -> None:
        """A jump host is another of the user's connections, reached directly (one hop)."""
        if jump is None:
            return
        if jump == id:
            raise BadRequest("A connection can't be its own jump host.")
        try:
            through = self.get(user, jump)
        except NotFound:
            raise BadRequest(f"No connection {jump!r} to jump through: save it first.") from None
        if through.jump is not None:
            raise BadRequest(
                f"Connection {jump!r} is itself reached through {through.jump!r}: one jump host "
                "at most."
            )

    def _shared(self, user: str, id: str) -> OperatorConnection | None:
        connection = self._operator.get(id)
        return connection if connection is not None and user in connection.users else None

    def _shared_info(self, c: OperatorConnection) -> ConnectionInfo:
        auth: Literal["password", "private_key", "none"] = (
            "password" if c.password else "private_key" if c.private_key_file else "none"
        )
        return ConnectionInfo(
            id=c.id,
            name=c.name or f"{c.username}@{c.host}",
            protocol="ssh",
            host=c.host,
            port=c.port,
            username=c.username,
            auth=auth,
            host_key=c.host_key,
            jump=c.jump,
            created_at=self._started,
            updated_at=self._started,
            shared=True,
        )

    def _refuse_shared(self, user: str, id: str) -> None:
        if self._shared(user, id) is not None:
            raise Conflict(
                f"Connection {id!r} is the operator's (the server's config file): only they "
                "can change it."
            )

    def _record(self, user: str, id: str) -> dict[str, Any]:
        record = self._store.get(KIND, user, id)
        if record is None:
            raise NotFound(f"No connection {id!r}.")
        return record


def _check_key(auth: PasswordAuth | KeyAuth) -> None:
    """A private key that can't be read is refused now, not at the first terminal."""
    if isinstance(auth, KeyAuth):
        from hearth.connections.ssh import private_key  # asyncssh: 0.3 s, at first use

        private_key(auth)


def _operator_auth(c: OperatorConnection) -> PasswordAuth | KeyAuth | None:
    if c.password is not None:
        return PasswordAuth(password=c.password)
    if c.private_key_file is None:
        return None
    try:
        with open(c.private_key_file) as f:
            key = f.read()
    except OSError as exc:
        raise ServiceError(
            f"The key file of connection {c.id!r} can't be read by the session host "
            f"({exc.strerror}): tell the server's operator."
        ) from None
    return KeyAuth(private_key=key, passphrase=c.passphrase)


def _bound(user: str, id: str) -> str:
    return f"{KIND}\0{user}\0{id}"


def _info(record: dict[str, Any]) -> ConnectionInfo:
    return ConnectionInfo.model_validate({k: v for k, v in record.items() if k != "sealed"})
