"""Any node answers for any session (SPEC §12): with two nodes, every kind of session is created
on b, and every call of the API is made once to b itself and once through a, which relays it.
Both must answer alike: the same status, headers and body (tests/cluster/twins.py says how two
answers are compared, and which few fields, all times, are left out). Websockets through a get
the same frames, offsets and close codes; a terminal's output read through a after a cut loses
and repeats nothing; lists through a show b's sessions, marked ``"node": "b"``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from hearth.protocol import decode_output
from tests.cluster.nodes import Node
from tests.cluster.pair import pair_fixture  # noqa: F401  (the fixture 'pair')
from tests.cluster.twins import Call, Twin, Twins, assert_same, label, make_twins, send
from tests.conftest import ALICE, BOB
from tests.jupyter.kernelsocket import V1, KernelSocket, outputs_text
from tests.server.termclient import TermClient

Pair = tuple[Node, Node]
T = "/api/v1/terminal"
JSON = (("content-type", "application/json"),)
# prints a line, then waits: its output (7 bytes) is all there is to read
HELLO = ["/bin/sh", "-c", "printf 'hello\\n'; exec sleep 1000"]
# a shell without a prompt: what comes out is only what the test types (echoed) and its output
PLAIN_SHELL = ["/bin/sh", "-c", "printf 'ready\\n'; while read -r line; do eval \"$line\"; done"]
PASSWORD = "pa55-Wörd-that-must-never-show"


# --- the sessions, created on b ---------------------------------------------------------------


def _id(name: str, answer: Any) -> dict[str, str]:
    return {"id": name}


def _jupyter_kernel(name: str, answer: Any) -> dict[str, str]:
    return {"id": answer["id"]}


def _jupyter_session(name: str, answer: Any) -> dict[str, str]:
    return {"id": answer["id"], "kernel": answer["kernel"]["id"], "label": name}


# kind → (its create, made to b with "node": "b" in the body; the twin's names from its answer)
CREATES: dict[str, tuple[Call, Callable[[str, Any], dict[str, str]]]] = {
    "terminal": (
        Call(
            "term-",
            "POST",
            f"{T}/sessions",
            201,
            json={"id": "{id}", "name": "twin", "command": HELLO, "node": "b"},
        ),
        _id,
    ),
    "kernel": (
        Call("kern-", "POST", "/api/v1/sessions", 201, json={"session_id": "{id}", "node": "b"}),
        _id,
    ),
    "jupyter-kernel": (
        Call(
            "jk-",
            "POST",
            "/api/kernels",
            201,
            json={"name": "python3", "node": "b"},
            headers=(("Authorization", f"token {ALICE}"),),
        ),
        _jupyter_kernel,
    ),
    "jupyter-session": (
        Call(
            "js-",
            "POST",
            "/api/sessions",
            201,
            json={
                "path": "work/{label}.ipynb",
                "type": "notebook",
                "name": "{label}",
                "kernel": {"name": "python3"},
                "node": "b",
            },
        ),
        _jupyter_session,
    ),
    "connection": (
        Call(
            "conn-",
            "POST",
            "/api/v1/connections",
            201,
            json={
                "id": "{id}",
                "host": "db.example",
                "username": "ops",
                "auth": {"password": PASSWORD},
                "node": "b",
            },
        ),
        _id,
    ),
}


def twins_of(pair: Pair, kind: str, create: Call | None = None) -> Twins:
    a, b = pair
    default, fields_of = CREATES[kind]
    twins = make_twins(a, b, create or default, fields_of)
    if kind == "terminal" and create is None:
        for twin in twins:
            until(lambda t=twin: get(t, f"{T}/sessions/{{id}}").json()["output_end"] >= 7)  # type: ignore[misc]
    return twins


def get(twin: Twin, path: str, token: str | None = ALICE) -> httpx.Response:
    return send(twin, Call("get", "GET", path, 200, token=token))


def until(check: Callable[[], Any], seconds: float = 30) -> Any:
    """Poll ``check`` until it answers something true (no sleep stands for a wait)."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {seconds} s"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def terminals(pair: Pair) -> Twins:
    return twins_of(pair, "terminal")


@pytest.fixture(scope="module")
def kernels(pair: Pair) -> Twins:
    return twins_of(pair, "kernel")


@pytest.fixture(scope="module")
def jupyter_kernels(pair: Pair) -> Twins:
    return twins_of(pair, "jupyter-kernel")


@pytest.fixture(scope="module")
def jupyter_sessions(pair: Pair) -> Twins:
    return twins_of(pair, "jupyter-session")


@pytest.fixture(scope="module")
def connections(pair: Pair) -> Twins:
    return twins_of(pair, "connection")


def both(twins: Twins, call: Call) -> None:
    direct = send(twins.direct, call)
    relayed = send(twins.relayed, call)
    assert_same(call, direct, relayed, twins)


def cases(*calls: Call | Any) -> list[Any]:
    return [c if not isinstance(c, Call) else pytest.param(c, id=c.name) for c in calls]


# --- REST, one table per kind; each table's calls run in order on the same twins ------------

