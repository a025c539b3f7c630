"""``WS /api/kernels/{id}/channels`` on a real server, with real kernels, in both of Jupyter's
framings: every channel, parent headers, input on stdin, restarts and deaths as Jupyter Server
reports them, and bad frames that lose nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import RunningServer

from .kernelsocket import V1, KernelSocket, outputs_text

ALICE = "tok-alice-1"
AUTH = {"Authorization": f"token {ALICE}"}  # Jupyter's form of the header


@pytest.fixture
def kernel_server(make_server: Callable[..., RunningServer]) -> RunningServer:
    return make_server(session_pool_size=1)


@pytest.fixture
async def http(kernel_server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=kernel_server.url, headers=AUTH, timeout=60) as client:
        yield client


@pytest.fixture(params=["v1", "json"])
async def kernel(
    request: pytest.FixtureRequest, kernel_server: RunningServer, http: httpx.AsyncClient
) -> AsyncIterator[tuple[str, KernelSocket]]:
    """A new kernel and a connection to it, in the parametrised framing."""
    started = await http.post("/api/kernels", json={"name": "python3"})
    assert started.status_code == 201, started.text
    kid = started.json()["id"]
    v1 = request.param == "v1"
    url = f"{kernel_server.ws_url}/api/kernels/{kid}/channels?token={ALICE}&session_id=s1"
    async with websockets.connect(url, subprotocols=[V1] if v1 else None) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == (V1 if v1 else None)
        yield kid, KernelSocket(ws, v1)


async def test_every_shell_request_is_answered_with_its_parent(
    kernel: tuple[str, KernelSocket],
) -> None:
    _, sock = kernel
    requests: list[tuple[str, dict[str, Any]]] = [
        ("kernel_info_request", {}),
        ("complete_request", {"code": "import o", "cursor_pos": 8}),
        ("inspect_request", {"code": "print", "cursor_pos": 5, "detail_level": 0}),
        ("is_complete_request", {"code": "for i in range(3):"}),
        ("comm_info_request", {}),
        ("history_request", {"hist_access_type": "tail", "n": 1, "output": False, "raw": True}),
    ]
    for msg_type, content in requests:
        reply, iopub = await sock.request("shell", msg_type, content)
        assert reply["msg_type"] == msg_type.replace("_request", "_reply")
        assert reply["content"].get("status") != "error", reply["content"]
        states = [m["content"]["execution_state"] for m in iopub if m["msg_type"] == "status"]
        assert states == ["busy", "idle"]
    info, _ = await sock.request("shell", "kernel_info_request", {})
    assert info["content"]["language_info"]["name"] == "python"
    complete, _ = await sock.request(
        "shell", "complete_request", {"code": "import o", "cursor_pos": 8}
    )
    assert "os" in complete["content"]["matches"]
    inspect, _ = await sock.request(
        "shell", "inspect_request", {"code": "print", "cursor_pos": 5, "detail_level": 0}
    )
    assert inspect["content"]["found"] is True
    incomplete, _ = await sock.request("shell", "is_complete_request", {"code": "for i in x:"})
    assert incomplete["content"]["status"] == "incomplete"


async def test_control_answers_beside_the_shell(kernel: tuple[str, KernelSocket]) -> None:
    _, sock = kernel
    reply, _ = await sock.request("control", "kernel_info_request", {})
    assert reply["channel"] == "control" and reply["msg_type"] == "kernel_info_reply"


async def test_cells_run_with_their_outputs_and_input_is_answered_on_stdin(
    kernel: tuple[str, KernelSocket],
) -> None:
    _, sock = kernel
    reply, iopub = await sock.execute("x = 6 * 7\nprint('x is', x)\nx")
    assert reply["content"]["status"] == "ok"
    assert outputs_text(iopub) == "x is 42\n42"
    kinds = [m["msg_type"] for m in iopub]
    assert kinds[:2] == ["status", "execute_input"] and kinds[-1] == "status"

    sent = await sock.start("name = input('who? ')\nprint('hello', name)", allow_stdin=True)
    asked = (await sock.until(lambda m: m["msg_type"] == "input_request"))[-1]
    assert asked["channel"] == "stdin" and asked["content"]["prompt"] == "who? "
    assert asked["parent_header"]["msg_id"] == sent["header"]["msg_id"]
    await sock.send("stdin", "input_reply", {"value": "Ada"}, parent=asked["header"])
    seen = await sock.until(lambda m: m["msg_type"] == "stream" and "hello" in m["content"]["text"])
    assert seen[-1]["content"]["text"] == "hello Ada\n"


async def test_binary_buffers_reach_the_client(kernel: tuple[str, KernelSocket]) -> None:
    _, sock = kernel
    code = (
        "from comm import create_comm\n"
        "c = create_comm(target_name='t', data={'n': 1}, buffers=[b'\\x00\\xffbuf'])"
    )
    _, iopub = await sock.execute(code)
    opened = [m for m in iopub if m["msg_type"] == "comm_open"]
    assert len(opened) == 1 and opened[0]["content"]["data"] == {"n": 1}
    assert [bytes(b) for b in opened[0]["buffers"]] == [b"\x00\xffbuf"]


async def test_an_interrupt_stops_a_sleeping_cell(
    kernel: tuple[str, KernelSocket], http: httpx.AsyncClient
) -> None:
    kid, sock = kernel
    sent = await sock.start("import time; time.sleep(60)")
    await sock.until(lambda m: m["msg_type"] == "execute_input")
    assert (await http.post(f"/api/kernels/{kid}/interrupt")).status_code == 204
    seen = await sock.until(
        lambda m: (
            m["msg_type"] == "execute_reply"
            and m["parent_header"]["msg_id"] == sent["header"]["msg_id"]
        )
    )
    assert seen[-1]["content"]["status"] == "error"
    assert seen[-1]["content"]["ename"] == "KeyboardInterrupt"


async def test_a_restart_is_reported_and_the_connection_follows_the_new_kernel(
    kernel: tuple[str, KernelSocket], http: httpx.AsyncClient
) -> None:
    kid, sock = kernel
    await sock.execute("kept = 1")
    restarted = await http.post(f"/api/kernels/{kid}/restart")
    assert restarted.status_code == 200 and restarted.json()["id"] == kid
    await sock.until(
        lambda m: m["msg_type"] == "status" and m["content"]["execution_state"] == "restarting"
    )
    reply, iopub = await sock.execute("'kept' in dir()")
    assert outputs_text(iopub) == "False"
    assert reply["content"]["execution_count"] == 1


async def test_a_dead_kernel_is_restarted_and_reported(kernel: tuple[str, KernelSocket]) -> None:
    _, sock = kernel
    await sock.start("import os; os._exit(1)")
    await sock.until(
        lambda m: m["msg_type"] == "status" and m["content"]["execution_state"] == "restarting"
    )
    _, iopub = await sock.execute("1 + 1")
    assert outputs_text(iopub) == "2"


async def test_bad_frames_are_refused_on_stderr_and_lose_nothing(
    kernel: tuple[str, KernelSocket],
) -> None:
    _, sock = kernel
    bad: list[str | bytes] = (
        ["text in a binary protocol", b"\x01\x02", b"\x00" * 64]
        if sock.v1
        else [
            "not json",
            '{"header": {}}',
            '{"header": {"msg_id": "a", "msg_type": "x"}, "channel": "iopub"}',
            b"\x00\x00\x00\x01",
        ]
    )
    for frame in bad:
        await sock.ws.send(frame)
        said = await sock.recv()
        assert said["msg_type"] == "stream" and said["content"]["name"] == "stderr"
        assert said["content"]["text"].startswith("Hearth did not send a message:")
    _, iopub = await sock.execute("2 + 3")
    assert outputs_text(iopub) == "5"


async def test_deleting_the_kernel_closes_its_channels(
    kernel: tuple[str, KernelSocket], http: httpx.AsyncClient
) -> None:
    kid, sock = kernel
    await sock.execute("1")
    assert (await http.get(f"/api/kernels/{kid}")).json()["connections"] == 1
    assert (await http.delete(f"/api/kernels/{kid}")).status_code == 204
    with pytest.raises(websockets.ConnectionClosedOK) as closed:
        while True:
            await sock.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.reason == "kernel session ended"
