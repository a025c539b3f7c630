"""Node-to-node calls: a relayed request carries the user the first node authenticated, signed
with ``cluster_secret`` (HMAC-SHA256 over the node, the time, the user, the method and the path),
never the user's token. A signature holds for ``SKEW`` seconds and for that request line only.
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ["HEADER", "SKEW", "Signer"]

HEADER = "x-hearth-relay"
SKEW = 60.0  # seconds a signature is good for, either way (the nodes' clocks may differ a little)


class Signer:
    def __init__(self, secret: str, node: str) -> None:
        self._key = hashlib.sha256(b"hearth relay\0" + secret.encode()).digest()
        self.node = node

    def sign(self, user: str, method: str, path: str, now: float | None = None) -> str:
        """The header's value for ``user``'s ``method`` on ``path`` (with its query)."""
        stamp = f"{now if now is not None else time.time():.3f}"
        return f"{self.node} {stamp} {user} {self._mac(self.node, stamp, user, method, path)}"

    def verify(self, value: str, method: str, path: str, now: float | None = None) -> str | None:
        """The user a valid header names; None for anything else (wrong key, old, malformed)."""
        parts = value.split(" ")
        if len(parts) != 4:
            return None
        node, stamp, user, mac = parts
        try:
            age = abs((now if now is not None else time.time()) - float(stamp))
        except ValueError:
            return None
        if age > SKEW:
            return None
        expected = self._mac(node, stamp, user, method, path)
        return user if hmac.compare_digest(expected, mac) else None

    def _mac(self, node: str, stamp: str, user: str, method: str, path: str) -> str:
        message = "\n".join((node, stamp, user, method.upper(), path)).encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()