TERMINAL_CALLS = cases(
    Call("get", "GET", f"{T}/sessions/{{id}}", 200),
    Call("rename", "PATCH", f"{T}/sessions/{{id}}", 200, json={"name": "renamed"}),
    Call("get renamed", "GET", f"{T}/sessions/{{id}}", 200),
    Call("resume", "PUT", f"{T}/sessions/{{id}}/resume", 200),
    Call("status", "GET", f"{T}/sessions/{{id}}/status", 200),
    Call("legacy status", "GET", f"{T}/session/{{id}}/status", 200),
    Call("legacy get", "GET", "/api/terminal/sessions/{id}", 200),
    Call("legacy resume", "PUT", "/api/terminal/sessions/{id}/resume", 200),
    Call("history", "GET", f"{T}/sessions/{{id}}/history", 200),
    Call("history since limit", "GET", f"{T}/sessions/{{id}}/history?since=2&limit=1", 200),
    Call("recording", "GET", f"{T}/sessions/{{id}}/recording.cast", 200),
    Call("screen", "GET", f"{T}/sessions/{{id}}/screen", 200),
    Call("token in the query", "GET", f"{T}/sessions/{{id}}?token={ALICE}", 200, token=None),
    Call(
        "login cookie",
        "GET",
        f"{T}/sessions/{{id}}",
        200,
        token=None,
        headers=(("Cookie", f"hearth_token={ALICE}"),),
    ),
    Call(
        "jupyter's token header",
        "GET",
        f"{T}/sessions/{{id}}",
        200,
        token=None,
        headers=(("Authorization", f"token {ALICE}"),),
    ),
    Call("history since<0", "GET", f"{T}/sessions/{{id}}/history?since=-1", 422),
    Call("rename to a number", "PATCH", f"{T}/sessions/{{id}}", 422, json={"name": 5}),
    Call("rename malformed", "PATCH", f"{T}/sessions/{{id}}", 422, content=b"{no", headers=JSON),
    Call("missing", "GET", f"{T}/sessions/nothing-here", 404),
    Call("missing status", "GET", f"{T}/sessions/nothing-here/status", 200),
    Call("bob get", "GET", f"{T}/sessions/{{id}}", 404, token=BOB),
    Call("bob rename", "PATCH", f"{T}/sessions/{{id}}", 404, json={"name": "x"}, token=BOB),
    Call("bob history", "GET", f"{T}/sessions/{{id}}/history", 404, token=BOB),
    Call("bob screen", "GET", f"{T}/sessions/{{id}}/screen", 404, token=BOB),
    Call("bob status", "GET", f"{T}/session/{{id}}/status", 200, token=BOB),
    Call("bob delete", "DELETE", f"{T}/sessions/{{id}}", 404, token=BOB),
    Call("no token", "GET", f"{T}/sessions/{{id}}", 401, token=None),
    Call("wrong token", "GET", f"{T}/sessions/{{id}}", 401, token="wrong-token-1"),
    Call("no token delete", "DELETE", f"{T}/sessions/{{id}}", 401, token=None),
    Call("still there", "GET", f"{T}/sessions/{{id}}", 200),
)


@pytest.mark.parametrize("call", TERMINAL_CALLS)
def test_terminal_calls(terminals: Twins, call: Call) -> None:
    both(terminals, call)


UPLOADED = bytes(range(256)) * 3

KERNEL_CALLS = cases(
    Call("get", "GET", "/api/v1/sessions/{id}", 200),
    Call("create again reuses", "POST", "/api/v1/sessions", 200, json={"session_id": "{id}"}),
    Call(
        "execute", "POST", "/api/v1/sessions/{id}/execute", 200, json={"code": "print('hi'); 6*7"}
    ),
    Call("execute raising", "POST", "/api/v1/sessions/{id}/execute", 200, json={"code": "1/0"}),
    Call(
        "execute streamed",
        "POST",
        "/api/v1/sessions/{id}/execute?stream=true",
        200,
        json={"code": "for i in range(3): print(i, flush=True)\n1/0"},
    ),
    Call(
        "execute timing out",
        "POST",
        "/api/v1/sessions/{id}/execute",
        200,
        json={"code": "import time; time.sleep(30)", "timeout": 0.5},
    ),
    Call("interrupt", "POST", "/api/v1/sessions/{id}/interrupt", 200),
    Call("upload", "PUT", "/api/v1/sessions/{id}/files/dir/sub/a.bin", 200, content=UPLOADED),
    Call(
        "read the upload",
        "POST",
        "/api/v1/sessions/{id}/execute",
        200,
        json={"code": "print(len(open('dir/sub/a.bin', 'rb').read()))"},
    ),
    Call("files", "GET", "/api/v1/sessions/{id}/files", 200),
    Call("download", "GET", "/api/v1/sessions/{id}/files/dir/sub/a.bin", 200),
    Call("download missing", "GET", "/api/v1/sessions/{id}/files/nope.txt", 404),
    Call(
        "put escaping",
        "PUT",
        "/api/v1/sessions/{id}/files/..%2F..%2Fescaped.txt",
        400,
        content=b"x",
    ),
    Call("get escaping", "GET", "/api/v1/sessions/{id}/files/%2E%2E/escaped.txt", 400),
    Call(
        "put absolute", "PUT", "/api/v1/sessions/{id}/files/%2Ftmp%2Fescaped.txt", 400, content=b"x"
    ),
    Call(
        "file name with a percent",
        "PUT",
        "/api/v1/sessions/{id}/files/100%25%20sure.txt",
        200,
        content=b"sure",
    ),
    Call(
        "file name with a question mark",
        "PUT",
        "/api/v1/sessions/{id}/files/what%3F.txt",
        200,
        content=b"?",
    ),
    Call("download with a question mark", "GET", "/api/v1/sessions/{id}/files/what%3F.txt", 200),
    Call("files after", "GET", "/api/v1/sessions/{id}/files", 200),
    Call("restart", "POST", "/api/v1/sessions/{id}/restart", 200),
    Call("get restarted", "GET", "/api/v1/sessions/{id}", 200),
    Call("execute no code", "POST", "/api/v1/sessions/{id}/execute", 422, json={}),
    Call("execute code 5", "POST", "/api/v1/sessions/{id}/execute", 422, json={"code": 5}),
    Call(
        "execute malformed",
        "POST",
        "/api/v1/sessions/{id}/execute",
        422,
        content=b"{",
        headers=JSON,
    ),
    Call("missing", "GET", "/api/v1/sessions/nothing-here", 404),
    Call("bob get", "GET", "/api/v1/sessions/{id}", 404, token=BOB),
    Call(
        "bob execute", "POST", "/api/v1/sessions/{id}/execute", 404, json={"code": "1"}, token=BOB
    ),
    Call("bob upload", "PUT", "/api/v1/sessions/{id}/files/x", 404, content=b"1", token=BOB),
    Call("bob download", "GET", "/api/v1/sessions/{id}/files/dir/sub/a.bin", 404, token=BOB),
    Call("bob interrupt", "POST", "/api/v1/sessions/{id}/interrupt", 404, token=BOB),
    Call("no token", "GET", "/api/v1/sessions/{id}", 401, token=None),
    Call(
        "no token execute",
        "POST",
        "/api/v1/sessions/{id}/execute",
        401,
        json={"code": "1"},
        token=None,
    ),
    Call("still there", "GET", "/api/v1/sessions/{id}", 200),
)


