"""Room for file descriptors: a session host holds a PTY and a log per terminal, a web server a
socket per connection, and the usual soft limit (1024, systemd's default) ends a server at a
thousand terminals with "Too many open files". Both raise their soft limit to the hard one.
A sandboxed session is given back the limit the server had (``session_open_files``, applied by
its launch), so that the raise does not multiply what one session may hold; an unsandboxed
one, with no limits at all, inherits the raised one."""

from __future__ import annotations

import logging
import resource

__all__ = ["raise_open_files", "session_open_files"]

log = logging.getLogger("hearth.fds")

ENOUGH = 1 << 20  # above this nothing here needs more, and some systems' hard limit is huge

_before = 0  # the soft limit before the raise; 0: not raised


def session_open_files() -> int:
    """The soft open-files limit for sessions: the server's before it raised it (0: unchanged)."""
    return _before


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
