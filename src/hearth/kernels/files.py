"""Files of a session's working directory: downloads, listing, reading and writing.

Every path is checked twice: as text (``paths.safe_relative_path``) and on disk, where a
symlink could lead out of the directory. Writes go to a temporary file beside the target and are
renamed into place, so a failed download or upload leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import httpx

from hearth.errors import BadRequest, DownloadFailed, NotFound
from hearth.kernels.paths import file_name_from_url, safe_relative_path

__all__ = [
    "FileRequest",
    "download",
    "list_files",
    "parse_file_requests",
    "readable_file",
    "resolve_inside",
    "write_file",
]

_PART = ".part-"


@dataclass(frozen=True, slots=True)
class FileRequest:
    url: str
    path: PurePosixPath


def parse_file_requests(raw: list[dict[str, Any]]) -> list[FileRequest]:
    """Check every ``{"url", "path"?}`` of a request before anything is fetched."""
    requests = []
    for item in raw:
        url = item.get("url")
        if not isinstance(url, str) or not url:
            raise BadRequest("Every file needs a 'url' string.")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise BadRequest(f"Cannot download {url[:200]!r}: only http(s) URLs are allowed.")
        path = item.get("path")
        if path is not None and not isinstance(path, str):
            raise BadRequest(f"The 'path' of {url[:200]!r} must be a string.")
        requests.append(FileRequest(url, safe_relative_path(path or file_name_from_url(url))))
    return requests


def resolve_inside(root: Path, rel: PurePosixPath) -> Path:
    """``root / rel`` with symlinks resolved, refused if that leaves ``root``."""
    real_root = root.resolve()
    real = (real_root / rel).resolve()
    if real == real_root or not real.is_relative_to(real_root):
        raise BadRequest(
            f"Invalid file path {str(rel)!r}: it leads out of the working directory (through a "
            "symlink) or is the directory itself."
        )
    return real


def _temp_beside(target: Path) -> Path:
    return target.with_name(f".{target.name[:200]}{_PART}{secrets.token_hex(4)}")


def _prepare_parent(root: Path, target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (NotADirectoryError, FileExistsError) as exc:
        raise BadRequest(
            f"Cannot write {target.name!r}: a parent is a file, not a folder."
        ) from exc
    if not target.parent.resolve().is_relative_to(root.resolve()):
        raise BadRequest("Invalid file path: it leads out of the working directory.")
    if target.is_dir():
        raise BadRequest(f"Cannot write {target.name!r}: it is a directory.")


async def write_file(
    root: Path, rel: PurePosixPath, chunks: AsyncIterable[bytes], max_bytes: int
) -> dict[str, Any]:
    """Write ``chunks`` atomically to ``root/rel``; at most ``max_bytes``."""
    target = resolve_inside(root, rel)
    _prepare_parent(root, target)
    temp = _temp_beside(target)
    size = 0
    try:
        with temp.open("wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise BadRequest(f"The file is larger than the {max_bytes} bytes allowed.")
                out.write(chunk)
        os.replace(temp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    return {"path": str(rel), "size": size}


async def download(
    client: httpx.AsyncClient, request: FileRequest, root: Path, max_bytes: int, seconds: float
) -> dict[str, Any]:
    """Fetch ``request.url`` into ``root``; the file list entry, or :class:`DownloadFailed`."""
    url = request.url

    async def body() -> AsyncIterable[bytes]:
        async with client.stream("GET", url) as response:
            if response.status_code >= 400:
                raise DownloadFailed(
                    f"Could not download {url}: the server answered HTTP {response.status_code}."
                )
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) > max_bytes:
                raise DownloadFailed(_too_big(url, max_bytes))
            async for chunk in response.aiter_bytes():
                yield chunk

    try:
        async with asyncio.timeout(seconds):
            entry = await write_file(root, request.path, body(), max_bytes)
    except TimeoutError as exc:
        raise DownloadFailed(
            f"Could not download {url}: no complete answer in {seconds:g} s."
        ) from exc
    except BadRequest as exc:
        if "larger than" in exc.message:
            raise DownloadFailed(_too_big(url, max_bytes)) from exc
        raise
    except httpx.HTTPError as exc:
        raise DownloadFailed(f"Could not download {url}: {exc or type(exc).__name__}.") from exc
    return {"url": url, **entry}


def _too_big(url: str, max_bytes: int) -> str:
    return f"Could not download {url}: it is larger than max_download_bytes ({max_bytes} bytes)."


def list_files(root: Path) -> list[dict[str, Any]]:
    """Every regular file under ``root`` (symlinks are not followed), sorted by path."""
    found: list[dict[str, Any]] = []
    for folder, _, names in os.walk(root):
        for name in names:
            if _PART in name and name.startswith("."):
                continue
            path = Path(folder, name)
            with contextlib.suppress(OSError):
                st = path.lstat()
                if path.is_file() and not path.is_symlink():
                    rel = path.relative_to(root).as_posix()
                    found.append({"path": rel, "size": st.st_size, "modified": st.st_mtime})
    found.sort(key=lambda f: f["path"])
    return found


def readable_file(root: Path, rel: PurePosixPath) -> Path:
    target = resolve_inside(root, rel)
    if not target.is_file():
        raise NotFound(f"No file {str(rel)!r} in the session's working directory.")
    return target