@pytest.mark.parametrize("call", KERNEL_CALLS)
def test_kernel_calls(kernels: Twins, call: Call) -> None:
    both(kernels, call)


def test_a_streamed_execute_through_a_comes_as_it_happens(pair: Pair) -> None:
    """The NDJSON events are relayed as the kernel makes them: the first is read through a while
    the code still waits, for a file that is only uploaded (through a too) once it came."""
    a, _ = pair
    twin = Twin(a, {"id": label("stream-")})
    made = send(twin, CREATES["kernel"][0])
    assert made.status_code == 201 and made.json()["node"] == "b", made.text
    code = (
        "import os, time\n"
        "print('waiting', flush=True)\n"
        "while not os.path.exists('go'):\n"
        "    time.sleep(0.01)\n"
        "print('went')"
    )
    auth = {"Authorization": f"Bearer {ALICE}"}
    with httpx.Client(base_url=a.url, headers=auth, timeout=20) as client:
        path = f"/api/v1/sessions/{twin.id}/execute?stream=true"
        with client.stream("POST", path, json={"code": code}) as events:
            assert events.status_code == 200
            assert events.headers["content-type"].startswith("application/x-ndjson")
            lines = events.iter_lines()
            first = json.loads(next(lines))
            assert first == {"type": "stream", "name": "stdout", "text": "waiting\n"}
            go = client.put(f"/api/v1/sessions/{twin.id}/files/go", content=b"")
            assert go.status_code == 200, go.text
            rest = [json.loads(line) for line in lines if line]
    assert [e["type"] for e in rest] == ["stream", "done"], rest
    assert rest[0]["text"] == "went\n" and rest[1]["status"] == "ok"


def test_an_upload_through_a_downloads_byte_identical(kernels: Twins) -> None:
    """Beyond "the same answer": what went up through a is what comes down, on either node."""
    data = bytes(range(256))[::-1] * 4097  # ~1 MiB, not a multiple of any chunk size
    put = Call("upload big", "PUT", "/api/v1/sessions/{id}/files/big.bin", 200, content=data)
    assert send(kernels.relayed, put).json() == {"path": "big.bin", "size": len(data)}
    down = Call("download big", "GET", "/api/v1/sessions/{id}/files/big.bin", 200)
    through_a = send(kernels.relayed, down)
    on_b = send(Twin(kernels.direct.node, kernels.relayed.fields), down)
    assert through_a.status_code == on_b.status_code == 200
    assert through_a.content == data and on_b.content == data
    # sent without a length (chunked), as a client streaming a file does
    chunks = [data[i : i + 65_000] for i in range(0, len(data), 65_000)]
    auth = {"Authorization": f"Bearer {ALICE}"}
    path = f"/api/v1/sessions/{kernels.relayed.id}/files/chunked.bin"
    with httpx.Client(base_url=kernels.relayed.node.url, headers=auth, timeout=60) as client:
        chunked = client.put(path, content=iter(chunks))
        assert chunked.status_code == 200, chunked.text
        assert chunked.json() == {"path": "chunked.bin", "size": len(data)}
        assert client.get(path).content == data


JK = (("Authorization", f"token {ALICE}"),)  # Jupyter's form of the header

JUPYTER_KERNEL_CALLS = cases(
    Call("get", "GET", "/api/kernels/{id}", 200, headers=JK, token=None),
    Call("as a kernel session", "GET", "/api/v1/sessions/{id}", 200),
    Call("interrupt", "POST", "/api/kernels/{id}/interrupt", 204, headers=JK, token=None),
    Call("restart", "POST", "/api/kernels/{id}/restart", 200, headers=JK, token=None),
    Call("get restarted", "GET", "/api/kernels/{id}", 200),
    Call("missing", "GET", "/api/kernels/nothing-here", 404),
    Call("bob get", "GET", "/api/kernels/{id}", 404, token=BOB),
    Call("bob interrupt", "POST", "/api/kernels/{id}/interrupt", 404, token=BOB),
    Call("bob restart", "POST", "/api/kernels/{id}/restart", 404, token=BOB),
    Call("bob delete", "DELETE", "/api/kernels/{id}", 404, token=BOB),
    Call("no token", "GET", "/api/kernels/{id}", 401, token=None),
    Call("still there", "GET", "/api/kernels/{id}", 200),
)


@pytest.mark.parametrize("call", JUPYTER_KERNEL_CALLS)
def test_jupyter_kernel_calls(jupyter_kernels: Twins, call: Call) -> None:
    both(jupyter_kernels, call)


