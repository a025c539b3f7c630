"""Jupyter Server or JupyterLab, started for a test with its GatewayClient at a Hearth server."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.served import free_port

LAB_TOKEN = "jupyter-lab-token"  # the browser's token for Jupyter, not Hearth's


@contextlib.contextmanager
def jupyter_with_gateway(
    app: str, gateway: str, token: str, folder: Path
) -> Iterator[tuple[str, Path]]:
    """``python -m <app>`` (jupyter_server or jupyterlab) in front of ``gateway``, with its own
    config, data and notebook directories under ``folder``; its base URL and notebook dir."""
    port = free_port()
    notebooks = folder / "notebooks"
    notebooks.mkdir(parents=True)
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(folder / "config"),
        "JUPYTER_DATA_DIR": str(folder / "data"),
        "JUPYTER_RUNTIME_DIR": str(folder / "runtime"),
    }
    log_path = folder / "jupyter.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                app,
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={port}",
                f"--IdentityProvider.token={LAB_TOKEN}",
                f"--ServerApp.root_dir={notebooks}",
                "--ServerApp.open_browser=False",
                "--ServerApp.allow_root=True",
                f"--GatewayClient.url={gateway}",
                f"--GatewayClient.auth_token={token}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        try:
            while True:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{base}/api", timeout=2).status_code == 200:
                        break
                assert time.monotonic() < deadline, f"{app} did not start"
                time.sleep(0.1)
            yield base, notebooks
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
