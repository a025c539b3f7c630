"""Hearth: execution sessions that are ready at once and outlive their connection."""

from typing import TYPE_CHECKING, Any

from hearth import errors
from hearth.config import Settings
from hearth.errors import (
    BadRequest,
    Conflict,
    HearthError,
    LimitReached,
    NotFound,
    SessionClosed,
    Unauthorized,
)

if TYPE_CHECKING:
    from hearth.client import AsyncClient, Client

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The clients (httpx, their models) load when first used: the server and the session host
    # never use them, and they would cost every start ~0.4 s.
    if name in ("AsyncClient", "Client"):
        import hearth.client

        return getattr(hearth.client, name)
    raise AttributeError(f"module 'hearth' has no attribute {name!r}")


__all__ = [
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "HearthError",
    "LimitReached",
    "NotFound",
    "SessionClosed",
    "Settings",
    "Unauthorized",
    "__version__",
    "errors",
]
