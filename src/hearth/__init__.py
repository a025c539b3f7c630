"""Hearth: execution sessions that are ready at once and outlive their connection."""

from hearth import errors
from hearth.client import AsyncClient, Client
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

__version__ = "0.1.0"

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
