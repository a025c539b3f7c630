"""``hearth.Client`` against a real server: terminal sessions, errors, life cycle."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

import hearth
from hearth.client._calls import resolve
from hearth.errors import BadRequest, Conflict, LimitReached, NotFound, ServiceError, Unauthorized
from tests.client.helpers import SHELL, poll
from tests.conftest import ALICE, BOB, RunningServer


def test_terminal_sessions_round_trip(server: RunningServer) -> None:
    with hearth.Client(server.url, ALICE) as client:
        t = client.terminals.create(
            name="build",
            id="rt",
            command=[*SHELL, "-c", "echo hi-there; exec cat"],
            rows=30,
            cols=100,
        )
        assert (t.id, t.name, t.user, t.rows, t.cols) == ("rt", "build", "alice", 30, 100)
        assert t.alive and t.status == "disconnected"
        assert [s.id for s in client.terminals.list()] == ["rt"]
        assert client.terminals.rename("rt", "deploy").name == "deploy"
        assert client.terminals.get("rt").name == "deploy"

        def said_hi() -> bool:
            return any("hi-there" in e.data for e in client.terminals.history("rt"))

        poll(said_hi, what="the greeting in the history")
        assert client.terminals.history("rt", limit=1)[0].seq >= 0
        header = json.loads(client.terminals.recording("rt").splitlines()[0])
        assert header["version"] == 2 and header["width"] == 100
        screen = client.terminals.screen("rt")  # SPEC §9: the screen as text, for programs
        assert any("hi-there" in line for line in screen.lines) and screen.cols == 100
        assert 0 < screen.offset <= client.terminals.get("rt").output_end

        client.terminals.close("rt")
        with pytest.raises(NotFound):
            client.terminals.get("rt")
        assert client.terminals.list() == []


def test_another_users_session_is_not_found(server: RunningServer) -> None:
    with hearth.Client(server.url, ALICE) as alice, hearth.Client(server.url, BOB) as bob:
        alice.terminals.create(id="mine", command=SHELL)
        with pytest.raises(NotFound) as caught:
            bob.terminals.get("mine")
        assert "mine" in caught.value.message
        with pytest.raises(NotFound):
            bob.terminals.close("mine")
        assert alice.terminals.get("mine").alive


def test_errors_are_typed_and_carry_the_servers_message(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(max_terminals_per_user=1)
    with hearth.Client(server.url, "wrong-token-9") as stranger:
        with pytest.raises(Unauthorized) as unauthorized:
            stranger.terminals.list()
        assert "token" in unauthorized.value.message
    with hearth.Client(server.url, ALICE) as client:
        with pytest.raises(NotFound):
            client.terminals.get("nope")
        client.terminals.create(id="one", command=SHELL)
        with pytest.raises(Conflict) as conflict:
            client.terminals.create(id="one", command=SHELL)
        assert "one" in conflict.value.message
        with pytest.raises(LimitReached) as limit:
            client.terminals.create(command=SHELL)
        assert limit.value.message
        with pytest.raises(NotFound):
            client.kernels.get("no-such-kernel")


def test_a_validation_error_reads_as_one_sentence(server: RunningServer) -> None:
    with hearth.Client(server.url, ALICE) as client, pytest.raises(BadRequest) as caught:
        client.terminals.create(rows=0, command=SHELL)
    assert caught.value.message.startswith("rows: ")
    assert "greater than or equal to 1" in caught.value.message


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_a_server_that_is_not_running_is_named_with_what_to_do() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with hearth.Client(url, ALICE) as client, pytest.raises(ServiceError) as caught:
        client.terminals.list()
    assert url in caught.value.message
    assert "hearth serve" in caught.value.message


def test_a_closed_client_says_so() -> None:
    client = hearth.Client("http://127.0.0.1:1", ALICE)
    client.close()
    client.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        client.terminals.list()
    assert "closed" in repr(client)
    assert ALICE not in repr(client)


def test_a_fake_transport_at_the_edge_sees_the_bearer_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(500, text="boom")

    client = hearth.Client("127.0.0.1:9", "secret-tok", transport=httpx.MockTransport(handler))
    with client, pytest.raises(ServiceError, match="boom"):
        client.pool()
    assert seen[0].headers["authorization"] == "Bearer secret-tok"
    assert str(seen[0].url) == "http://127.0.0.1:9/api/v1/pool"


def test_url_and_token_fall_back_to_the_environment_then_the_generated_token(
    tmp_path: Path,
) -> None:
    env = {"HEARTH_URL": "http://h:1/", "HEARTH_TOKEN": "from-env"}
    assert resolve(None, None, env) == ("http://h:1", "from-env")
    assert resolve("http://x:2", "given", env) == ("http://x:2", "given")
    (tmp_path / "token").write_text("generated-1\n")
    assert resolve(None, None, {}, tmp_path) == ("http://127.0.0.1:8765", "generated-1")
    assert resolve(None, None, {}, tmp_path / "none")[1] is None


def test_the_client_and_cli_never_import_the_server() -> None:
    code = (
        "import sys, hearth, hearth.client, hearth.cli, hearth.cli_attach\n"
        "bad = [m for m in sys.modules if m.split('.')[:2] in "
        "(['hearth', 'server'], ['hearth', 'terminals'], ['hearth', 'kernels'])]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


async def test_the_async_client_maps_errors_the_same_way(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(max_terminals_per_user=1)
    async with hearth.AsyncClient(server.url, "wrong-token-9") as stranger:
        with pytest.raises(Unauthorized):
            await stranger.terminals.list()
    async with hearth.AsyncClient(server.url, ALICE) as client:
        await client.terminals.create(id="one", command=SHELL)
        assert [t.id for t in await client.terminals.list()] == ["one"]
        with pytest.raises(Conflict):
            await client.terminals.create(id="one", command=SHELL)
        with pytest.raises(LimitReached):
            await client.terminals.create(command=SHELL)
        with pytest.raises(NotFound):
            await client.terminals.history("two")
        assert (await client.terminals.rename("one", "renamed")).name == "renamed"
        await client.terminals.close("one")
    with pytest.raises(RuntimeError, match="closed"):
        await client.terminals.list()
    url = f"http://127.0.0.1:{_free_port()}"
    async with hearth.AsyncClient(url, ALICE) as down:
        with pytest.raises(ServiceError, match="hearth serve"):
            await down.pool()
