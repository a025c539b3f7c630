"""The glue every websocket shares (hearth.server.ws_socket), on a tiny app served by a real
uvicorn in the test's own event loop: the pumps' lifetimes, the gauge, and which errors end a
socket quietly."""

from __future__ import annotations

import asyncio
import socket as sockets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from hearth.errors import HostUnavailable
from hearth.server.metrics import Metrics
from hearth.server.serve import NoDelayWebSocketProtocol
from hearth.server.ws_socket import Socket

Handler = Callable[[Socket, dict[str, Any]], Awaitable[None]]


@asynccontextmanager
async def served(handler: Handler) -> AsyncIterator[tuple[str, Metrics, dict[str, Any]]]:
    """A one-route app whose endpoint accepts, then runs ``handler(socket, seen)``: its URL,
    its metrics, and what the handler saw (complete once the connection has closed)."""
    metrics, seen = Metrics(), dict[str, Any]()
    done = asyncio.Event()

    async def endpoint(ws: WebSocket) -> None:
        try:
            await ws.accept()
            async with Socket(ws, "test", metrics) as socket:
                seen["open"] = gauge(metrics)
                await handler(socket, seen)
        finally:
            done.set()

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
    config = uvicorn.Config(app, lifespan="off", log_config=None, ws=NoDelayWebSocketProtocol)
    server = uvicorn.Server(config)
    with sockets.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        async with asyncio.TaskGroup() as tg:
            tg.create_task(server.serve(sockets=[listener]))  # it listens already
            try:
                yield f"ws://127.0.0.1:{port}/ws", metrics, seen
                await asyncio.wait_for(done.wait(), 10)
            finally:
                server.should_exit = True


def gauge(metrics: Metrics) -> float:
    value: float = metrics.websockets_open.labels("test")._value.get()
    return value


async def closed_with(ws: ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        await ws.recv()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def test_the_client_leaving_cancels_and_awaits_the_other_pump() -> None:
    async def handler(socket: Socket, seen: dict[str, Any]) -> None:
        async def to_client() -> None:
            seen["to_client"] = asyncio.current_task()
            try:
                await asyncio.Event().wait()  # the session host says nothing
            finally:
                await asyncio.sleep(0)  # its teardown is awaited, not left behind
                seen["to_client_ended"] = True

        async def to_host() -> None:
            while (await socket.receive())["type"] != "websocket.disconnect":
                seen["received"] = True

        await socket.run(to_client, to_host)
        seen["left"] = asyncio.all_tasks()

    async with served(handler) as (url, metrics, seen), connect(url) as ws:
        await ws.send("hello")
    assert seen["open"] == 1 and seen["received"]
    pump = seen["to_client"]
    assert pump.cancelled() and seen["to_client_ended"]
    assert pump not in seen["left"]
    assert not [t for t in seen["left"] if "Socket._pump" in repr(t.get_coro())]
    assert gauge(metrics) == 0


async def test_a_pump_ending_closes_with_the_given_code() -> None:
    async def handler(socket: Socket, seen: dict[str, Any]) -> None:
        async def to_client() -> None:
            await socket.send_json({"type": "bye"})

        async def to_host() -> None:
            await asyncio.Event().wait()

        await socket.run(to_client, to_host, end=(1000, "done"))

    async with served(handler) as (url, _, _), connect(url) as ws:
        assert await ws.recv() == '{"type": "bye"}'
        assert await closed_with(ws) == (1000, "done")


async def test_a_lost_session_host_closes_with_1012() -> None:
    async def handler(socket: Socket, seen: dict[str, Any]) -> None:
        async def to_client() -> None:
            raise HostUnavailable("The session host stopped.")

        async def to_host() -> None:
            await asyncio.Event().wait()

        await socket.run(to_client, to_host)

    async with served(handler) as (url, _, _), connect(url) as ws:
        assert await closed_with(ws) == (1012, "The session host stopped.")


async def test_sending_on_a_closed_socket_is_the_client_gone() -> None:
    async def handler(socket: Socket, seen: dict[str, Any]) -> None:
        await socket.close(1000)
        with pytest.raises(WebSocketDisconnect):
            await socket.send_text("too late")
        seen["checked"] = True

    async with served(handler) as (url, _, seen), connect(url) as ws:
        assert await closed_with(ws) == (1000, "")
    assert seen["checked"]


async def test_a_runtime_error_on_an_open_socket_propagates() -> None:
    async def handler(socket: Socket, seen: dict[str, Any]) -> None:
        async def to_client() -> None:
            await asyncio.Event().wait()

        async def to_host() -> None:
            raise RuntimeError("a bug, not a closed socket")

        try:
            await socket.run(to_client, to_host)
        except* RuntimeError as group:
            seen["raised"] = [str(e) for e in group.exceptions]
        await socket.close(4000, "checked")

    async with served(handler) as (url, _, seen), connect(url) as ws:
        assert await closed_with(ws) == (4000, "checked")
    assert seen["raised"] == ["a bug, not a closed socket"]