JUPYTER_SESSION_CALLS = cases(
    Call("get", "GET", "/api/sessions/{id}", 200),
    Call("its kernel", "GET", "/api/kernels/{kernel}", 200),
    Call("rename", "PATCH", "/api/sessions/{id}", 200, json={"path": "work/{label}-2.ipynb"}),
    Call("get renamed", "GET", "/api/sessions/{id}", 200),
    Call("retype", "PATCH", "/api/sessions/{id}", 200, json={"type": "console", "name": "c"}),
    Call("patch a bad type", "PATCH", "/api/sessions/{id}", 422, json={"path": 5}),
    Call("patch malformed", "PATCH", "/api/sessions/{id}", 422, content=b"[", headers=JSON),
    Call("missing", "GET", "/api/sessions/nothing-here", 404),
    Call("bob get", "GET", "/api/sessions/{id}", 404, token=BOB),
    Call("bob patch", "PATCH", "/api/sessions/{id}", 404, json={"path": "x"}, token=BOB),
    Call("bob delete", "DELETE", "/api/sessions/{id}", 404, token=BOB),
    Call("no token", "GET", "/api/sessions/{id}", 401, token=None),
    Call("still there", "GET", "/api/sessions/{id}", 200),
)


@pytest.mark.parametrize("call", JUPYTER_SESSION_CALLS)
def test_jupyter_session_calls(jupyter_sessions: Twins, call: Call) -> None:
    both(jupyter_sessions, call)


CONNECTION_CALLS = cases(
    Call("get", "GET", "/api/v1/connections/{id}", 200),
    Call("rename", "PATCH", "/api/v1/connections/{id}", 200, json={"name": "the database"}),
    Call("new port", "PATCH", "/api/v1/connections/{id}", 200, json={"port": 2222}),
    Call("get changed", "GET", "/api/v1/connections/{id}", 200),
    Call("a bad port", "PATCH", "/api/v1/connections/{id}", 422, json={"port": "twenty-two"}),
    Call("missing", "GET", "/api/v1/connections/nothing-here", 404),
    Call("bob get", "GET", "/api/v1/connections/{id}", 404, token=BOB),
    Call("bob patch", "PATCH", "/api/v1/connections/{id}", 404, json={"name": "x"}, token=BOB),
    Call("bob delete", "DELETE", "/api/v1/connections/{id}", 404, token=BOB),
    Call("no token", "GET", "/api/v1/connections/{id}", 401, token=None),
    Call("still there", "GET", "/api/v1/connections/{id}", 200),
)


@pytest.mark.parametrize("call", CONNECTION_CALLS)
def test_connection_calls(connections: Twins, call: Call) -> None:
    both(connections, call)


def test_no_answer_carries_the_connections_secret(connections: Twins) -> None:
    for twin in connections:
        assert PASSWORD not in get(twin, "/api/v1/connections/{id}").text
        assert PASSWORD not in get(twin, "/api/v1/connections").text


# --- creates and deletes, each on twins of its own ------------------------------------------

KINDS = list(CREATES)
GETS = {
    "terminal": f"{T}/sessions/{{id}}",
    "kernel": "/api/v1/sessions/{id}",
    "jupyter-kernel": "/api/kernels/{id}",
    "jupyter-session": "/api/sessions/{id}",
    "connection": "/api/v1/connections/{id}",
}


@pytest.mark.parametrize("kind", KINDS)
def test_a_create_through_a_answers_as_one_on_b(pair: Pair, kind: str) -> None:
    twins = twins_of(pair, kind)
    assert twins.created is not None
    direct, relayed = twins.created
    assert_same(CREATES[kind][0], direct, relayed, twins)
    assert relayed.json()["node"] == "b"


@pytest.mark.parametrize("kind", KINDS)
def test_a_session_read_on_either_node_says_it_is_on_b(
    pair: Pair, request: pytest.FixtureRequest, kind: str
) -> None:
    twins: Twins = request.getfixturevalue(kind.replace("-", "_") + "s")
    for node in pair:
        for twin in twins:
            answer = get(Twin(node, twin.fields), GETS[kind])
            assert answer.status_code == 200, answer.text
            assert answer.json()["node"] == "b", answer.text


@pytest.mark.parametrize("kind", KINDS)
def test_a_delete_through_a_answers_as_one_on_b(pair: Pair, kind: str) -> None:
    twins = twins_of(pair, kind)
    delete = Call("delete", "DELETE", GETS[kind], 204)
    both(twins, delete)
    for node in pair:  # gone, whoever is asked
        gone = [
            send(Twin(node, twin.fields), Call("get", "GET", GETS[kind], 404)) for twin in twins
        ]
        assert_same(Call("get deleted", "GET", GETS[kind], 404), gone[0], gone[1], twins)
    both(twins, Call("delete again", "DELETE", GETS[kind], 404))


def test_a_deleted_jupyter_sessions_kernel_is_gone_through_a(pair: Pair) -> None:
    twins = twins_of(pair, "jupyter-session")
    both(twins, Call("delete", "DELETE", "/api/sessions/{id}", 204))
    both(twins, Call("its kernel", "GET", "/api/kernels/{kernel}", 404))


# --- what one node's route answers before any relaying: the same through a ------------------

