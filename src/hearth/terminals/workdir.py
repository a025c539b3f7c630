"""Where a new terminal starts: the directory its spec asks for, checked before anything runs.

A sandboxed session sees only its user's home, so its directory must lie inside that home (a
``..`` or a symlink that leads out is refused); an unsandboxed one may start anywhere that exists.
"""

from __future__ import annotations

from pathlib import Path

from hearth.errors import BadRequest

__all__ = ["inside_home", "working_dir"]


def working_dir(home: Path, cwd: str | None, *, jailed: bool) -> Path:
    """The directory a terminal of ``home``'s user starts in (default: the home)."""
    if jailed:
        return inside_home(home, cwd)
    path = Path(cwd).expanduser() if cwd else Path.home()
    if not path.is_dir():
        raise BadRequest(f"Working directory {cwd!r} does not exist; give an existing one.")
    return path


def inside_home(home: Path, cwd: str | None) -> Path:
    """``cwd`` resolved inside ``home`` (relative to it, or absolute under it), as a path under
    ``home`` itself (not under where it resolves to)."""
    if not cwd:
        return home
    real_home = home.resolve()  # the data dir's homes/ may lead into its disk image
    path = (home / cwd).resolve()
    if not path.is_relative_to(real_home):
        raise BadRequest(
            f"Working directory {cwd!r} is outside your home {str(home)!r}; sessions see only "
            "their home: give a path inside it."
        )
    if not path.is_dir():
        raise BadRequest(f"Working directory {cwd!r} does not exist in your home; create it.")
    return home / path.relative_to(real_home)
