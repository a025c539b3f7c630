"""Kernel sessions through the client, sync and async, on a real server with real kernels.
Each test starts a kernel, so there are few of them, each covering a user's whole story."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import hearth
from hearth.errors import NotFound
from tests.conftest import ALICE, RunningServer

CSV_SUM = (
    "import csv\n"
    "rows = list(csv.DictReader(open('data/in.csv')))\n"
    "print('rows:', len(rows))\n"
    "sum(int(r['b']) for r in rows)\n"
)


def test_a_script_uploads_a_csv_runs_code_on_it_and_reads_the_result(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(session_pool_size=1)
    with hearth.Client(server.url, ALICE) as client:
        with client.kernels.create(session_id="calc") as k:
            assert k.id == "calc" and k.info.status in ("active", "idle")
            k.upload("data/in.csv", b"a,b\n1,2\n3,4\n")
            result = k.execute(CSV_SUM)
            assert result.status == "ok"
            assert result.text == "rows: 2\n"
            assert result.result == "6"
            assert result.execution_count == 1 and not result.restarted

            events = list(k.stream("import sys; print('out'); print('err', file=sys.stderr); 1/0"))
            assert [e["type"] for e in events] == ["stream", "stream", "error", "done"]
            assert events[-1]["status"] == "error"
            failed = k.execute("raise ValueError('bad value')")
            assert failed.status == "error" and failed.error is not None
            assert failed.error["ename"] == "ValueError"

            k.upload("made.txt", "text is encoded")
            assert {f.path for f in k.files()} >= {"data/in.csv", "made.txt"}
            assert k.download("made.txt") == b"text is encoded"
            assert [s.id for s in client.kernels.list()] == ["calc"]
            assert client.kernels.get("calc").info.execution_count >= 3
            assert client.pool().max_kernels >= 1
            assert k.interrupt().session_id == "calc"
        with pytest.raises(NotFound):
            client.kernels.get("calc")


async def test_the_async_client_has_the_same_methods(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(session_pool_size=1)
    async with hearth.AsyncClient(server.url, ALICE) as client:
        async with await client.kernels.create() as k:
            await k.upload("in.csv", b"a,b\n1,2\n")
            result = await k.execute("print(open('in.csv').read().split()[1])")
            assert result.text == "1,2\n"
            events = [e async for e in k.stream("print('streamed')")]
            assert events[0] == {"type": "stream", "name": "stdout", "text": "streamed\n"}
            assert events[-1]["type"] == "done"
            assert await k.download("in.csv") == b"a,b\n1,2\n"
            assert (await k.restart()).session_id == k.id
            assert (await k.execute("'x' in dir()")).result == "False"
        assert await client.kernels.list() == []

        t = await client.terminals.create(id="a1", command=["/bin/bash", "--norc"])
        assert (await client.terminals.get("a1")).id == t.id
        with pytest.raises(NotFound):
            await client.terminals.get("zz")
        await client.terminals.close("a1")
