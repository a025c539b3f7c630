"""Names and paths a caller gives us, checked before anything touches the disk (pure).

A path inside a working directory is relative, made of plain components: no ``..``, no absolute
path, no NUL, no empty or over-long name. Symlinks are checked where the disk is (``files.py``).
"""

from __future__ import annotations

import re
import secrets
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

from hearth.errors import BadRequest

__all__ = ["check_session_id", "file_name_from_url", "new_session_id", "safe_relative_path"]

_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
MAX_PATH = 1024
MAX_NAME = 255


def check_session_id(session_id: str) -> str:
    if not _SESSION_ID.fullmatch(session_id):
        raise BadRequest(
            f"Invalid session id {session_id[:80]!r}: use 1-64 characters of A-Z, a-z, 0-9, "
            "'_' and '-'."
        )
    return session_id


def new_session_id() -> str:
    return "k" + secrets.token_hex(8)


def safe_relative_path(path: str) -> PurePosixPath:
    """``path`` as a relative path that stays inside its directory, or :class:`BadRequest`."""
    problem = _path_problem(path)
    if problem:
        raise BadRequest(
            f"Invalid file path {path[:200]!r}: {problem}. Give a path relative to the "
            "session's working directory, without '..'."
        )
    parts = [p for p in path.split("/") if p not in ("", ".")]
    return PurePosixPath(*parts)


def _path_problem(path: str) -> str:
    if not path or not path.strip("/. "):
        return "it is empty"
    if len(path) > MAX_PATH:
        return f"it is longer than {MAX_PATH} characters"
    if "\x00" in path:
        return "it contains a NUL character"
    if path.startswith("/") or path.startswith("\\"):
        return "it is absolute"
    parts = path.split("/")
    if any(p == ".." for p in parts):
        return "it leaves the working directory"
    if any(len(p.encode()) > MAX_NAME for p in parts):
        return f"a component is longer than {MAX_NAME} bytes"
    return ""


def file_name_from_url(url: str) -> str:
    """A safe file name from the last path segment of ``url`` (``download`` if nothing is left)."""
    segment = unquote(urlsplit(url).path).rstrip("/").rpartition("/")[2]
    name = _UNSAFE_NAME_CHARS.sub("_", segment).lstrip(".")[:MAX_NAME]
    return name or "download"
