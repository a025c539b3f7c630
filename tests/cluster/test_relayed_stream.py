"""A terminal stream read through a node that relays it loses and repeats nothing, wherever the
viewer's connection is cut (the single node's property, tests/server/test_terminal_ws.py,
through a relay)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cluster.nodes import Node, StartCluster, wait_for_nodes
from tests.conftest import ALICE
from tests.server.termclient import TermClient

LINES = 20_000


def seq_output(n: int) -> bytes:
    return b"".join(f"{i}\r\n".encode() for i in range(1, n + 1))


@pytest.fixture
def two(cluster: StartCluster) -> Iterator[tuple[Node, Node]]:
    a, b = cluster(2, env_all={"HEARTH_MAX_BUFFER_SIZE": "100000"})
    wait_for_nodes([a, b])
    yield a, b


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(cuts=st.lists(st.integers(min_value=1, max_value=60_000), min_size=1, max_size=4))
def test_a_relayed_stream_resumes_exactly_at_any_cut(
    two: tuple[Node, Node], cuts: list[int]
) -> None:
    a, _ = two

    async def scenario() -> None:
        id = f"p{time.monotonic_ns()}"
        command = ["/bin/sh", "-c", f"read go; seq 1 {LINES}; echo END; sleep 60"]
        headers = {"Authorization": f"Bearer {ALICE}"}
        async with httpx.AsyncClient(base_url=a.url, headers=headers, timeout=30) as c:
            made = await c.post(
                "/api/v1/terminal/sessions", json={"id": id, "node": "b", "command": command}
            )
            assert made.status_code == 201 and made.json()["node"] == "b", made.text
        expected = b"go\r\n" + seq_output(LINES) + b"END\r\n"
        got = bytearray()
        since: dict[str, int] = {}
        for i, cut in enumerate([*cuts, len(expected)]):
            t = await TermClient.connect(
                f"ws://127.0.0.1:{a.port}", id, ALICE, reconnect="true", **since
            )
            if i == 0:
                await t.send(b"go\n")
            want = min(cut, len(expected) - len(got))
            while len(t.output) < want:
                assert await t.recv_one() is not None
            got += t.output
            if t.next_offset is not None:
                since = {"since": t.next_offset}
            await t.close()
        assert bytes(got) == expected
        async with httpx.AsyncClient(base_url=a.url, headers=headers, timeout=30) as c:
            assert (await c.delete(f"/api/v1/terminal/sessions/{id}")).status_code == 204

    asyncio.run(scenario())
