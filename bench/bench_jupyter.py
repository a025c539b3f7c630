"""The Jupyter kernel API (SPEC §10) against its baselines, measured in the same run.

    .venv/bin/python bench/bench_jupyter.py [--rounds N] [--executes N]

G  Jupyter Server as a gateway client (``--GatewayClient.url``), as JupyterLab uses it: a new
   kernel (``POST /api/kernels`` to Jupyter Server) → its websocket → the first ``1+1`` result.
   Through Hearth (a warm pool of 3) vs through Jupyter Kernel Gateway 3.0.1 with 3 pre-spawned
   kernels (in bench/.venv-kernel-gateway, made on first use from
   bench/requirements-kernel-gateway.txt). Each kernel is deleted after its round; Hearth's pool
   is refilled before the next. Again with Jupyter Server's kernel websocket without Nagle's
   algorithm (bench/jupyter_server_nodelay.py: it adds ~40 ms to every reply otherwise), and
   straight to each gateway, as a program written for Kernel Gateway's websocket personality.
R  execute round trip of ``1+1`` on a running kernel through Hearth's channels websocket, in the
   v1 subprotocol and in the legacy JSON form, vs raw jupyter_client (``execute_interactive``)
   on a kernel of the same configuration.

Prints a table; figures are medians (p90 in brackets).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session
from jupyter_server.services.kernels.connection.base import (
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)
from websockets.sync.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_kernels import AUTH, TOKEN, fmt, hearth_server, raw_round_trips, stats, wait_pool_ready
from terminal_common import log, pinned_venv

BENCH = Path(__file__).resolve().parent
V1 = "v1.kernel.websocket.jupyter.org"
KG_VENV = BENCH / ".venv-kernel-gateway"
KG_REQUIREMENTS = BENCH / "requirements-kernel-gateway.txt"
KG_TOKEN = "bench-kernel-gateway"
LAB_TOKEN = "bench-lab"
POOL = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def running(argv: list[str], url: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """A server process, once ``url`` answers; terminated at the end."""
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env or dict(os.environ)
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code < 500:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{argv[:3]} did not start")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def kernel_gateway(python: Path) -> Iterator[str]:
    port = free_port()
    argv = [
        str(python),
        "-m",
        "kernel_gateway",
        "--KernelGatewayApp.ip=127.0.0.1",
        f"--KernelGatewayApp.port={port}",
        f"--KernelGatewayApp.auth_token={KG_TOKEN}",
        f"--KernelGatewayApp.prespawn_count={POOL}",
        "--KernelGatewayApp.allow_origin=*",
    ]
    with running(argv, f"http://127.0.0.1:{port}/api") as url:
        yield url.removesuffix("/api")


@contextlib.contextmanager
def jupyter_server(gateway: str, token: str, nodelay: bool = False) -> Iterator[str]:
    """Jupyter Server (this environment's) with its GatewayClient at ``gateway``; with
    ``nodelay``, its kernel websockets without Nagle's algorithm (jupyter_server_nodelay.py)."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="hearth-bench-jupyter-") as home:
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": f"{home}/config",
            "JUPYTER_DATA_DIR": f"{home}/data",
            "JUPYTER_RUNTIME_DIR": f"{home}/runtime",
        }
        program = (
            [str(BENCH / "jupyter_server_nodelay.py")] if nodelay else ["-m", "jupyter_server"]
        )
        argv = [
            sys.executable,
            *program,
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            f"--IdentityProvider.token={LAB_TOKEN}",
            f"--ServerApp.root_dir={home}",
            "--ServerApp.open_browser=False",
            "--ServerApp.allow_root=True",
            f"--GatewayClient.url={gateway}",
            f"--GatewayClient.auth_token={token}",
        ]
        with running(argv, f"http://127.0.0.1:{port}/api", env) as url:
            yield url.removesuffix("/api")


# -- one Jupyter client ---------------------------------------------------------------------


