"""Request bodies a process can't take are a 422 naming the field, never a 500 (SPEC §2), and a
create with no body at all takes every default (SPEC §3.2: every field is optional)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import ALICE, RunningServer

TERMINALS = "/api/v1/terminal/sessions"
KERNELS = "/api/v1/sessions"


def client(server: RunningServer) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {ALICE}"}, timeout=30
    )


def post_json_text(c: httpx.Client, path: str, text: str) -> httpx.Response:
    """POST a JSON document written by hand: lone surrogates can only be sent this way."""
    return c.post(path, content=text.encode(), headers={"content-type": "application/json"})


def test_create_with_no_body_at_all_takes_the_defaults(server: RunningServer) -> None:
    with client(server) as c:
        bare = c.post(TERMINALS)  # as `curl -XPOST …/sessions`: no body, no content type
        assert bare.status_code == 201, bare.text
        assert bare.json()["name"] == "Terminal 1" and bare.json()["rows"] == 24
        empty = c.post(TERMINALS, headers={"content-type": "application/json"})
        assert empty.status_code == 201, empty.text
        for made in (bare, empty):
            assert c.delete(f"{TERMINALS}/{made.json()['id']}").status_code == 204
        assert c.post(TERMINALS, content=b"[]").status_code == 422  # a body must be an object


def test_kernel_create_with_no_body_at_all_takes_the_defaults(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(session_pool_size=1)
    with client(server) as c:
        made = c.post(KERNELS)
        assert made.status_code == 201, made.text
        assert made.json()["kernel_name"] == "python3"
        assert c.delete(f"{KERNELS}/{made.json()['session_id']}").status_code == 204


def assert_422_naming(response: httpx.Response, *names: str) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    body: dict[str, Any] = json.loads(response.text)
    response.content.decode("utf-8")  # the answer itself is valid UTF-8
    where = [
        ".".join(str(p) for p in error["loc"]) + " " + error["msg"] for error in body["detail"]
    ]
    assert any(all(n in w for n in names) for w in where), where
    return body


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ('{"env": {"": "x"}}', ["env"]),
        ('{"env": {"A=B": "x"}}', ["env", "A=B"]),
        ('{"env": {"A\\u0000B": "x"}}', ["env", "A\x00B"]),
        ('{"env": {"OK": "x\\u0000y"}}', ["env", "OK"]),
        ('{"env": {"\\uda4c": "x"}}', ["env", "\\uda4c"]),
        ('{"env": {"OK": "\\uda4c"}}', ["env", "OK"]),
        ('{"command": ["/bin/sh\\u0000"]}', ["command", "0"]),
        ('{"command": ["/bin/sh", "-c", "\\ud800"]}', ["command", "2"]),
        ('{"cwd": "/tmp\\u0000"}', ["cwd"]),
        ('{"cwd": "\\udcff"}', ["cwd"]),
        ('{"name": "\\ud800"}', ["name"]),
        ('{"id": "\\ud800"}', ["id"]),
        ('{"rows": 1e400}', ["rows"]),
    ],
)
def test_terminal_create_fields_a_process_cant_take_are_a_422(
    server: RunningServer, body: str, names: list[str]
) -> None:
    with client(server) as c:
        assert_422_naming(post_json_text(c, TERMINALS, body), *names)
        assert c.get(TERMINALS).json() == []  # nothing was started


def test_bad_input_of_rename_is_a_422(server: RunningServer) -> None:
    with client(server) as c:
        made = c.post(TERMINALS, json={"command": ["/bin/sh", "-c", "sleep 60"]}).json()
        path = f"{TERMINALS}/{made['id']}"
        renamed = c.patch(
            path, content=b'{"name": "\\udfff"}', headers={"content-type": "application/json"}
        )
        assert_422_naming(renamed, "name")
        assert c.delete(path).status_code == 204


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ('{"session_id": "a b"}', ["session_id"]),
        ('{"session_id": "\\ud800"}', ["session_id"]),
        ('{"kernel_name": "\\u0000"}', ["kernel_name"]),
        ('{"kernel_name": "\\udcff"}', ["kernel_name"]),
        ('{"files": [{"url": "http://x\\u0000/a"}]}', ["files", "0", "url"]),
        ('{"files": [{"url": "http://h/\\ud800"}]}', ["files", "0", "url"]),
        ('{"files": [{"url": "ftp://h/a"}]}', ["files", "0", "url"]),
        ('{"files": [{"url": "http://h/a", "path": "a\\u0000"}]}', ["files", "0", "path"]),
        ('{"files": [{"url": "http://h/a", "path": "\\ud800"}]}', ["files", "0", "path"]),
    ],
)
def test_kernel_create_fields_a_process_cant_take_are_a_422(
    server: RunningServer, body: str, names: list[str]
) -> None:
    with client(server) as c:
        assert_422_naming(post_json_text(c, KERNELS, body), *names)
        assert c.get(KERNELS).json() == []


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ('{"code": "\\ud800"}', ["code"]),
        ('{"code": "1", "timeout": 1e400}', ["timeout"]),
        ('{"code": "1", "timeout": -1}', ["timeout"]),
    ],
)
def test_execute_fields_that_cant_run_are_a_422(
    server: RunningServer, body: str, names: list[str]
) -> None:
    with client(server) as c:
        assert_422_naming(post_json_text(c, f"{KERNELS}/nothing/execute", body), *names)
