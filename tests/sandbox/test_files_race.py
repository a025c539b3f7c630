"""The files API against a kernel that swaps a directory for a symlink while the server works
in it (a check-then-use race): the server, root here, must never write or read through it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningServer
from tests.sandbox.test_attacks import H_ALICE, execute

pytestmark = pytest.mark.skipif(
    not Path("/usr/bin/bwrap").exists() and os.environ.get("CI") != "true",
    reason="needs bubblewrap (apt-get install bubblewrap)",
)


def test_an_upload_never_lands_outside_when_its_directory_becomes_a_symlink(
    server: RunningServer, tmp_path: Path
) -> None:
    httpx.post(
        f"{server.url}/api/v1/sessions", json={"session_id": "r"}, headers=H_ALICE, timeout=60
    ).raise_for_status()
    outside = server.settings.data_dir.resolve() / "outside"  # a place of the server's
    outside.mkdir()
    httpx.put(
        f"{server.url}/api/v1/sessions/r/files/sub/keep.txt", content=b"x", headers=H_ALICE
    ).raise_for_status()

    async def body() -> AsyncIterator[bytes]:
        yield b"first part, "
        # the upload is under way (the server has checked the path): the kernel swaps sub/
        swap = f"import os; os.rename('sub', 'sub-old'); os.symlink({str(outside)!r}, 'sub')"
        execute(server, H_ALICE, "r", swap)
        yield b"second part"

    async def upload() -> httpx.Response:
        async with httpx.AsyncClient() as client:
            return await client.put(
                f"{server.url}/api/v1/sessions/r/files/sub/evil.txt",
                content=body(),
                headers=H_ALICE,
                timeout=60,
            )

    r = asyncio.run(upload())
    assert list(outside.iterdir()) == [], r.text  # nothing written through the symlink
    # the write went on in the directory it had opened, which the kernel renamed
    assert r.status_code in (200, 201), r.text
    moved = server.settings.data_dir.resolve() / "sessions/alice/r/sub-old/evil.txt"
    assert moved.read_bytes() == b"first part, second part"
    assert moved.stat().st_uid == moved.parent.parent.stat().st_uid  # the kernel's, not root's


def test_a_download_never_reads_through_a_symlinked_directory(server: RunningServer) -> None:
    httpx.post(
        f"{server.url}/api/v1/sessions", json={"session_id": "d"}, headers=H_ALICE, timeout=60
    ).raise_for_status()
    secret = server.settings.data_dir.resolve() / "hearth.sqlite3"
    execute(server, H_ALICE, "d", f"import os; os.symlink({str(secret.parent)!r}, 'dir')")
    r = httpx.get(f"{server.url}/api/v1/sessions/d/files/dir/hearth.sqlite3", headers=H_ALICE)
    assert r.status_code in (400, 404), r.status_code
    assert b"SQLite" not in r.content


def test_an_uploaded_file_is_the_kernels_to_change(server: RunningServer) -> None:
    httpx.post(
        f"{server.url}/api/v1/sessions", json={"session_id": "w"}, headers=H_ALICE, timeout=60
    ).raise_for_status()
    httpx.put(
        f"{server.url}/api/v1/sessions/w/files/deep/er/notes.txt", content=b"a", headers=H_ALICE
    ).raise_for_status()
    code = "open('deep/er/notes.txt', 'a').write('b'); open('deep/er/new.txt', 'w').write('c')"
    execute(server, H_ALICE, "w", code)  # as root's file, it was read-only to the kernel
    r = httpx.get(f"{server.url}/api/v1/sessions/w/files/deep/er/notes.txt", headers=H_ALICE)
    assert r.content == b"ab" and r.headers["content-length"] == "2"
    assert r.headers["content-type"].startswith("text/plain")