MALFORMED = [
    Call("terminal malformed", "POST", f"{T}/sessions", 422, content=b"{not json", headers=JSON),
    Call("terminal bad id", "POST", f"{T}/sessions", 422, json={"id": "bad id!", "node": "b"}),
    Call("terminal bad rows", "POST", f"{T}/sessions", 422, json={"rows": 0, "node": "b"}),
    Call("kernel malformed", "POST", "/api/v1/sessions", 422, content=b"not json", headers=JSON),
    Call("kernel bad id", "POST", "/api/v1/sessions", 422, json={"session_id": "a b", "node": "b"}),
    Call(
        "jupyter session without path",
        "POST",
        "/api/sessions",
        422,
        json={"type": "notebook", "node": "b"},
    ),
    Call(
        "connection without host",
        "POST",
        "/api/v1/connections",
        422,
        json={"username": "u", "node": "b"},
    ),
    Call("no token list", "GET", f"{T}/sessions", 401, token=None),
    Call("no token create", "POST", "/api/v1/sessions", 401, json={"node": "b"}, token=None),
    Call("unknown node", "POST", f"{T}/sessions", 400, json={"node": "zz"}),
]


@pytest.mark.parametrize("call", cases(*MALFORMED))
def test_refused_creates_are_refused_alike(pair: Pair, call: Call) -> None:
    a, b = pair
    fields = {"id": "-"}
    twins = Twins(Twin(b, fields), Twin(a, fields))
    both(twins, call)


# --- lists ------------------------------------------------------------------------------------

LISTS = {
    f"{T}/sessions": ("terminals", "id"),
    "/api/terminal/sessions": ("terminals", "id"),
    "/api/v1/sessions": ("kernels", "session_id"),
    "/api/kernels": ("jupyter_kernels", "id"),
    "/api/sessions": ("jupyter_sessions", "id"),
    "/api/v1/connections": ("connections", "id"),
}


@pytest.mark.parametrize("path", list(LISTS))
def test_lists_through_a_show_bs_sessions_marked_b(
    pair: Pair, request: pytest.FixtureRequest, path: str
) -> None:
    a, b = pair
    fixture, id_field = LISTS[path]
    twins: Twins = request.getfixturevalue(fixture)
    listed = {}
    for node in (b, a):
        answer = httpx.get(
            node.url + path, headers={"Authorization": f"Bearer {ALICE}"}, timeout=30
        )
        assert answer.status_code == 200, answer.text
        listed[node.name] = answer.json()
    ours = {twin.id for twin in twins}
    through_a = {item[id_field]: item for item in listed["a"]}
    assert ours <= set(through_a), (ours, listed["a"])
    assert {through_a[i]["node"] for i in ours} == {"b"}
    through_b = {item[id_field]: item for item in listed["b"]}
    assert len(through_a) == len(listed["a"]) and len(through_b) == len(listed["b"])  # no twice
    assert through_a == through_b  # both nodes list the same sessions, alike
    for node in (a, b):
        bobs = httpx.get(node.url + path, headers={"Authorization": f"Bearer {BOB}"}, timeout=30)
        assert bobs.status_code == 200 and bobs.json() == []


# --- the terminal websocket -------------------------------------------------------------------

WS_CREATE = Call(
    "wsterm-",
    "POST",
    f"{T}/sessions",
    201,
    json={"id": "{id}", "name": "twin", "command": PLAIN_SHELL, "node": "b"},
)


def ws_base(node: Node) -> str:
    return f"ws://127.0.0.1:{node.port}"


async def test_a_terminal_websocket_through_a_is_one_on_b(pair: Pair) -> None:
    twins = twins_of(pair, "terminal", WS_CREATE)
    for twin in twins:
        until(lambda t=twin: get(t, f"{T}/sessions/{{id}}").json()["output_end"] == 7)  # type: ignore[misc]
    a, b = pair
    viewers: list[TermClient] = []
    others: list[TermClient] = []
    try:
        for twin in twins:  # the viewer under test, and another on b that watches it
            viewers.append(
                await TermClient.connect(ws_base(twin.node), twin.id, ALICE, reconnect="true")
            )
            others.append(await TermClient.connect(ws_base(b), twin.id, ALICE, reconnect="true"))
        hellos = [twin.neutral(v.hello) for twin, v in zip(twins, viewers, strict=True)]
        assert hellos[0] == hellos[1]
        assert hellos[1]["session"]["status"] == "active"
        assert (hellos[1]["replay_from"], hellos[1]["replay_bytes"]) == (0, 7)

        for v in viewers:
            await v.send(b"echo hi$((6*7))\n")  # input as a binary frame
            await v.read_until(b"hi42\r\n")
            await v.send(json.dumps({"type": "input", "data": "echo t\u00e9$((6*7))xt\n"}))
            await v.read_until("té42xt\r\n".encode())
            await v.send(json.dumps({"type": "resize", "rows": 40, "cols": 100}))
        for o in others:  # the other viewer is told of the resize made through a
            assert await o.frame("resize") == {"type": "resize", "rows": 40, "cols": 100}
        for v in viewers:
            await v.send(b"stty size\n")
            await v.read_until(b"40 100\r\n")
            await v.send(json.dumps({"type": "ping"}))
            assert await v.frame("pong") == {"type": "pong"}
            await v.send(json.dumps({"type": "launch"}))
            await v.frame("error")
            await v.send(b"echo END\n")
            await v.read_until(b"END\r\nEND\r\n")
        direct, relayed = viewers
        assert relayed.output == direct.output  # the same bytes at the same offsets
        assert (relayed.first_offset, relayed.next_offset) == (
            direct.first_offset,
            direct.next_offset,
        )
        assert relayed.frames == direct.frames  # the same text frames, in the same order
        for twin in twins:
            state = get(Twin(a, twin.fields), f"{T}/sessions/{{id}}").json()
            assert (state["rows"], state["cols"], state["viewers"]) == (40, 100, 2)
            assert state["node"] == "b"
    finally:
        for client in viewers + others:
            await client.close()


