"""A Jupyter client that comes back with its session id (``?session_id=``) takes over the
connection it left: what the kernel said meanwhile, and the replies and input requests of what it
asked before, reach it; another client's connection gets none of them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import RunningServer

from .kernelsocket import V1, KernelSocket, outputs_text

ALICE = "tok-alice-1"
AUTH = {"Authorization": f"token {ALICE}"}


@pytest.fixture
def kernel_server(make_server: Callable[..., RunningServer]) -> RunningServer:
    return make_server(session_pool_size=1)


@pytest.fixture
async def kernel_id(kernel_server: RunningServer) -> AsyncIterator[str]:
    async with httpx.AsyncClient(base_url=kernel_server.url, headers=AUTH, timeout=60) as http:
        yield (await http.post("/api/kernels")).json()["id"]


def _connect(server: RunningServer, kid: str, session: str) -> Any:
    url = f"{server.ws_url}/api/kernels/{kid}/channels?token={ALICE}&session_id={session}"
    return websockets.connect(url, subprotocols=[V1])  # type: ignore[list-item]


async def test_what_came_while_away_is_there_on_return(
    kernel_server: RunningServer, kernel_id: str
) -> None:
    code = "import time\ntime.sleep(1)\nprint('done while away')"
    async with _connect(kernel_server, kernel_id, "lab-1") as ws:
        sock = KernelSocket(ws, True)
        sent = await sock.start(code)
        await sock.until(lambda m: m["msg_type"] == "execute_input")
    mine = sent["header"]["msg_id"]
    async with _connect(kernel_server, kernel_id, "lab-1") as ws:  # nothing sent: only taken
        sock = KernelSocket(ws, True)
        seen = await sock.until(
            lambda m: m["msg_type"] == "execute_reply" and m["parent_header"]["msg_id"] == mine
        )
    assert outputs_text([m for m in seen if m["parent_header"].get("msg_id") == mine]) == (
        "done while away\n"
    )
    assert seen[-1]["content"]["status"] == "ok"


async def test_an_input_request_made_while_away_is_answered_on_return(
    kernel_server: RunningServer, kernel_id: str
) -> None:
    code = "import time\ntime.sleep(1)\nprint('hello', input('who? '))"
    async with _connect(kernel_server, kernel_id, "lab-2") as ws:
        sock = KernelSocket(ws, True)
        await sock.start(code, allow_stdin=True)
        await sock.until(lambda m: m["msg_type"] == "execute_input")
    async with _connect(kernel_server, kernel_id, "lab-2") as ws:
        sock = KernelSocket(ws, True)
        asked = (await sock.until(lambda m: m["msg_type"] == "input_request"))[-1]
        await sock.send("stdin", "input_reply", {"value": "Ada"}, parent=asked["header"])
        said = await sock.until(lambda m: m["msg_type"] == "stream")
        assert said[-1]["content"]["text"] == "hello Ada\n"


async def test_another_clients_connection_gets_none_of_its_replies(
    kernel_server: RunningServer, kernel_id: str
) -> None:
    code = "import time\ntime.sleep(1)"
    async with _connect(kernel_server, kernel_id, "lab-3") as ws:
        sock = KernelSocket(ws, True)
        sent = await sock.start(code)
        await sock.until(lambda m: m["msg_type"] == "execute_input")
    mine = sent["header"]["msg_id"]
    async with _connect(kernel_server, kernel_id, "someone-else") as ws:
        sock = KernelSocket(ws, True)
        seen = await sock.until(  # IOPub is everyone's: the end of lab-3's cell shows here
            lambda m: (
                m["msg_type"] == "status"
                and m["parent_header"].get("msg_id") == mine
                and m["content"]["execution_state"] == "idle"
            )
        )
        reply, _ = await sock.request("shell", "kernel_info_request", {})  # after lab-3's reply
        seen += [reply]
    assert not [
        m for m in seen if m["channel"] == "shell" and m["parent_header"].get("msg_id") == mine
    ]
    _, iopub = await _again(kernel_server, kernel_id)
    assert outputs_text(iopub) == "2"


async def _again(server: RunningServer, kid: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    async with _connect(server, kid, "lab-3") as ws:  # lab-3's own connection still works
        return await KernelSocket(ws, True).execute("1 + 1")
