"""The one error tree of Hearth, shared by the server and the client.

    HearthError
     ├── RequestError            the caller's request can't be served as asked (4xx)
     │    ├── BadRequest         400: malformed or impossible input
     │    ├── Unauthorized       401: no token, or a wrong one
     │    ├── OriginRefused      403: a websocket from a foreign origin
     │    ├── NotFound           404: no such session (or not yours: same answer)
     │    ├── Conflict           409: the id is taken
     │    ├── SessionClosed      409: the session's process has exited
     │    └── LimitReached       429: a configured limit is reached
     └── ServiceError            the world broke something, not the caller (5xx)
          ├── KernelDied         the kernel process died
          ├── DownloadFailed     502: a file of the request could not be fetched
          ├── BadGateway         502: another machine refused a step (an SSH connection's)
          ├── HostUnavailable    503: the session host can't be reached (retry)
          ├── ScreenUnavailable  503: no screen model (off, or restarting): replay instead
          ├── SecretsUnreadable  a saved secret the connections key does not open
          ├── SandboxUnavailable the sandbox asked for can't be had on this machine
          └── InsufficientStorage 507: the server's disk is full

Every message says what is wrong and what to do about it. The server turns an error into an
HTTP status (``status_code``) or a websocket close code (``close_code``); the client turns
them back.
"""

from __future__ import annotations

import errno

__all__ = [
    "BadGateway",
    "BadRequest",
    "Conflict",
    "DownloadFailed",
    "HearthError",
    "HostUnavailable",
    "InsufficientStorage",
    "KernelDied",
    "LimitReached",
    "NotFound",
    "OriginRefused",
    "RequestError",
    "SandboxUnavailable",
    "ScreenUnavailable",
    "SecretsUnreadable",
    "ServiceError",
    "SessionClosed",
    "Unauthorized",
    "error_for_status",
]

SQLITE_FULL = 13  # sqlite3.SQLITE_FULL, without importing sqlite3 into every client


class HearthError(Exception):
    status_code: int = 500
    close_code: int = 1011

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class RequestError(HearthError):
    status_code = 400
    close_code = 4400


class BadRequest(RequestError):
    status_code = 400
    close_code = 4400


class Unauthorized(RequestError):
    status_code = 401
    close_code = 4401


class OriginRefused(RequestError):
    status_code = 403
    close_code = 4403


class NotFound(RequestError):
    status_code = 404
    close_code = 4404


class Conflict(RequestError):
    status_code = 409
    close_code = 4409


class SessionClosed(Conflict):
    """The session exists but its process has exited: read its output, or open a new one."""


class LimitReached(RequestError):
    status_code = 429
    close_code = 4429


class ServiceError(HearthError):
    status_code = 500
    close_code = 1011


class KernelDied(ServiceError):
    status_code = 500


class DownloadFailed(ServiceError):
    status_code = 502


class BadGateway(ServiceError):
    """Another machine refused or failed what was asked of it (an SSH connection's step)."""

    status_code = 502
    close_code = 1014  # "bad gateway"


class HostUnavailable(ServiceError):
    """The session host can't be reached: it stopped, or another version of it runs."""

    status_code = 503
    close_code = 1012  # "service restart": clients reconnect and resume by offset


class ScreenUnavailable(ServiceError):
    """No screen model to answer from (it is off, or restarting): replay the output instead."""

    status_code = 503


class SecretsUnreadable(ServiceError):
    """A sealed secret that the connections key does not open (the key was replaced or lost)."""


class InsufficientStorage(ServiceError):
    """The server's disk is full (or the data directory's quota)."""

    status_code = 507


def storage_error(exc: BaseException) -> InsufficientStorage | None:
    """``exc`` as a 507 when it says the disk (or a quota) is full: an OSError's ENOSPC or
    EDQUOT, SQLite's SQLITE_FULL."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "the server's disk is full"
    elif getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL:
        what = "the server's disk is full: its store can't be written"
    else:
        return None
    return InsufficientStorage(
        f"Not done: {what}. Nothing was kept of it; free space in the data directory (or ask "
        "the administrator to), then try again."
    )


_BY_STATUS: dict[int, type[HearthError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: OriginRefused,
    404: NotFound,
    409: Conflict,
    422: BadRequest,
    429: LimitReached,
    502: DownloadFailed,
    503: HostUnavailable,
    507: InsufficientStorage,
}


def error_for_status(status_code: int, message: str) -> HearthError:
    """The typed error for an HTTP status or websocket close code (4xxx) and its message."""
    if 4000 <= status_code < 5000:
        status_code -= 4000
    cls = _BY_STATUS.get(status_code)
    if cls is None:
        cls = RequestError if 400 <= status_code < 500 else ServiceError
    return cls(message)


class SandboxUnavailable(ServiceError):
    """The sandbox asked for can't be had on this machine (the message says how to fix it)."""


# Why a server refuses to serve several users where their sessions wouldn't be kept apart.
UNSANDBOXED_USERS = (
    "Several users are configured but sessions would run without a sandbox, so each "
    "user's code could read the others' data and stop the server. Install bubblewrap "
    '(Debian: apt-get install bubblewrap), or set sandbox = "none" '
    "(HEARTH_SANDBOX=none) to accept that."
)

RLIMITS_ONLY = (
    "Several users are configured but this server runs as a plain user with no delegated cgroup, "
    "so session limits would be per-process rlimits: memory is limited per process, not per "
    "session, and every user's sessions share the per-uid limits of the kernel (inotify, "
    "message queues, pending signals). Run it in a delegated cgroup v2 (e.g. systemd-run --user "
    '-p Delegate=yes hearth serve), or as root, or set session_limits = "rlimit" '
    "(HEARTH_SESSION_LIMITS=rlimit) to accept that."
)
