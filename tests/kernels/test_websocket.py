"""The kernel websocket on a real server (uvicorn on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import RunningServer

from .conftest import until

ALICE = "tok-alice-1"
BOB = "tok-bob-22"


@pytest.fixture
def kernel_server(make_server: Callable[..., RunningServer]) -> RunningServer:
    return make_server(session_pool_size=1)


async def recv(ws: Any, seconds: float = 15) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), seconds))  # type: ignore[no-any-return]


async def until_done(ws: Any, request_id: str) -> list[dict[str, Any]]:
    events = []
    while True:
        event = await recv(ws)
        if event.get("request_id") == request_id:
            events.append(event)
            if event["type"] == "done":
                return events


async def test_execute_interrupt_and_ping_over_the_websocket(kernel_server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=kernel_server.url) as http:
        r = await http.post(
            "/api/v1/sessions",
            json={"session_id": "w"},
            headers={"Authorization": f"Bearer {ALICE}"},
        )
        assert r.status_code == 201
    url = f"{kernel_server.ws_url}/api/v1/sessions/w/ws?token={ALICE}"
    async with websockets.connect(url) as ws:
        await ws.send(
            json.dumps({"type": "execute", "code": "print('a'); 2+2", "request_id": "r1"})
        )
        events = await until_done(ws, "r1")
        assert [e["type"] for e in events] == ["stream", "execute_result", "done"]
        assert events[1]["data"] == {"text/plain": "4"}
        assert events[-1]["status"] == "ok" and events[-1]["restarted"] is False

        await ws.send(json.dumps({"type": "ping"}))
        assert await recv(ws) == {"type": "pong"}
        await ws.send("{not json")
        assert (await recv(ws))["type"] == "error"
        await ws.send(json.dumps({"type": "execute", "request_id": "bad"}))
        assert await recv(ws) == {
            "type": "error",
            "request_id": "bad",
            "message": "An execute frame needs a 'code' string.",
        }
        await ws.send(json.dumps({"type": "launch"}))
        assert "Unknown frame type" in (await recv(ws))["message"]

        code = "import time\nprint('started', flush=True)\ntime.sleep(30)"
        await ws.send(json.dumps({"type": "execute", "code": code, "request_id": "long"}))
        assert (await recv(ws))["text"] == "started\n"
        await ws.send(json.dumps({"type": "interrupt"}))
        events = await until_done(ws, "long")
        assert events[0]["ename"] == "KeyboardInterrupt" and events[-1]["status"] == "error"

        # two executes in flight are answered in order, each tagged
        for n in (1, 2):
            await ws.send(json.dumps({"type": "execute", "code": f"{n}*10", "request_id": f"q{n}"}))
        first, second = await until_done(ws, "q1"), await until_done(ws, "q2")
        assert first[0]["data"]["text/plain"] == "10" and second[0]["data"]["text/plain"] == "20"
    async with httpx.AsyncClient(base_url=kernel_server.url) as http:

        async def closed_and_counted() -> bool:
            metrics = (await http.get("/metrics")).text
            return (
                'hearth_websockets_open{kind="kernel"} 0.0' in metrics
                and 'hearth_bytes_streamed_total{kind="kernel"}' in metrics
            )

        await until(closed_and_counted, 10)


@pytest.mark.parametrize(
    ("path", "headers", "code"),
    [
        ("/api/v1/sessions/w/ws", {}, 4401),
        (f"/api/v1/sessions/w/ws?token={BOB}", {}, 4404),
        (f"/api/v1/sessions/nothing/ws?token={ALICE}", {}, 4404),
        (f"/api/v1/sessions/w/ws?token={ALICE}", {"Origin": "https://evil.example"}, 4403),
    ],
)
async def test_refused_websockets_close_with_their_code(
    kernel_server: RunningServer, path: str, headers: dict[str, str], code: int
) -> None:
    async with httpx.AsyncClient(base_url=kernel_server.url) as http:
        await http.post(
            "/api/v1/sessions",
            json={"session_id": "w"},
            headers={"Authorization": f"Bearer {ALICE}"},
        )
    async with websockets.connect(kernel_server.ws_url + path, additional_headers=headers) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == code


async def test_a_binary_frame_gets_an_error_frame_and_the_connection_stays(
    kernel_server: RunningServer,
) -> None:
    async with httpx.AsyncClient(base_url=kernel_server.url) as http:
        r = await http.post(
            "/api/v1/sessions",
            json={"session_id": "bin"},
            headers={"Authorization": f"Bearer {ALICE}"},
        )
        assert r.status_code == 201
    url = f"{kernel_server.ws_url}/api/v1/sessions/bin/ws?token={ALICE}"
    async with websockets.connect(url) as ws:
        await ws.send(b'{"type": "ping"}')
        error = await recv(ws)
        assert error["type"] == "error" and "JSON text frames" in error["message"]
        await ws.send(json.dumps({"type": "execute", "code": "6*7", "request_id": "after"}))
        events = await until_done(ws, "after")
        assert events[0]["data"] == {"text/plain": "42"}


async def test_an_execute_that_cant_run_gets_an_error_frame_and_the_connection_stays(
    kernel_server: RunningServer,
) -> None:
    async with httpx.AsyncClient(base_url=kernel_server.url) as http:
        r = await http.post(
            "/api/v1/sessions",
            json={"session_id": "sur"},
            headers={"Authorization": f"Bearer {ALICE}"},
        )
        assert r.status_code == 201
    url = f"{kernel_server.ws_url}/api/v1/sessions/sur/ws?token={ALICE}"
    async with websockets.connect(url) as ws:
        await ws.send('{"type": "execute", "code": "\\ud800", "request_id": "bad"}')
        error = await recv(ws)
        assert error["type"] == "error" and error["request_id"] == "bad"
        assert "valid Unicode" in error["message"]
        for timeout in ("NaN", "Infinity", "true", "-1"):
            await ws.send(f'{{"type": "execute", "code": "1", "timeout": {timeout}}}')
            assert "positive number" in (await recv(ws))["message"]
        await ws.send(json.dumps({"type": "execute", "code": "6*7", "request_id": "after"}))
        events = await until_done(ws, "after")
        assert events[0]["data"] == {"text/plain": "42"}
