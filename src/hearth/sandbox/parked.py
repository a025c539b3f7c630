"""A process parked in a session's cgroup before it is asked for (pure: the scripts).

Entering a cgroup is a migration, and after a quiet spell the kernel makes the first one wait for
an RCU grace period (~5 ms per cgroup v1 hierarchy): the longest step of a sandboxed terminal's
start. A parked ``sh`` (:func:`park_argv`) pays it ahead: it enters a fresh cgroup, then blocks
reading its command from a pipe on its stdin (dash can't name a descriptor above 9); when a
terminal is created, the spawner writes :func:`resume_script` and the ``sh`` becomes the command
(``exec``), with nothing left of itself.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence

__all__ = ["park_argv", "resume_script"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def park_argv(cgroup_procs: Sequence[str], sh: str = "/bin/sh") -> list[str]:
    """The parked process: enter each cgroup, then run what arrives on stdin. Its environment
    is empty (the command's comes with it) and dash's own ``PWD`` is dropped."""
    script = 'unset PWD; for f do echo 0 > "$f" || exit 126; done; . /dev/stdin'
    return [sh, "-c", script, "sh", *cgroup_procs]


def resume_script(argv: Sequence[str], env: Mapping[str, str]) -> str:
    """What the parked ``sh`` reads: the PTY on stdin, export ``env``, become ``argv``.
    Everything is single-quoted: nothing in it is expanded or run but ``argv``::

        exec 0<&1                            the PTY becomes stdin too (and the pipe is closed)
        export HOME='/data/homes/alice' …
        exec bwrap --die-with-parent …
    """
    lines = ["exec 0<&1"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items() if _NAME.fullmatch(k)]
    lines.append("exec " + shlex.join(argv))
    return "\n".join(lines) + "\n"
