"""The host contract: one table, both sides derived from it, and either side runs the same code."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Coroutine
from typing import Any

import pytest

from hearth.contract import api, calls
from hearth.contract.terminals import Output, Refused, TerminalSpec
from hearth.host.handover import Handovers
from hearth.host.local import LocalConnections, LocalKernels, LocalTerminals, LocalViewer
from hearth.host.server import run_inline
from hearth.server.host_client import (
    RemoteAttachment,
    RemoteConnections,
    RemoteKernels,
    RemoteSockets,
    RemoteTerminals,
)
from tests.conftest import RunningServer

SIDES = {
    "terminals": (api.TerminalsAPI, LocalTerminals, RemoteTerminals),
    "kernels": (api.KernelsAPI, LocalKernels, RemoteKernels),
    "viewer": (api.Viewer, LocalViewer, RemoteAttachment),  # named by its stream
    "sockets": (api.SocketsAPI, Handovers, RemoteSockets),
    "connections": (api.ConnectionsAPI, LocalConnections, RemoteConnections),
}


def parameters(fn: Any) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p != "self"]


@pytest.mark.parametrize("name", sorted(n for n in calls.CALLS if not n.startswith("host.")))
def test_every_call_is_one_method_of_the_protocol_with_its_arguments_on_both_sides(
    name: str,
) -> None:
    call = calls.CALLS[name]
    protocol, local, remote = SIDES[call.api]
    expected = [f for f in call.args.model_fields if not (call.api == "viewer" and f == "stream")]
    if call.stream is calls.Stream.UPLOAD:
        expected.append("chunks")  # the upload's bytes, not in the call's JSON
    for side in (protocol, local, remote):
        method = getattr(side, call.method)
        assert inspect.iscoroutinefunction(method), (side, call.method)
        assert parameters(method) == expected, (side, call.method)


def test_every_method_of_the_protocols_is_a_call() -> None:
    declared = {c.name for c in calls.CALLS.values()}
    for api_name, (protocol, _, _) in SIDES.items():
        methods = {
            n
            for n, v in vars(protocol).items()
            if inspect.iscoroutinefunction(v) and not n.startswith("__") and n != "aclose"
        }
        assert {f"{api_name}.{m}" for m in methods} <= declared


async def test_an_ordered_call_that_waits_is_refused_not_reordered() -> None:
    async def answers() -> int:
        return 42

    async def waits() -> int:
        await asyncio.sleep(0)
        return 42

    assert run_inline(answers(), "answers") == 42
    with pytest.raises(RuntimeError, match="declared ordered but waited"):
        run_inline(waits(), "waits")


async def scenario(terminals: api.TerminalsAPI, kernels: api.KernelsAPI) -> dict[str, Any]:
    """The same steps on either side; the answer leaves out what differs by nature (ids)."""
    info = await terminals.create("alice", TerminalSpec(name="either", command=["/bin/sh"]))
    seen = b""
    refused: list[str] = []
    async with await terminals.attach("alice", info.id, size=(30, 90)) as viewer:
        await terminals.write("alice", info.id, b"echo either-$((40+2))\n")
        await viewer.write(b"x" * (2 << 20))  # beyond max_input_bytes: refused, not answered
        await viewer.write(b"echo viewer-$((6*7))\n")
        async for event in viewer:
            if isinstance(event, Refused):
                refused.append(event.message)
            if isinstance(event, Output):
                seen += event.data
                viewer.ack(event.offset + len(event.data))
                if b"either-42" in seen and b"viewer-42" in seen:
                    break
    renamed = await terminals.rename("alice", info.id, "renamed")
    listed = [i.name for i in await terminals.list_sessions("alice")]
    history = [e.type for e in await terminals.history("alice", info.id)]
    await terminals.close("alice", info.id)

    state, created = await kernels.create("alice")
    events = await kernels.execute("alice", state.session_id, "x = 41\nprint(x + 1)")
    outputs = [e async for e in events]
    await kernels.terminate("alice", state.session_id)
    return {
        "refused": refused,
        "renamed": renamed.name,
        "size": (renamed.rows, renamed.cols),
        "listed": listed,
        "input_in_history": "input" in history,
        "created": created,
        "printed": [e.get("text") for e in outputs if e["type"] == "stream"],
        "done": outputs[-1]["type"],
    }


def run_on(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=60)


def test_the_in_process_core_and_the_remote_side_answer_alike(server: RunningServer) -> None:
    core = server.core
    local = run_on(
        server.host.loop,
        scenario(LocalTerminals(core.terminals), LocalKernels(core.kernels)),
    )
    app = server.app.state
    remote = run_on(server.loop, scenario(app.terminals, app.kernels))
    assert local == remote
    assert local["printed"] == ["42\n"] and local["done"] == "done"
    assert local["size"] == (30, 90) and local["listed"] == ["renamed"]
    assert len(local["refused"]) == 1 and "smaller pieces" in local["refused"][0]


def test_a_stream_given_up_before_its_answer_is_closed_on_the_host(server: RunningServer) -> None:
    """A caller cancelled while its attach was on its way (a websocket that went at once) leaves
    no viewer in the host: it would keep the session watched, so it never timed out."""
    terminals = server.app.state.terminals
    info = run_on(server.loop, terminals.create("alice", TerminalSpec(command=["/bin/sh"])))

    async def give_up() -> None:
        attaching = asyncio.ensure_future(terminals.attach("alice", info.id))
        await asyncio.sleep(0)  # the call is sent; its answer is not back yet
        attaching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await attaching

    run_on(server.loop, give_up())
    manager = server.core.terminals
    deadline = time.monotonic() + 5
    while server.call(lambda: manager.get("alice", info.id).viewers) != 0:
        assert time.monotonic() < deadline, "the host kept the viewer nobody reads"
        time.sleep(0.02)
