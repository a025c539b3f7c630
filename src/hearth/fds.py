"""Room for file descriptors: a session host holds a PTY and a log per terminal, a web server a
socket per connection, and the usual soft limit (1024, systemd's default) ends a server at a
thousand terminals with "Too many open files". Both raise their soft limit to the hard one.
A session gets ``session_nofile_limit`` as its soft and hard limit (``session_nofile``, applied
by its launch), so that the raise does not multiply what one session may hold and the session
can't raise it again; with 0, the soft limit the server had before it raised its own."""

from __future__ import annotations

import logging
import resource

__all__ = ["raise_open_files", "session_nofile", "session_open_files"]

log = logging.getLogger("hearth.fds")

ENOUGH = 1 << 20  # above this nothing here needs more, and some systems' hard limit is huge

_before = 0  # the soft limit before the raise; 0: not raised


def session_open_files() -> int:
    """The soft open-files limit for sessions: the server's before it raised it (0: unchanged)."""
    return _before


def session_nofile(limit: int) -> tuple[int, int]:
    """A session's (soft, hard) RLIMIT_NOFILE for ``session_nofile_limit``; 0 leaves one as it
    is. ``limit`` 0: the soft limit the server had (:func:`session_open_files`). Never above
    this process's hard limit, which a server that isn't root can't raise."""
    if limit == 0:
        return _before, 0
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < limit:
        log.warning(
            "session_nofile_limit is above this server's hard limit of open files",
            extra={"session_nofile_limit": limit, "hard_limit": hard},
        )
        limit = hard
    return limit, limit


def raise_open_files(before: int = 0) -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (at most ``ENOUGH``); the new soft limit.
    ``before``: the limit its sessions get, if the process that started this one raised it."""
    global _before
    _before = before
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = ENOUGH if hard == resource.RLIM_INFINITY else min(hard, ENOUGH)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            _before, soft = before or soft, want
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-files limit", extra={"reason": str(exc)})
    return soft