class Channels:
    """A kernel websocket, with messages made by jupyter_client's Session."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws, self.v1, self.session = ws, ws.subprotocol == V1, Session()

    def execute(self, code: str) -> dict[str, Any]:
        """Run ``code``; its execute_result's content, once the reply and idle are in."""
        msg = self.session.msg(
            "execute_request",
            {
                "code": code,
                "silent": False,
                "store_history": True,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
        )
        if self.v1:
            self.ws.send(serialize_msg_to_ws_v1(msg, "shell", self.session.pack))
        else:
            self.ws.send(json.dumps({**msg, "channel": "shell"}, default=json_default))
        mine = msg["header"]["msg_id"]
        result: dict[str, Any] = {}
        replied = idle = False
        while not (replied and idle):
            header, parent, content = self._recv()
            if parent.get("msg_id") != mine:
                continue
            kind = header["msg_type"]
            replied |= kind == "execute_reply"
            idle |= kind == "status" and content["execution_state"] == "idle"
            if kind == "execute_result":
                result = content
        return result

    def _recv(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        raw = self.ws.recv(timeout=60)
        if self.v1:
            _, parts = deserialize_msg_from_ws_v1(raw)
            return json.loads(parts[0]), json.loads(parts[1]), json.loads(parts[3])
        msg = json.loads(raw)
        return msg["header"], msg["parent_header"], msg["content"]


def first_results(server: str, token: str, rounds: int, before: Callable[[], None]) -> list[float]:
    """G: POST /api/kernels → websocket → the first 1+1 (through Jupyter Server, or straight
    to the gateway as a program written for Kernel Gateway's websocket personality)."""
    samples = []
    headers = {"Authorization": f"token {token}"}
    ws_base = server.replace("http://", "ws://")
    with httpx.Client(base_url=server, headers=headers, timeout=120) as http:
        for i in range(rounds):
            before()
            started = time.perf_counter()
            kid = http.post("/api/kernels", json={"name": "python3"}).json()["id"]
            url = f"{ws_base}/api/kernels/{kid}/channels?token={token}&session_id=b{i}"
            with connect(url, subprotocols=[V1], max_size=None) as ws:  # type: ignore[list-item]
                result = Channels(ws).execute("1+1")
                samples.append(time.perf_counter() - started)
            assert result["data"]["text/plain"] == "2", result
            http.delete(f"/api/kernels/{kid}")
    return samples


def round_trips(url: str, executes: int, v1: bool) -> list[float]:
    """R: execute round trips through Hearth's channels websocket."""
    with httpx.Client(base_url=url, timeout=60) as http:
        wait_pool_ready(http, 1)
        kid = http.post("/api/kernels", headers=AUTH).json()["id"]
    ws_url = url.replace("http://", "ws://") + f"/api/kernels/{kid}/channels?token={TOKEN}"
    samples = []
    with connect(ws_url, subprotocols=[V1] if v1 else None) as ws:  # type: ignore[list-item]
        channels = Channels(ws)
        for _ in range(20):  # warm up
            channels.execute("1+1")
        for _ in range(executes):
            started = time.perf_counter()
            channels.execute("1+1")
            samples.append(time.perf_counter() - started)
    with httpx.Client(base_url=url, timeout=60) as http:
        http.delete(f"/api/kernels/{kid}", headers=AUTH)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="G samples per side")
    parser.add_argument("--executes", type=int, default=300, help="R samples per side")
    args = parser.parse_args()

    kg_python = pinned_venv(KG_VENV, KG_REQUIREMENTS, "kernel_gateway, ipykernel")
    log("R: raw jupyter_client ...")
    interactive, floor = asyncio.run(raw_round_trips(args.executes))
    with hearth_server(POOL) as hearth, httpx.Client(base_url=hearth) as http:
        refilled = lambda: wait_pool_ready(http, POOL)  # noqa: E731
        log("R: Hearth's channels websocket ...")
        v1 = round_trips(hearth, args.executes, v1=True)
        legacy = round_trips(hearth, args.executes, v1=False)
        log("G: Hearth directly ...")
        first_results(hearth, TOKEN, 1, refilled)  # warm up
        hearth_direct = first_results(hearth, TOKEN, args.rounds, refilled)
        log("G: Jupyter Server → Hearth ...")
        with jupyter_server(hearth, TOKEN) as jupyter:
            first_results(jupyter, LAB_TOKEN, 1, refilled)
            through_hearth = first_results(jupyter, LAB_TOKEN, args.rounds, refilled)
        with jupyter_server(hearth, TOKEN, nodelay=True) as jupyter:
            first_results(jupyter, LAB_TOKEN, 1, refilled)
            nodelay_hearth = first_results(jupyter, LAB_TOKEN, args.rounds, refilled)
    log("G: Kernel Gateway directly, and Jupyter Server → Kernel Gateway ...")
    settle = lambda: time.sleep(0.5)  # noqa: E731 - the last kernel's shutdown is not measured
    with kernel_gateway(kg_python) as kg:
        time.sleep(3)  # its pre-spawned kernels start: they are not what is measured
        first_results(kg, KG_TOKEN, 1, settle)
        kg_direct = first_results(kg, KG_TOKEN, args.rounds, settle)
        with jupyter_server(kg, KG_TOKEN) as jupyter:
            first_results(jupyter, LAB_TOKEN, 1, settle)
            through_kg = first_results(jupyter, LAB_TOKEN, args.rounds, settle)
        with jupyter_server(kg, KG_TOKEN, nodelay=True) as jupyter:
            first_results(jupyter, LAB_TOKEN, 1, settle)
            nodelay_kg = first_results(jupyter, LAB_TOKEN, args.rounds, settle)

    print(
        f"Jupyter kernel API ({os.cpu_count()} CPUs, Python {sys.version.split()[0]}); median [p90]\n"
    )
    print(f"{'G new kernel -> first 1+1 result':52} {'time':>20}   ratio")
    print(
        f"  {'Jupyter Server -> Kernel Gateway 3.0.1, 3 pre-spawned':50} {fmt(through_kg)}   1.0x"
    )
    ratio = stats(through_kg)[0] / stats(through_hearth)[0]
    print(
        f"  {'Jupyter Server -> Hearth, warm pool of 3':50} {fmt(through_hearth)}   {ratio:.1f}x faster"
    )
    print(f"  {'the same, Jupyter Server without Nagle (bench patch):':50}")
    print(f"  {'  -> Kernel Gateway':50} {fmt(nodelay_kg)}   1.0x")
    ratio = stats(nodelay_kg)[0] / stats(nodelay_hearth)[0]
    print(f"  {'  -> Hearth':50} {fmt(nodelay_hearth)}   {ratio:.1f}x faster")
    print(f"  {'Kernel Gateway directly':50} {fmt(kg_direct)}   1.0x")
    ratio = stats(kg_direct)[0] / stats(hearth_direct)[0]
    print(f"  {'Hearth directly':50} {fmt(hearth_direct)}   {ratio:.1f}x faster")
    raw = stats(interactive)[0]
    print(f"\n{'R execute round trip (1+1)':52} {'time':>20}   vs raw")
    print(f"  {'raw jupyter_client execute_interactive':50} {fmt(interactive)}   1.00x")
    print(
        f"  {'raw minimal send/receive loop (floor)':50} {fmt(floor)}   {stats(floor)[0] / raw:.2f}x"
    )
    print(
        f"  {'Hearth channels websocket, v1 subprotocol':50} {fmt(v1)}   {stats(v1)[0] / raw:.2f}x"
    )
    print(
        f"  {'Hearth channels websocket, legacy JSON':50} {fmt(legacy)}   {stats(legacy)[0] / raw:.2f}x"
    )


if __name__ == "__main__":
    main()
