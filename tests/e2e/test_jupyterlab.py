"""JupyterLab itself, started with ``--GatewayClient.url`` at a Hearth test server, in headless
Chromium: a notebook's cells run on a kernel from Hearth's pool, of the gateway token's user."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer
from tests.jupyter.servers import LAB_TOKEN, jupyter_with_gateway

from .conftest import ALICE, shot

pytestmark = pytest.mark.slow

NOTEBOOK = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
    },
    "cells": [
        {
            "cell_type": "code",
            "id": "first",
            "metadata": {},
            "source": "x = 6 * 7\nopen('from-lab.txt', 'w').write('hi')\nprint('x is', x)",
            "outputs": [],
            "execution_count": None,
        }
    ],
}


def _kernel_info(frame: Any, answered: list[str]) -> None:
    text = frame if isinstance(frame, str) else frame.decode(errors="replace")
    if "kernel_info_reply" in text:
        answered.append(text)


@pytest.fixture
def hearth(make_server: Callable[..., RunningServer]) -> RunningServer:
    return make_server(session_pool_size=1)


@pytest.fixture
def lab(hearth: RunningServer, tmp_path: Path) -> Iterator[str]:
    with jupyter_with_gateway("jupyterlab", hearth.url, ALICE, tmp_path) as (base, notebooks):
        (notebooks / "demo.ipynb").write_text(json.dumps(NOTEBOOK))
        yield base


def test_a_notebook_runs_on_a_kernel_from_hearths_pool(
    hearth: RunningServer, lab: str, context: Any
) -> None:
    page = context.new_page()
    answered: list[str] = []  # kernel_info answers that reached the page's kernel websockets

    def watch(ws: Any) -> None:
        if "/channels" in ws.url:
            ws.on("framereceived", lambda frame: _kernel_info(frame, answered))

    page.on("websocket", watch)
    page.goto(f"{lab}/lab/tree/demo.ipynb?token={LAB_TOKEN}")
    # JupyterLab connects to the kernel (it may connect again) and asks kernel_info: a cell run
    # before its connection has the answer is dropped by JupyterLab itself
    deadline = time.monotonic() + 60
    while not answered:
        assert time.monotonic() < deadline, "JupyterLab's kernel had no kernel_info_reply in 60 s"
        page.wait_for_timeout(50)  # the page's events are handled while it waits
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
    page.click(".jp-Cell .jp-InputArea-editor")
    page.keyboard.press("Shift+Enter")
    output = page.wait_for_selector(".jp-OutputArea-output:has-text('x is 42')")
    shot(page, "jupyterlab-notebook")

    assert output.inner_text().strip() == "x is 42"
    auth = {"Authorization": f"Bearer {ALICE}"}
    mine = httpx.get(f"{hearth.url}/api/v1/sessions", headers=auth).json()
    assert len(mine) == 1 and mine[0]["from_pool"] is True
    assert mine[0]["execution_count"] == 1 and mine[0]["connections"] >= 1
    # the kernel runs in the Hearth session's own working directory
    files = httpx.get(f"{hearth.url}/api/v1/sessions/{mine[0]['session_id']}/files", headers=auth)
    assert [f["path"] for f in files.json()] == ["from-lab.txt"]
