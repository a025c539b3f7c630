"""Finding a terminal's session members in /proc: one scan serves every call made before it
began (thousands of terminals closed at once), and never one made after it began."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from hearth.terminals import pty


@pytest.fixture
def leader() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def test_concurrent_calls_share_scans_and_each_finds_its_session(
    leader: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    scans = 0
    scan = pty._scan_sessions

    def counted() -> dict[int, set[int]]:
        nonlocal scans
        scans += 1
        return scan()

    monkeypatch.setattr(pty, "_scan_sessions", counted)
    asked = time.monotonic()  # 400 closes asked for at once, run by 8 threads
    with ThreadPoolExecutor(8) as pool:
        found = list(pool.map(lambda _: pty._session_members(leader.pid, asked), range(400)))
    assert all(leader.pid in members for members in found)
    assert scans == 1, scans


def test_a_session_started_after_a_scan_is_found_by_the_next_call() -> None:
    pty._session_members(1)  # a scan, made now
    later = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        assert later.pid in pty._session_members(later.pid)
    finally:
        later.kill()
        later.wait()
