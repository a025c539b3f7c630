"""Files of a session's working directory: downloads, listing, reading and writing.

Every path is checked as text (``paths.safe_relative_path``), then used on disk only through
:mod:`hearth.kernels.beneath`, which never follows a symlink the session planted. Writes go to a
temporary file beside the target and are renamed into place, so a failed download or upload
leaves nothing behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import httpx

from hearth.errors import BadRequest, DownloadFailed
from hearth.kernels.beneath import PART, FileStream, read_stream, walk_files, write_stream
from hearth.kernels.egress import Unreachable
from hearth.kernels.paths import file_name_from_url, safe_relative_path

__all__ = [
    "FileRequest",
    "download",
    "list_files",
    "open_file",
    "parse_file_requests",
    "write_file",
]


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


async def write_file(
    root: Path, rel: PurePosixPath, chunks: AsyncIterable[bytes], max_bytes: int
) -> dict[str, Any]:
    """Write ``chunks`` atomically to ``root/rel``; at most ``max_bytes``."""
    size = await write_stream(root, rel, chunks, max_bytes)
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
    except Unreachable as exc:  # session_network = "none" (see egress)
        raise BadRequest(
            f"Cannot download {url}: {exc}. Give a URL on the public internet, or upload the "
            "file (PUT /api/v1/sessions/{id}/files/{path})."
        ) from exc
    except httpx.HTTPError as exc:
        raise DownloadFailed(f"Could not download {url}: {exc or type(exc).__name__}.") from exc
    return {"url": url, **entry}


def _too_big(url: str, max_bytes: int) -> str:
    return f"Could not download {url}: it is larger than max_download_bytes ({max_bytes} bytes)."


def list_files(root: Path) -> list[dict[str, Any]]:
    """Every regular file under ``root``, sorted by path (see :func:`beneath.walk_files`)."""
    found: list[dict[str, Any]] = []
    for rel, st in sorted(walk_files(root), key=lambda item: item[0]):
        name = rel.rsplit("/", 1)[-1]
        if not (PART in name and name.startswith(".")):
            found.append({"path": rel, "size": st.st_size, "modified": st.st_mtime})
    return found


def open_file(root: Path, rel: PurePosixPath) -> FileStream:
    return read_stream(root, rel)
