"""A terminal websocket is handed to the session host, which serves it: a keystroke crosses one
process fewer, and a restart of the web server no longer cuts the connection."""

from __future__ import annotations

import array
import asyncio
import socket
import time
from collections.abc import Callable

import websockets

from tests.conftest import ALICE, RunningServer
from tests.server.termclient import TermClient


def served_by(server: RunningServer) -> tuple[float, float]:
    """Open terminal websockets: (served by the host, relayed by the web server)."""
    host = server.call(lambda: server.host.server.handovers.open.value)
    web = server.call_web(lambda: server.app.state.metrics.websockets_open.value("terminal"))
    return host, web


async def echo(t: TermClient, word: str) -> None:
    await t.send(f"echo {word}-$((20+22))\n".encode())
    await t.read_until(f"{word}-42\r\n".encode())


async def test_a_terminal_websocket_is_served_by_the_session_host(server: RunningServer) -> None:
    t = await TermClient.connect(server.ws_url, "h", ALICE)
    assert t.hello["session"]["id"] == "h"
    await echo(t, "handed")
    assert served_by(server) == (1, 0)
    await t.close()
    deadline = time.monotonic() + 10
    while served_by(server) != (0, 0):
        assert time.monotonic() < deadline, served_by(server)
        await asyncio.sleep(0.02)


async def test_a_restart_of_the_web_server_leaves_the_terminal_websocket_open(
    server: RunningServer,
) -> None:
    t = await TermClient.connect(server.ws_url, "r", ALICE)
    await echo(t, "before")
    await asyncio.to_thread(server.restart_web)
    await echo(t, "after")  # the same connection, the same shell
    assert served_by(server) == (1, 0)
    await t.close()


async def test_a_stopping_session_host_closes_its_websockets_with_1012(
    server: RunningServer,
) -> None:
    t = await TermClient.connect(server.ws_url, "s", ALICE)
    await echo(t, "up")
    server.server.should_exit = True  # first the web server (else it starts another host)
    await asyncio.to_thread(server.thread.join, 30)
    await echo(t, "still")
    await asyncio.to_thread(server.host.stop)
    assert await t.until_closed() == 1012  # "service restart": the client comes back


async def test_with_the_hand_over_off_the_web_server_relays(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(websocket_handover=False)
    t = await TermClient.connect(server.ws_url, "off", ALICE)
    await echo(t, "relayed")
    assert served_by(server) == (0, 1)
    await t.close()


async def test_without_the_hosts_hand_over_socket_the_web_server_relays(
    server: RunningServer,
) -> None:
    server.host.server.place.handover.unlink()
    t = await TermClient.connect(server.ws_url, "gone", ALICE)
    await echo(t, "relayed")
    assert served_by(server) == (0, 1)
    await t.close()


async def test_a_malformed_hand_over_is_dropped_and_the_next_one_served(
    server: RunningServer,
) -> None:
    address = str(server.host.server.place.handover)
    r, w = socket.socketpair()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as garbage:
        garbage.sendto(b"not a ticket at all", address)
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [r.fileno()]))]
        garbage.sendmsg([b"\0" * 3], rights, 0, address)  # a descriptor without a ticket
    r.close()
    t = await TermClient.connect(server.ws_url, "next", ALICE)
    await echo(t, "served")
    assert served_by(server) == (1, 0)
    await t.close()
    w.close()


async def test_a_clients_close_ends_the_connection_at_once(server: RunningServer) -> None:
    # the web server keeps a copy of the descriptor: the host must shut the connection down,
    # or the client waits for its close timeout
    url = f"{server.ws_url}/api/v1/terminal/ws/c?token={ALICE}"
    async with websockets.connect(url, close_timeout=30) as ws:
        await ws.recv()
        await asyncio.wait_for(ws.close(), 5)
