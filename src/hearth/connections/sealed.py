"""Secrets at rest: AES-GCM with a key kept apart from the store.

The key is 32 random bytes in ``<data-dir>/connections.key`` (0600, made on first use), or the
``connection_key`` setting (base64). Each sealed value is bound to the record it belongs to
(the owner and the connection's id, as associated data), so a sealed value copied into another
user's row does not open there.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hearth.errors import SecretsUnreadable

__all__ = ["KEY_FILE", "Sealer"]

KEY_FILE = "connections.key"
_NONCE = 12


class Sealer:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("a connections key is 32 bytes")
        self._aead = AESGCM(key)

    @classmethod
    def for_data_dir(cls, data_dir: Path, configured: str | None = None) -> Sealer:
        """The configured key, else the data directory's key file (made if missing)."""
        if configured:
            try:
                return cls(base64.b64decode(configured, validate=True))
            except (binascii.Error, ValueError):
                raise ValueError(
                    "connection_key must be 32 bytes in base64: make one with "
                    "'head -c 32 /dev/urandom | base64'"
                ) from None
        path = data_dir / KEY_FILE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            return cls(path.read_bytes())
        try:
            os.write(fd, os.urandom(32))
        finally:
            os.close(fd)
        return cls(path.read_bytes())

    def seal(self, secrets: dict[str, str], bound_to: str) -> str:
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, json.dumps(secrets).encode(), bound_to.encode())
        return base64.b64encode(nonce + sealed).decode()

    def open(self, sealed: str, bound_to: str) -> dict[str, str]:
        raw = base64.b64decode(sealed)
        try:
            plain = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], bound_to.encode())
        except InvalidTag:
            raise SecretsUnreadable(
                "This connection's secrets can't be read with the current connections key (was "
                f"{KEY_FILE} replaced?): set its password or key again with PATCH."
            ) from None
        opened: dict[str, str] = json.loads(plain)
        return opened
