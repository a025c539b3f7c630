"""Room for file descriptors: a session host holds a PTY and a log per terminal, a web server a
socket per connection, and the usual soft limit (1024, systemd's default) ends a server at a
thousand terminals with "Too many open files". Both raise their soft limit to the hard one;
the sessions they start inherit it (as they do under Docker, whose default is a million)."""

from __future__ import annotations

import logging
import resource

__all__ = ["raise_open_files"]

log = logging.getLogger("hearth.fds")

ENOUGH = 1 << 20  # above this nothing here needs more, and some systems' hard limit is huge


def raise_open_files() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (at most ``ENOUGH``); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = ENOUGH if hard == resource.RLIM_INFINITY else min(hard, ENOUGH)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-files limit", extra={"reason": str(exc)})
    return soft
