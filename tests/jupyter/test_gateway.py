"""Jupyter Server itself, started with ``--GatewayClient.url`` at a Hearth test server, driven as
JupyterLab drives it: its kernels are Hearth kernel sessions of the gateway token's user."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from tests.conftest import RunningServer

from .kernelsocket import V1, KernelSocket, outputs_text
from .servers import LAB_TOKEN, jupyter_with_gateway

ALICE = "tok-alice-1"

pytestmark = pytest.mark.slow


@pytest.fixture
def hearth(make_server: Callable[..., RunningServer]) -> RunningServer:
    return make_server(session_pool_size=1)


@pytest.fixture
def jupyter(hearth: RunningServer, tmp_path: Path) -> Iterator[str]:
    """Jupyter Server in front of Hearth; its base URL."""
    with jupyter_with_gateway("jupyter_server", hearth.url, ALICE, tmp_path) as (base, _):
        yield base


@pytest.fixture
async def lab(jupyter: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"token {LAB_TOKEN}"}
    async with httpx.AsyncClient(base_url=jupyter, headers=headers, timeout=60) as client:
        yield client


@pytest.fixture
async def hearth_api(hearth: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {ALICE}"}
    async with httpx.AsyncClient(base_url=hearth.url, headers=headers, timeout=60) as client:
        yield client


async def _connect(jupyter: str, kid: str) -> websockets.ClientConnection:
    ws_base = jupyter.replace("http://", "ws://")
    url = f"{ws_base}/api/kernels/{kid}/channels?token={LAB_TOKEN}&session_id=lab-1"
    return await websockets.connect(url, subprotocols=[V1])  # type: ignore[list-item]


async def test_a_notebooks_life_through_jupyter_server(
    jupyter: str, lab: httpx.AsyncClient, hearth_api: httpx.AsyncClient
) -> None:
    started = await lab.post("/api/kernels", json={"name": "python3"})
    assert started.status_code == 201, started.text
    kid = started.json()["id"]
    mine = {s["session_id"]: s for s in (await hearth_api.get("/api/v1/sessions")).json()}
    assert mine[kid]["from_pool"] is True  # a warm kernel, handed out to the gateway's user

    async with await _connect(jupyter, kid) as ws:
        sock = KernelSocket(ws, ws.subprotocol == V1)
        reply, iopub = await sock.execute("x = 6 * 7\nprint(x)")
        assert reply["content"]["status"] == "ok" and outputs_text(iopub) == "42\n"

        sent = await sock.start("import time; time.sleep(60)")
        await sock.until(lambda m: m["msg_type"] == "execute_input")
        assert (await lab.post(f"/api/kernels/{kid}/interrupt")).status_code == 204
        seen = await sock.until(
            lambda m: (
                m["msg_type"] == "execute_reply"
                and m["parent_header"]["msg_id"] == sent["header"]["msg_id"]
            )
        )
        assert seen[-1]["content"]["ename"] == "KeyboardInterrupt"

    assert (await lab.post(f"/api/kernels/{kid}/restart")).status_code == 200
    async with await _connect(jupyter, kid) as ws:  # JupyterLab reconnects after a restart
        sock = KernelSocket(ws, ws.subprotocol == V1)
        _, iopub = await sock.execute("'x' in dir()")
        assert outputs_text(iopub) == "False"

    assert (await lab.delete(f"/api/kernels/{kid}")).status_code == 204
    mine = {s["session_id"] for s in (await hearth_api.get("/api/v1/sessions")).json()}
    assert kid not in mine


async def test_a_notebook_session_gets_a_hearth_kernel(
    lab: httpx.AsyncClient, hearth_api: httpx.AsyncClient
) -> None:
    body = {"path": "analysis.ipynb", "type": "notebook", "name": "", "kernel": {"name": "python3"}}
    created = await lab.post("/api/sessions", json=body)
    assert created.status_code == 201, created.text
    kid = created.json()["kernel"]["id"]
    listed = (await lab.get("/api/sessions")).json()
    assert [s["kernel"]["id"] for s in listed] == [kid]
    mine = {s["session_id"] for s in (await hearth_api.get("/api/v1/sessions")).json()}
    assert kid in mine
    specs = (await lab.get("/api/kernelspecs")).json()
    assert specs["default"] == "python3" and "python3" in specs["kernelspecs"]
    assert (await lab.delete(f"/api/sessions/{created.json()['id']}")).status_code == 204
    mine = {s["session_id"] for s in (await hearth_api.get("/api/v1/sessions")).json()}
    assert kid not in mine
