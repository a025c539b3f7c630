"""Paths beneath a directory a session controls (hearth.kernels.beneath), on a real file system."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath

import pytest

from hearth.errors import BadRequest, NotFound
from hearth.kernels.beneath import MAX_DEPTH, read_stream, walk_files, write_stream


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_no_symlink_on_the_way_or_at_the_end_is_followed(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret").write_bytes(b"s")
    (root / "dir").symlink_to(outside)
    (root / "file").symlink_to(outside / "secret")
    for rel in ("dir/secret", "file"):
        with pytest.raises(BadRequest):
            read_stream(root, PurePosixPath(rel))
        with pytest.raises(BadRequest):
            asyncio.run(write_stream(root, PurePosixPath(rel), chunks(b"x"), 10))
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_bytes() == b"s"


def test_a_fifo_is_not_a_file_and_does_not_block(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(NotFound):
        read_stream(tmp_path, PurePosixPath("pipe"))


def test_a_write_makes_its_folders_and_a_read_streams_it_back(tmp_path: Path) -> None:
    size = asyncio.run(write_stream(tmp_path, PurePosixPath("a/b/c.txt"), chunks(b"1", b"23"), 3))
    assert size == 3

    async def read() -> bytes:
        stream = read_stream(tmp_path, PurePosixPath("a/b/c.txt"))
        assert (stream.name, stream.size) == ("c.txt", 3)
        return b"".join([c async for c in stream.chunks])

    assert asyncio.run(read()) == b"123"
    with pytest.raises(BadRequest):  # over the limit: refused, nothing left behind
        asyncio.run(write_stream(tmp_path, PurePosixPath("a/big"), chunks(b"1234"), 3))
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b"]


def test_a_stream_never_read_closes_its_file_when_dropped(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    before = open_fds()
    stream = read_stream(tmp_path, PurePosixPath("f"))
    assert open_fds() == before + 1
    del stream
    gc.collect()
    assert open_fds() == before


def test_a_listing_walks_by_descriptors_never_entering_links_or_fifos(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "a" / "b").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret").write_bytes(b"s")
    (root / "a" / "b" / "f.txt").write_bytes(b"12")
    (root / "top.txt").write_bytes(b"1")
    (root / "link").symlink_to(outside)
    os.mkfifo(root / "pipe")
    deep = root
    for i in range(MAX_DEPTH + 5):
        deep = deep / f"d{i}"
    deep.mkdir(parents=True)
    (deep / "too-deep.txt").write_bytes(b"x")
    found = {rel: st.st_size for rel, st in walk_files(root)}
    assert found == {"a/b/f.txt": 2, "top.txt": 1}
    assert open_fds_after_walk_are_closed()


def open_fds_after_walk_are_closed() -> bool:
    before = open_fds()
    walk_files(Path("/proc/self"))  # a real tree with links and odd files
    return open_fds() == before


def test_a_long_multibyte_name_is_written_not_refused_for_its_temporary_file(
    tmp_path: Path,
) -> None:
    name = "é" * 127  # 254 bytes: a valid name, which its temporary one used to overflow
    size = asyncio.run(write_stream(tmp_path, PurePosixPath(name), chunks(b"ok"), 10))
    assert size == 2 and (tmp_path / name).read_bytes() == b"ok"
    with pytest.raises(BadRequest):  # over the file system's limit: a clear 400, not a 500
        asyncio.run(write_stream(tmp_path, PurePosixPath("é" * 200), chunks(b"x"), 10))
