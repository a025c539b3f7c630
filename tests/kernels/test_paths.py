"""Names and paths from callers, checked as text."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from hearth.errors import BadRequest
from hearth.kernels.paths import (
    check_session_id,
    file_name_from_url,
    new_session_id,
    safe_relative_path,
)


@pytest.mark.parametrize("good", ["a", "A-b_9", "x" * 64])
def test_valid_session_ids_pass(good: str) -> None:
    assert check_session_id(good) == good


@pytest.mark.parametrize("bad", ["", "x" * 65, "a b", "../x", "a/b", "é", "a.b", "a\n"])
def test_invalid_session_ids_are_refused(bad: str) -> None:
    with pytest.raises(BadRequest, match="1-64 characters"):
        check_session_id(bad)


def test_generated_ids_are_valid_and_distinct() -> None:
    ids = {new_session_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(check_session_id(i) for i in ids)


@pytest.mark.parametrize(
    ("given", "expected"),
    [("a.txt", "a.txt"), ("dir/sub/a.txt", "dir/sub/a.txt"), ("./a//b/", "a/b"), ("..a", "..a")],
)
def test_relative_paths_are_normalised(given: str, expected: str) -> None:
    assert safe_relative_path(given) == PurePosixPath(expected)


@pytest.mark.parametrize(
    "bad", ["", "/", ".", "..", "../x", "a/../../x", "a/..", "/etc/passwd", "a\x00b", "x" * 2000]
)
def test_escaping_or_empty_paths_are_refused(bad: str) -> None:
    with pytest.raises(BadRequest, match="Invalid file path"):
        safe_relative_path(bad)


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://h/data/file.csv", "file.csv"),
        ("https://h/data/my%20file.csv?x=1", "my_file.csv"),
        ("https://h/a/..%2F..%2Fetc%2Fpasswd", "passwd"),
        ("https://h/.bashrc", "bashrc"),
        ("https://h/", "download"),
        ("https://h/%2e%2e", "download"),
    ],
)
def test_file_names_from_urls_are_safe(url: str, name: str) -> None:
    assert file_name_from_url(url) == name
