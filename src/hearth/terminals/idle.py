"""The idle policy of terminal sessions (pure)."""

from __future__ import annotations

__all__ = ["expired"]


def expired(now: float, last_activity: float, viewers: int, timeout: float) -> bool:
    """A session with no viewer and no activity for ``timeout`` seconds is done; a watched one
    never times out."""
    return viewers == 0 and now - last_activity >= timeout
