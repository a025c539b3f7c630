"""One kernel process: ready on entry, rich outputs, timeouts, death, and a thorough stop."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from hearth.kernels.kernel import Kernel, KernelSpec, kernel_environment
from hearth.kernels.procs import is_gone
from hearth.protocol.outputs import Outputs
from hearth.sandbox import open_sandbox

from .conftest import kernel_settings, until


def spec(tmp_path: Path, **kw: Any) -> KernelSpec:
    (tmp_path / "cwd").mkdir(exist_ok=True)
    env = kernel_environment({**os.environ, "HEARTH_TOKENS": '{"secret-token": "x"}'})
    return KernelSpec("python3", tmp_path / "cwd", tmp_path / "rt", env, **kw)


async def run(kernel: Kernel, code: str, limit: float | None = None) -> dict[str, Any]:
    outputs = Outputs()
    async for event in kernel.execute(code, limit):
        outputs.add(event)
    return outputs.result()


async def test_a_kernel_is_ready_on_entry_and_gives_nbformat_outputs(tmp_path: Path) -> None:
    async with Kernel(spec(tmp_path)) as kernel:
        # The very first execute sees all its output: IOPub was connected before entry.
        first = await run(kernel, "print('hello'); 1 + 1")
        assert first["status"] == "ok" and first["execution_count"] == 1
        assert first["outputs"] == [
            {"output_type": "stream", "name": "stdout", "text": "hello\n"},
            {
                "output_type": "execute_result",
                "data": {"text/plain": "2"},
                "metadata": {},
                "execution_count": 1,
            },
        ]
        image = await run(
            kernel,
            "from IPython.display import Image, display\n"
            "import base64\n"
            "png = base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
            "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==')\n"
            "display(Image(png))",
        )
        assert image["outputs"][0]["output_type"] == "display_data"
        assert image["outputs"][0]["data"]["image/png"].startswith("iVBOR")
        error = await run(kernel, "1/0")
        assert error["status"] == "error"
        assert error["outputs"][0]["ename"] == "ZeroDivisionError"
        assert error["outputs"][0]["traceback"]
        where = await run(
            kernel, "import os; print(os.getcwd()); print(os.environ.get('HEARTH_TOKENS'))"
        )
        assert where["outputs"][0]["text"] == f"{tmp_path / 'cwd'}\nNone\n"


async def test_a_timeout_interrupts_and_the_kernel_stays_usable(tmp_path: Path) -> None:
    async with Kernel(spec(tmp_path)) as kernel:
        slow = await run(kernel, "x = 41\nimport time\ntime.sleep(30)", limit=0.5)
        assert slow["status"] == "timeout"
        assert slow["duration_ms"] < 10_000
        assert any(o.get("ename") == "KeyboardInterrupt" for o in slow["outputs"])
        after = await run(kernel, "x + 1")
        assert after["status"] == "ok" and after["outputs"][0]["data"]["text/plain"] == "42"
        assert not after["restarted"]


async def test_a_kernel_that_ignores_the_interrupt_is_declared_dead(tmp_path: Path) -> None:
    code = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(30)"
    async with Kernel(spec(tmp_path, interrupt_grace=0.5)) as kernel:
        result = await run(kernel, code, limit=0.3)
        assert result["status"] == "timeout" and result["restarted"]
        assert kernel.died.is_set()


async def test_death_is_noticed_during_an_execute_and_after(tmp_path: Path) -> None:
    deaths: list[str] = []
    async with Kernel(spec(tmp_path), on_death=lambda k: deaths.append(k.why_dead)) as kernel:
        result = await run(kernel, "import os; os._exit(3)")
        assert result["status"] == "error" and result["restarted"]
        assert result["outputs"][0]["ename"] == "DeadKernelError"
        assert deaths == ["the process exited"]
        again = await run(kernel, "1")
        assert again["outputs"][0]["ename"] == "DeadKernelError"


async def test_stopping_kills_children_even_those_that_left_the_group(tmp_path: Path) -> None:
    code = (
        "import subprocess\n"
        "a = subprocess.Popen(['sleep', '300'])\n"
        "b = subprocess.Popen(['sleep', '301'], start_new_session=True)\n"
        "print(a.pid, b.pid)"
    )
    async with Kernel(spec(tmp_path)) as kernel:
        pids = [int(p) for p in (await run(kernel, code))["outputs"][0]["text"].split()]
        kernel_pid = kernel.pid
        assert not any(is_gone(p) for p in pids)
    assert is_gone(kernel_pid)
    await until(lambda: all(is_gone(p) for p in pids), 5)
    assert not (tmp_path / "rt").exists()


@pytest.mark.skipif(
    not Path("/usr/bin/bwrap").exists() and os.environ.get("CI") != "true",
    reason="needs bubblewrap (apt-get install bubblewrap)",
)
async def test_a_sandboxed_kernels_channels_are_unix_sockets_even_under_a_long_path(
    tmp_path: Path,
) -> None:
    """No loopback port that another session shares (SPEC §7.1); a runtime directory too deep
    for a socket's 107 bytes is reached through a descriptor of it."""
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    settings = kernel_settings(deep)
    sandbox = open_sandbox(settings)
    try:
        given = spec(deep, sandbox=sandbox, key="deep", uid=sandbox.kernel_uid(0))
        assert len(str(given.runtime_dir / "ipc-1").encode()) > 107
        async with Kernel(given) as kernel:
            km = kernel._km
            assert km is not None
            assert (km.transport, km.ip.startswith("/proc/self/fd/")) == ("ipc", True)
            result = await run(kernel, "6 * 7")
            assert result["outputs"][0]["data"]["text/plain"] == "42"
    finally:
        sandbox.close()
