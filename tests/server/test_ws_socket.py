"""The glue every websocket shares (hearth.server.ws_socket), on a tiny app served by a real
uvicorn in the test's own event loop: the pumps' lifetimes, the gauge, which errors end a
socket quietly, and that a client's last input is forwarded however the other pump ends."""

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
from starlette.websockets import WebSocket
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from hearth.errors import HostUnavailable
from hearth.server.metrics import Metrics
from hearth.server.serve import NoDelayWebSocketProtocol
from hearth.websocket.socket import Socket

Handler = Callable[[Socket, dict[str, Any]], Awaitable[None]]


@asynccontextmanager
async def served(handler: Handler) -> AsyncIterator[tuple[str, Metrics, dict[str, Any]]]:
    """A one-route app whose endpoint accepts, then runs ``handler(socket, seen)``: its URL,
    its metrics, and what the handler saw (complete once the handler has returned)."""
    metrics, seen = Metrics(), dict[str, Any]()
    done = asyncio.Event()

    async def endpoint(ws: WebSocket) -> None:
        try:
            await ws.accept()
            async with Socket(ws, "test", metrics.websockets_open.labels("test")) as socket:
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
    return metrics.websockets_open.value("test")


async def closed_with(ws: ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        await ws.recv()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def forever() -> None:
    await asyncio.Event().wait()


async def test_input_sent_just_before_the_close_is_forwarded_though_the_other_pump_ended() -> None:
    """The bug of the first helper: the host → client pump's end (here: it found the client
    gone, then returned) cancelled the client → host pump in the middle of forwarding the
    client's last input, which was lost."""
    forwarding, client_closed, to_client_ended = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def handler(socket: Socket, seen: dict[str, Any]) -> None:
        async def to_client() -> None:
            await forwarding.wait()
            await client_closed.wait()
            seen["sent_after_close"] = await socket.send_text("too late")
            to_client_ended.set()

        async def to_host() -> None:
            seen["forwarded"] = []
            while (message := await socket.receive())["type"] != "websocket.disconnect":
                forwarding.set()
                await to_client_ended.wait()  # a forward still under way when it ends,
                await asyncio.sleep(0)  # and one more turn of the loop, for a cancel to land
                seen["forwarded"].append(message["text"])
            seen["drained"] = True

        await socket.run(to_client, to_host)

    async with served(handler) as (url, metrics, seen):
        async with connect(url) as ws:
            await ws.send("echo last words")
        client_closed.set()  # the closing handshake is done: the server has seen the close
    assert seen["sent_after_close"] is False
    assert seen["forwarded"] == ["echo last words"] and seen["drained"]
    assert gauge(metrics) == 0


async def test_the_host_side_ending_closes_with_end_and_the_input_before_it_is_forwarded() -> None:
    forwarding, to_client_ended = asyncio.Event(), asyncio.Event()

    async def handler(socket: Socket, seen: dict[str, Any]) -> None:
        async def to_client() -> None:
            await forwarding.wait()
            await socket.send_json({"type": "exit"})  # e.g. the session exited
            to_client_ended.set()

        async def to_host() -> None:
            seen["forwarded"] = []
            while (message := await socket.receive())["type"] != "websocket.disconnect":
                forwarding.set()
                await to_client_ended.wait()
                await asyncio.sleep(0)  # the socket is closed with end during this turn
                seen["gone"] = socket.gone
                seen["forwarded"].append(message["text"])

        await socket.run(to_client, to_host, end=(1000, "session exited"))

    async with served(handler) as (url, _, seen), connect(url) as ws:
        await ws.send("input")
        assert await ws.recv() == '{"type": "exit"}'
        assert await closed_with(ws) == (1000, "session exited")
    assert seen["forwarded"] == ["input"] and seen["gone"]


async def test_the_clients_close_cancels_and_awaits_the_other_pump_and_the_tasks() -> None:
    async def handler(socket: Socket, seen: dict[str, Any]) -> None:
        async def to_client() -> None:
            seen["to_client"] = asyncio.current_task()
            try:
                await forever()  # the session host says nothing
            finally:
                await asyncio.sleep(0)  # its teardown is awaited, not left behind
                seen["to_client_ended"] = True

        async def to_host() -> None:
            while (await socket.receive())["type"] != "websocket.disconnect":
                socket.start(forever())  # e.g. an execute
                seen["received"] = True

        await socket.run(to_client, to_host)
        seen["left"] = asyncio.all_tasks()

    async with served(handler) as (url, metrics, seen), connect(url) as ws:
        await ws.send("hello")
    assert seen["open"] == 1 and seen["received"]
    assert seen["to_client"].cancelled() and seen["to_client_ended"]
    assert not [t for t in seen["left"] if "forever" in repr(t.get_coro())]
    assert seen["to_client"] not in seen["left"]
    assert gauge(metrics) == 0


async def test_a_lost_session_host_closes_with_1012_and_cancels_the_forwarding() -> None:
    forwarding = asyncio.Event()

    async def handler(socket: Socket, seen: dict[str, Any]) -> None:
        async def to_client() -> None:
            await forwarding.wait()
            raise HostUnavailable("The session host stopped.")

        async def to_host() -> None:
            try:
                forwarding.set()
                await forever()
            except asyncio.CancelledError:
                seen["cancelled"] = True
                raise

        await socket.run(to_client, to_host)

    async with served(handler) as (url, _, seen), connect(url) as ws:
        assert await closed_with(ws) == (1012, "The session host stopped.")
    assert seen["cancelled"]


async def test_what_is_sent_after_the_close_is_dropped_not_raised() -> None:
    async def handler(socket: Socket, seen: dict[str, Any]) -> None:
        assert await socket.send_text("first")
        await socket.close(4000, "bye")
        seen["gone"] = socket.gone
        seen["sent"] = await socket.send_text("too late")
        await socket.close(4001, "again")  # nothing to close: no error either

    async with served(handler) as (url, _, seen), connect(url) as ws:
        assert await ws.recv() == "first"
        assert await closed_with(ws) == (4000, "bye")
    assert seen == {"open": 1, "gone": True, "sent": False}


async def test_a_runtime_error_in_a_pump_propagates() -> None:
    async def handler(socket: Socket, seen: dict[str, Any]) -> None:
        async def to_host() -> None:
            raise RuntimeError("a bug, not a closed socket")

        try:
            await socket.run(forever, to_host)
        except* RuntimeError as group:
            seen["raised"] = [str(e) for e in group.exceptions]
        await socket.close(4000, "checked")

    async with served(handler) as (url, _, seen), connect(url) as ws:
        assert await closed_with(ws) == (4000, "checked")
    assert seen["raised"] == ["a bug, not a closed socket"]


async def test_a_task_can_start_only_while_the_pumps_run() -> None:
    async def handler(socket: Socket, seen: dict[str, Any]) -> None:
        with pytest.raises(RuntimeError, match="its pumps are not running") as refused:
            socket.start(forever())
        seen["message"] = str(refused.value)
        await socket.close()

    async with served(handler) as (url, _, seen), connect(url) as ws:
        assert await closed_with(ws) == (1000, "")
    assert (
        seen["message"] == "Cannot start a task on <Socket test open>: its pumps are not running."
    )