async def test_the_legacy_terminal_websocket_through_a_is_bs(terminals: Twins) -> None:
    """``WS /ws/terminal/{id}?resume=true`` (SPEC §3.2's alias) through a: b's hello and
    replay."""
    seen = []
    for twin in terminals:
        url = f"{ws_base(twin.node)}/ws/terminal/{twin.id}?resume=true&token={ALICE}"
        frames: list[Any] = []
        async with websockets.connect(url) as ws:
            while not (
                frames and isinstance(frames[-1], dict) and frames[-1]["type"] == "replay_done"
            ):
                message = await asyncio.wait_for(ws.recv(), 15)
                frames.append(
                    decode_output(message) if isinstance(message, bytes) else json.loads(message)
                )
        seen.append(twin.neutral(frames))
    assert seen[1] == seen[0]
    assert seen[0][0]["type"] == "hello" and seen[0][0]["session"]["id"] == "{id}"
    assert (0, b"hello\r\n") in seen[0]


def seq_output(n: int) -> bytes:
    return b"".join(b"%d\r\n" % i for i in range(1, n + 1))


async def test_resume_through_a_after_a_cut_loses_and_repeats_nothing(pair: Pair) -> None:
    """tests/server/test_terminal_ws.py's exact resume, with every byte read through a."""
    a, _ = pair
    seq = Call(
        "seq-",
        "POST",
        f"{T}/sessions",
        201,
        json={
            "id": "{id}",
            "command": ["/bin/sh", "-c", "read go; seq 1 100000; echo END; sleep 60"],
            "node": "b",
        },
    )
    made = send(Twin(a, {"id": (id := label("seq-"))}), seq)
    assert made.status_code == 201 and made.json()["node"] == "b", made.text
    t = await TermClient.connect(ws_base(a), id, ALICE, reconnect="true")
    await t.send(b"go\n")
    await t.read_until(b"\r\n5000")  # well inside the stream
    seen = t.next_offset
    assert seen is not None
    await t.close()  # drop in the middle of the output
    info = until(
        lambda: (
            (s := get(Twin(a, {"id": id}), f"{T}/sessions/{{id}}").json())["output_end"]
            > seen + 100_000
            and s
        )
    )
    t2 = await TermClient.connect(ws_base(a), id, ALICE, reconnect="true", since=seen)
    try:
        assert t2.hello["replay_from"] == seen and t2.hello["missed_bytes"] == 0
        await t2.read_until(b"END\r\n")
        whole = bytes(t.output) + bytes(t2.output)
        assert whole == b"go\r\n" + seq_output(100_000) + b"END\r\n"  # nothing lost or repeated
        assert t2.first_offset == seen
        assert info["output_start"] == 0 and info["node"] == "b"
    finally:
        await t2.close()


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


FLOOD_LINES = 600_000  # 61 MB: more than the owner's buffer (8 MiB) and every socket's
FLOOD_LINE = b"0" * 100 + b"\r\n"


async def test_a_stalled_viewer_through_a_holds_the_program_back_and_loses_nothing(
    pair: Pair,
) -> None:
    """Flow control through a, as on one node (tests/server/test_terminal_ws.py's slow viewer
    alone): a terminal's only viewer, reading nothing through a while its program writes 61 MB,
    holds the program back (its output stops growing before the end) at no cost to the relaying
    node (no copy of the stream in its memory); once it reads, it gets every byte once."""
    a, _ = pair
    flood = Call(
        "flood-",
        "POST",
        f"{T}/sessions",
        201,
        json={
            "id": "{id}",
            "command": [
                "/bin/sh",
                "-c",
                f"read go; yes $(printf '%0100d' 0) | head -n {FLOOD_LINES}; echo END; sleep 60",
            ],
            "node": "b",
        },
    )
    twin = Twin(a, {"id": label("flood-")})
    made = send(twin, flood)
    assert made.status_code == 201 and made.json()["node"] == "b", made.text
    end = len(b"go\r\n") + FLOOD_LINES * len(FLOOD_LINE) + len(b"END\r\n")
    viewer = await TermClient.connect(ws_base(a), twin.id, ALICE, reconnect="true")
    try:
        relay = a.served.proc.pid
        before = peak = rss(relay)
        await viewer.send(b"go\n")  # then read nothing until the program has stopped
        async with httpx.AsyncClient(base_url=a.url, timeout=30) as client:
            url = f"{T}/sessions/{twin.id}?token={ALICE}"
            deadline = time.monotonic() + 60
            seen, same = -1, 0
            while same < 25:  # 0.5 s without a byte more: the program is held back
                output_end = (await client.get(url)).json()["output_end"]
                same, seen = (same + 1, seen) if output_end == seen else (0, output_end)
                peak = max(peak, rss(relay))
                assert time.monotonic() < deadline, "the output never stopped growing"
                await asyncio.sleep(0.02)
        assert seen < end, "the program wrote it all to a viewer that read nothing"
        assert peak - before < 16 << 20, f"the relaying node grew by {peak - before} bytes"
        await viewer.read_until(b"END\r\n", timeout=120)
        assert viewer.first_offset == 0 and viewer.next_offset == end
        assert not [f for f in viewer.frames if f["type"] == "missed"]
        assert bytes(viewer.output) == b"go\r\n" + FLOOD_LINE * FLOOD_LINES + b"END\r\n"
    finally:
        await viewer.close()


async def everything_until_closed(url: str, **kwargs: Any) -> tuple[list[Any], int | None, str]:
    """Every frame a websocket gets (output as (offset, bytes)), its close code and reason."""
    frames: list[Any] = []
    async with websockets.connect(url, max_size=None, **kwargs) as ws:
        try:
            while True:
                message = await asyncio.wait_for(ws.recv(), 15)
                frames.append(
                    decode_output(message) if isinstance(message, bytes) else json.loads(message)
                )
        except websockets.ConnectionClosed as exc:
            rcvd = exc.rcvd
            return frames, (rcvd.code if rcvd else None), (rcvd.reason if rcvd else "")


