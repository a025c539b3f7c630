"""A saved connection as clients send it (:class:`ConnectionSpec`, :class:`ConnectionPatch`) and
as every answer shows it (:class:`ConnectionInfo`: never a secret)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "ConnectionInfo",
    "ConnectionPatch",
    "ConnectionSpec",
    "ConnectionTest",
    "KeyAuth",
    "OperatorConnection",
    "PasswordAuth",
    "auth_kind",
]

_ID = r"^[A-Za-z0-9_-]{1,64}$"
_HOST = r"^[^\s/@]{1,255}$"  # a name or an address: no spaces, paths or user@


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PasswordAuth(_Model):
    password: str = Field(min_length=1, max_length=4096)


class KeyAuth(_Model):
    private_key: str = Field(min_length=1, max_length=65536, description="OpenSSH or PEM text")
    passphrase: str | None = Field(default=None, max_length=4096)


Auth = PasswordAuth | KeyAuth


class ConnectionSpec(_Model):
    id: str | None = Field(default=None, pattern=_ID)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    protocol: Literal["ssh"] = "ssh"
    host: str = Field(pattern=_HOST)
    port: int = Field(default=22, ge=1, le=65535)
    username: str = Field(min_length=1, max_length=64, pattern=r"^[^\s:@/]+$")
    auth: Auth | None = None  # none: the server must let the user in without (rare)
    host_key: str | None = Field(
        default=None,
        max_length=16384,
        description="the server's public key (as in known_hosts) or its SHA256 fingerprint; "
        "without it the first key seen is pinned",
    )
    jump: str | None = Field(
        default=None, pattern=_ID, description="another saved connection to reach this one through"
    )


class ConnectionPatch(_Model):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    host: str | None = Field(default=None, pattern=_HOST)
    port: int | None = Field(default=None, ge=1, le=65535)
    username: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[^\s:@/]+$")
    auth: Auth | None = None
    host_key: str | None = Field(default=None, max_length=16384)
    jump: str | None = Field(
        default=None, pattern=_ID, description="another saved connection to reach this one through"
    )

    @model_validator(mode="after")
    def _kept_fields_are_not_cleared(self) -> ConnectionPatch:
        for name in ("name", "host", "port", "username"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} can't be null: leave it out to keep it")
        return self


class OperatorConnection(_Model):
    """A connection the operator defines in the config file (``[[connections]]``) for the users
    it names: they open terminals on it and never see its credentials. Its host key is given:
    the users can't check a first one."""

    id: str = Field(pattern=_ID)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    host: str = Field(pattern=_HOST)
    port: int = Field(default=22, ge=1, le=65535)
    username: str = Field(min_length=1, max_length=64, pattern=r"^[^\s:@/]+$")
    password: str | None = Field(default=None, min_length=1)
    private_key_file: str | None = None  # read by the session host at each connect
    passphrase: str | None = None
    host_key: str = Field(min_length=1, max_length=16384)
    jump: str | None = Field(default=None, pattern=_ID)  # another of the operator's connections
    users: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_way_in(self) -> OperatorConnection:
        if self.password is not None and self.private_key_file is not None:
            raise ValueError(f"connection {self.id!r}: give password or private_key_file, not both")
        return self


class ConnectionInfo(_Model):
    id: str
    name: str
    protocol: Literal["ssh"]
    host: str
    port: int
    username: str
    auth: Literal["password", "private_key", "none"]  # which kind is kept, never what
    host_key: str | None  # given, or pinned at the first connect
    jump: str | None = None  # the connection it is reached through (a jump host)
    created_at: float
    updated_at: float
    shared: bool = False  # defined by the operator (read-only, its credentials not shown)


class ConnectionTest(_Model):
    """What ``POST …/connections/{id}/test`` found: the server's key, and whether the login
    works. Credentials are offered only to a server whose key matches the pinned one."""

    host_key: str  # the key the server presented, as in known_hosts
    fingerprint: str  # its SHA256 fingerprint
    host_key_matches: bool | None  # None: nothing pinned yet (the first terminal pins it)
    authenticated: bool | None  # None: not tried (the key did not match)
    detail: str | None = None  # what failed, when something did


def auth_kind(auth: Auth | None) -> Literal["password", "private_key", "none"]:
    if isinstance(auth, PasswordAuth):
        return "password"
    if isinstance(auth, KeyAuth):
        return "private_key"
    return "none"
