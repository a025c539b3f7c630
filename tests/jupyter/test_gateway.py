"""Jupyter Server itself, started with ``--GatewayClient.url`` at a Hearth test server, driven as
JupyterLab drives it: its kernels are Hearth kernel sessions of the gateway token's user."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from tests.conftest import RunningServer
from tests.served import free_port

from .kernelsocket import V1, KernelSocket, outputs_text

ALICE = "tok-alice-1"
LAB_TOKEN = "jupyter-lab-token"  # the browser's token for Jupyter Server, not Hearth's

pytestmark = pytest.mark.slow


@pytest.fixture
def hearth(make_server: Callable[..., RunningServer]) -> RunningServer:
    return make_server(session_pool_size=1)


@pytest.fixture
def jupyter(hearth: RunningServer, tmp_path: Path) -> Iterator[str]:
    """Jupyter Server in front of Hearth; its base URL."""
    port = free_port()
    home = tmp_path / "jupyter"
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
    }
    (home / "notebooks").mkdir(parents=True)
    log = (tmp_path / "jupyter.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_server",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            f"--IdentityProvider.token={LAB_TOKEN}",
            f"--ServerApp.root_dir={home / 'notebooks'}",
            "--ServerApp.open_browser=False",
            "--ServerApp.allow_root=True",
            f"--GatewayClient.url={hearth.url}",
            f"--GatewayClient.auth_token={ALICE}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            assert proc.poll() is None, (tmp_path / "jupyter.log").read_text()[-3000:]
            try:
                if httpx.get(f"{base}/api", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "Jupyter Server did not start"
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


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

        sent = await sock.send(
            "shell",
            "execute_request",
            {
                "code": "import time; time.sleep(60)",
                "silent": False,
                "store_history": True,
                "user_expressions": {},
                "allow_stdin": False,
            },
        )
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