EXITING = Call(
    "exits-",
    "POST",
    f"{T}/sessions",
    201,
    json={
        "id": "{id}",
        "name": "twin",
        "command": ["/bin/sh", "-c", "echo bye; exit 3"],
        "node": "b",
    },
)

# (what, the query after ?, token, extra headers, close code)
TERMINAL_WS_REFUSALS = [
    ("missing", "/api/v1/terminal/ws/nothing-here?reconnect=true", ALICE, {}, 4404),
    ("bob's", "/api/v1/terminal/ws/{id}?reconnect=true", BOB, {}, 4404),
    (
        "since beyond the end",
        "/api/v1/terminal/ws/{id}?reconnect=true&since=99999999",
        ALICE,
        {},
        4400,
    ),
    ("bad reconnect", "/api/v1/terminal/ws/{id}?reconnect=maybe", ALICE, {}, 4400),
    ("bad rows", "/api/v1/terminal/ws/{id}?reconnect=true&rows=0", ALICE, {}, 4400),
    ("bad restore", "/api/v1/terminal/ws/{id}?reconnect=true&restore=all", ALICE, {}, 4400),
    ("no token", "/api/v1/terminal/ws/{id}?reconnect=true", None, {}, 4401),
    ("wrong token", "/api/v1/terminal/ws/{id}?reconnect=true", "wrong-token-1", {}, 4401),
    (
        "foreign origin",
        "/api/v1/terminal/ws/{id}?reconnect=true",
        ALICE,
        {"Origin": "https://evil.example"},
        4403,
    ),
    ("legacy missing", "/ws/terminal/nothing-here?resume=true", ALICE, {}, 4404),
]


@pytest.mark.parametrize(
    ("path", "token", "headers", "code"),
    [pytest.param(*case[1:], id=case[0]) for case in TERMINAL_WS_REFUSALS],
)
async def test_terminal_websocket_refusals_close_alike_through_a(
    terminals: Twins, path: str, token: str | None, headers: dict[str, str], code: int
) -> None:
    closes = []
    for twin in terminals:
        url = ws_base(twin.node) + twin.fill(path) + (f"&token={token}" if token else "")
        frames, got, reason = await everything_until_closed(url, additional_headers=headers)
        closes.append((twin.neutral(frames), got, twin.neutral(reason)))
    assert closes[0][1] == code, closes[0]
    assert closes[1] == closes[0]


async def test_an_exited_terminal_replays_then_closes_alike_through_a(pair: Pair) -> None:
    twins = twins_of(pair, "terminal", EXITING)
    for twin in twins:
        until(lambda t=twin: get(t, f"{T}/sessions/{{id}}").json()["status"] == "closed")  # type: ignore[misc]
    closes = []
    for twin in twins:
        url = f"{ws_base(twin.node)}/api/v1/terminal/ws/{twin.id}?reconnect=true&token={ALICE}"
        frames, code, reason = await everything_until_closed(url)
        closes.append((twin.neutral(frames), code, reason))
    assert closes[1] == closes[0]
    frames = closes[0][0]
    assert frames[0]["type"] == "hello" and b"bye" in b"".join(
        f[1] for f in frames if isinstance(f, tuple)
    )
    exits = [f for f in frames if isinstance(f, dict) and f["type"] == "exit"]
    assert len(exits) == 1 and exits[0]["exit_code"] == 3, frames


# --- the kernel websocket ---------------------------------------------------------------------


async def recv_json(ws: ClientConnection, seconds: float = 30) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), seconds))  # type: ignore[no-any-return]


async def until_done(ws: ClientConnection, request_id: str) -> list[dict[str, Any]]:
    events = []
    while True:
        event = await recv_json(ws)
        if event.get("request_id") == request_id:
            events.append(event)
            if event["type"] == "done":
                return events


async def kernel_ws_exchange(twin: Twin) -> list[Any]:
    """Everything a client of ``/api/v1/sessions/{id}/ws`` sees of a few executes, an interrupt,
    a ping and bad frames, in order."""
    seen: list[Any] = []
    url = f"{ws_base(twin.node)}/api/v1/sessions/{twin.id}/ws?token={ALICE}"
    async with websockets.connect(url) as ws:
        await ws.send(
            json.dumps({"type": "execute", "code": "print('a'); 2+2", "request_id": "r1"})
        )
        seen.append(await until_done(ws, "r1"))
        await ws.send(json.dumps({"type": "ping"}))
        seen.append(await recv_json(ws))
        await ws.send("{not json")
        seen.append(await recv_json(ws))
        await ws.send(json.dumps({"type": "execute", "request_id": "bad"}))
        seen.append(await recv_json(ws))
        code = "import time\nprint('started', flush=True)\ntime.sleep(30)"
        await ws.send(json.dumps({"type": "execute", "code": code, "request_id": "long"}))
        first = await recv_json(ws)
        assert first["text"] == "started\n", first
        await ws.send(json.dumps({"type": "interrupt"}))
        interrupted = await until_done(ws, "long")
        seen.append(
            [first, *[{k: v for k, v in e.items() if k != "traceback"} for e in interrupted]]
        )
        for n in (1, 2):
            await ws.send(json.dumps({"type": "execute", "code": f"{n}*10", "request_id": f"q{n}"}))
        seen.append([await until_done(ws, "q1"), await until_done(ws, "q2")])
    return seen


