"""JupyterLab pointed at one node (``--GatewayClient.url``) runs a notebook on a kernel another
node holds (SPEC §12): its REST calls and its channels websocket are relayed."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import websockets

from tests.cluster.nodes import StartCluster, api, wait_for_nodes
from tests.conftest import ALICE
from tests.jupyter.kernelsocket import V1, KernelSocket, outputs_text
from tests.jupyter.servers import LAB_TOKEN, jupyter_with_gateway

pytestmark = pytest.mark.slow


async def test_jupyterlab_on_node_a_runs_a_notebook_on_a_kernel_of_node_b(
    cluster: StartCluster, tmp_path: Path
) -> None:
    a, b = cluster(2, env={"a": {"HEARTH_MAX_KERNELS": "1"}})  # a has the least headroom
    wait_for_nodes([a, b])
    with jupyter_with_gateway("jupyterlab", a.url, ALICE, tmp_path) as (lab_url, _):
        headers = {"Authorization": f"token {LAB_TOKEN}"}
        async with httpx.AsyncClient(base_url=lab_url, headers=headers, timeout=60) as lab:
            body = {
                "path": "n.ipynb",
                "type": "notebook",
                "name": "",
                "kernel": {"name": "python3"},
            }
            created = await lab.post("/api/sessions", json=body)
            assert created.status_code == 201, created.text
            kid = created.json()["kernel"]["id"]
            with api(a) as via_a:
                assert via_a.get(f"/api/v1/sessions/{kid}").json()["node"] == "b"
            with api(b) as on_b:
                assert kid in {s["session_id"] for s in on_b.get("/api/v1/sessions").json()}

            ws_url = lab_url.replace("http://", "ws://")
            url = f"{ws_url}/api/kernels/{kid}/channels?token={LAB_TOKEN}&session_id=lab-1"
            async with websockets.connect(url, subprotocols=[V1]) as ws:  # type: ignore[list-item]
                sock = KernelSocket(ws, ws.subprotocol == V1)
                reply, _ = await sock.execute("x = 41")
                assert reply["content"]["status"] == "ok"
                _, iopub = await sock.execute("print(x + 1)")
                assert outputs_text(iopub) == "42\n"

            assert (await lab.post(f"/api/kernels/{kid}/restart")).status_code == 200
            assert (await lab.delete(f"/api/sessions/{created.json()['id']}")).status_code == 204
            with api(b) as on_b:
                assert kid not in {s["session_id"] for s in on_b.get("/api/v1/sessions").json()}