async def test_the_kernel_websocket_through_a_is_one_on_b(pair: Pair) -> None:
    twins = twins_of(pair, "kernel")
    direct, relayed = [twin.neutral(await kernel_ws_exchange(twin)) for twin in twins]
    assert relayed == direct
    assert [e["type"] for e in direct[0]] == ["stream", "execute_result", "done"]
    assert direct[1] == {"type": "pong"}
    assert direct[4][1]["ename"] == "KeyboardInterrupt"


@pytest.mark.parametrize(
    ("path", "code"),
    [
        pytest.param("/api/v1/sessions/{id}/ws", 4401, id="no token"),
        pytest.param(f"/api/v1/sessions/{{id}}/ws?token={BOB}", 4404, id="bob's"),
        pytest.param(f"/api/v1/sessions/nothing-here/ws?token={ALICE}", 4404, id="missing"),
        pytest.param(f"/api/kernels/{{id}}/channels?token={BOB}", 4404, id="bob's channels"),
        pytest.param("/api/kernels/{id}/channels", 4401, id="channels without token"),
    ],
)
async def test_kernel_websocket_refusals_close_alike_through_a(
    kernels: Twins, path: str, code: int
) -> None:
    closes = []
    for twin in kernels:
        frames, got, reason = await everything_until_closed(ws_base(twin.node) + twin.fill(path))
        closes.append((twin.neutral(frames), got, twin.neutral(reason)))
    assert closes[0][1] == code, closes[0]
    assert closes[1] == closes[0]


# --- Jupyter's channels -----------------------------------------------------------------------


async def channels_exchange(twin: Twin, v1: bool) -> tuple[str | None, list[Any]]:
    """A kernel_info_request and two execute_requests on ``/api/kernels/{id}/channels``: what a
    Jupyter client reads of them (the subprotocol; each reply's type and content, and its IOPub
    messages' types and text)."""
    url = f"{ws_base(twin.node)}/api/kernels/{twin.id}/channels?token={ALICE}&session_id=s1"
    seen: list[Any] = []
    async with websockets.connect(url, subprotocols=[V1] if v1 else None) as ws:  # type: ignore[list-item]
        sock = KernelSocket(ws, v1)
        info, _ = await sock.request("shell", "kernel_info_request", {})
        seen.append((info["channel"], info["msg_type"], info["content"]["status"]))
        for code in ("print('hi'); 6*7", "1/0"):
            reply, iopub = await sock.execute(code)
            # left out: a traceback (it names the kernel's own files) and the kernel's uuid
            content = {
                k: v for k, v in reply["content"].items() if k not in ("traceback", "engine_info")
            }
            seen.append(
                (
                    reply["channel"],
                    reply["msg_type"],
                    content,
                    [m["msg_type"] for m in iopub],
                    outputs_text(iopub),
                )
            )
        return ws.subprotocol, seen


@pytest.mark.parametrize("framing", ["v1", "json"])
async def test_jupyter_channels_through_a_are_those_of_b(pair: Pair, framing: str) -> None:
    twins = twins_of(pair, "jupyter-kernel")
    v1 = framing == "v1"
    direct, relayed = [await channels_exchange(twin, v1) for twin in twins]
    assert relayed == direct
    assert direct[0] == (V1 if v1 else None)
    info, hi, raised = direct[1]
    assert info == ("shell", "kernel_info_reply", "ok")
    assert hi[1] == "execute_reply" and hi[2]["status"] == "ok" and hi[4] == "hi\n42"
    assert raised[2]["status"] == "error" and raised[4] == "ZeroDivisionError"


# --- what is made or moved on b by other calls than a create ---------------------------------


def test_a_jupyter_sessions_new_kernel_answers_through_a(pair: Pair) -> None:
    twins = twins_of(pair, "jupyter-session")
    moved = []
    for twin in twins:
        answer = send(
            twin,
            Call("move", "PATCH", "/api/sessions/{id}", 200, json={"kernel": {"name": "python3"}}),
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["kernel"]["id"] != twin.fields["kernel"]
        moved.append(Twin(twin.node, {**twin.fields, "kernel": answer.json()["kernel"]["id"]}))
    twins = Twins(moved[0], moved[1])
    both(twins, Call("its new kernel", "GET", "/api/kernels/{kernel}", 200))


def test_a_jupyter_session_asked_again_by_path_is_bs_whoever_is_asked(pair: Pair) -> None:
    """Jupyter's clients ask for a notebook's session by its path, on whichever node: one node
    answers the session it has for that path, so a cluster must too."""
    a, b = pair
    twins = twins_of(pair, "jupyter-session")
    again = Call(
        "again",
        "POST",
        "/api/sessions",
        201,
        json={
            "path": "work/{label}.ipynb",
            "type": "notebook",
            "name": "{label}",
            "kernel": {"name": "python3"},
        },
    )
    for node in (b, a):
        for twin in twins:
            answer = send(Twin(node, twin.fields), again)
            assert answer.status_code == 201, answer.text
            model = answer.json()
            assert (model["id"], model["kernel"]["id"], model["node"]) == (
                twin.id,
                twin.fields["kernel"],
                "b",
            ), f"asked on {node.name}: {model}"


async def test_a_terminal_made_by_a_websocket_on_b_answers_through_a(pair: Pair) -> None:
    a, b = pair
    id = label("wsmade-")
    t = await TermClient.connect(ws_base(b), id, ALICE)
    try:
        assert t.hello["session"]["id"] == id
        on_b = get(Twin(b, {"id": id}), f"{T}/sessions/{{id}}")
        through_a = get(Twin(a, {"id": id}), f"{T}/sessions/{{id}}")
        twin = Twin(b, {"id": id})
        assert_same(Call("get", "GET", "", 200), on_b, through_a, Twins(twin, twin))
    finally:
        await t.close()
