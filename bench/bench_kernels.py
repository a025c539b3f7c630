"""Kernel session benchmarks against raw jupyter_client, measured in the same run.

    .venv/bin/python bench/bench_kernels.py [--rounds N] [--executes N]

P1  request → first ``1+1`` result: Hearth's warm pool (POST /api/v1/sessions, then execute,
    over HTTP to a ``hearth serve`` subprocess) vs a cold start with raw jupyter_client
    (AsyncKernelManager.start_kernel + wait_for_ready + execute).
P2  execute round trip of ``1+1`` on a running kernel: Hearth over HTTP and over the websocket
    vs raw jupyter_client (``execute_interactive``, and a minimal send/receive loop: the floor),
    taken in turns (10 blocks) so that the machine's drift falls on all of them alike.
M   memory of a pooled kernel (RSS and PSS, from /proc).

Hearth runs sandboxed (bubblewrap, what ``sandbox = auto`` picks where bwrap is installed); P1 and
P2 over HTTP run again with ``sandbox = none``, to show what the sandbox costs. The kernels live in
the session host that ``hearth serve`` starts; each server's host is ended with ``hearth shutdown``.

Prints a table; figures are medians (p90 in brackets).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import AsyncKernelManager, KernelManager
from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))

from terminal_common import companion_stopped, descendants
from terminal_hearth import SessionHost

TOKEN = "bench-token-1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(0.9 * (len(ordered) - 1))]


def fmt(samples: list[float]) -> str:
    median, p90 = stats(samples)
    return f"{median * 1000:8.2f} ms  [{p90 * 1000:7.2f}]"


# -- Hearth, as a separate server process -----------------------------------------------------


@contextlib.contextmanager
def hearth_server(
    pool: int, sandbox: str = "bubblewrap", command: list[str] | None = None
) -> Iterator[str]:
    """A sandboxed ``hearth serve`` (or ``command`` + ``serve …``) and its session host."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "HEARTH_TOKENS": json.dumps({TOKEN: "bench"}),
        "HEARTH_SESSION_POOL_SIZE": str(pool),
        "HEARTH_MAX_KERNELS": str(pool + 4),
        "HEARTH_SANDBOX": sandbox,
    }
    exe = Path(sys.executable).with_name("hearth")
    with tempfile.TemporaryDirectory(prefix="hearth-bench-", ignore_cleanup_errors=True) as data:
        host = SessionHost(exe, Path(data), env, log_path=None)
        # `hearth shutdown` once the server is stopped: the host outlives it, with the kernels
        with companion_stopped(host), serving(command or [str(exe)], port, data, env) as url:
            os.environ["BENCH_HOST_PID"] = str(host.pid())  # the kernels live under it
            try:
                yield url
            finally:
                del os.environ["BENCH_HOST_PID"]


@contextlib.contextmanager
def serving(command: list[str], port: int, data: str, env: dict[str, str]) -> Iterator[str]:
    """`hearth serve`, healthy; stopped with SIGINT at the end (its session host stays)."""
    proc = subprocess.Popen(
        [*command, "serve", "--port", str(port), "--data-dir", data],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("hearth serve did not become healthy")
            time.sleep(0.05)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_pool_ready(http: httpx.Client, target: int) -> None:
    deadline = time.monotonic() + 60
    while http.get("/api/v1/pool", headers=AUTH).json()["ready"] < target:
        if time.monotonic() > deadline:
            raise RuntimeError("the pool did not refill")
        time.sleep(0.02)


def hearth_p1(url: str, rounds: int, pool: int, creates: list[float] | None = None) -> list[float]:
    samples = []
    with httpx.Client(base_url=url) as http:
        for i in range(rounds):
            wait_pool_ready(http, pool)
            started = time.perf_counter()
            created = http.post("/api/v1/sessions", json={"session_id": f"p1-{i}"}, headers=AUTH)
            if creates is not None:
                creates.append(time.perf_counter() - started)
            result = http.post(
                f"/api/v1/sessions/p1-{i}/execute", json={"code": "1+1"}, headers=AUTH
            ).json()
            samples.append(time.perf_counter() - started)
            assert created.json()["from_pool"], created.text
            assert result["outputs"][0]["data"]["text/plain"] == "2", result
            http.delete(f"/api/v1/sessions/p1-{i}", headers=AUTH)
    return samples


def hearth_p2_http(url: str, n: int) -> list[float]:
    with httpx.Client(base_url=url) as http:
        http.post("/api/v1/sessions", json={"session_id": "p2"}, headers=AUTH)
        run = http_execute(http)
        return [run() for _ in range(n)]


def http_execute(http: httpx.Client) -> Callable[[], float]:
    def run() -> float:
        started = time.perf_counter()
        r = http.post("/api/v1/sessions/p2/execute", json={"code": "1+1"}, headers=AUTH)
        took = time.perf_counter() - started
        assert r.json()["status"] == "ok"
        return took

    return run


def ws_execute(ws: Any) -> Callable[[], float]:
    def run() -> float:
        started = time.perf_counter()
        ws.send(json.dumps({"type": "execute", "code": "1+1", "request_id": "p2"}))
        while json.loads(ws.recv())["type"] != "done":
            pass
        return time.perf_counter() - started

    return run


def raw_interactive(kc: BlockingKernelClient) -> Callable[[], float]:
    def run() -> float:
        started = time.perf_counter()
        kc.execute_interactive("1+1", output_hook=lambda m: None)
        return time.perf_counter() - started

    return run


def raw_floor(kc: BlockingKernelClient) -> Callable[[], float]:
    """The least a client can do: send, then read IOPub to the idle and the shell reply."""

    def run() -> float:
        started = time.perf_counter()
        msg_id = kc.execute("1+1")
        idle = replied = False
        while not idle:
            msg = kc.get_iopub_msg(timeout=30)
            idle = (
                msg["parent_header"].get("msg_id") == msg_id
                and msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"
            )
        while not replied:
            replied = kc.get_shell_msg(timeout=30)["parent_header"].get("msg_id") == msg_id
        return time.perf_counter() - started

    return run


def p2_interleaved(url: str, n: int, blocks: int = 10) -> dict[str, list[float]]:
    """Round trips of raw jupyter_client (``execute_interactive`` and the floor loop) and of
    Hearth (HTTP, websocket), taken in turns, ``n // blocks`` at a time: this machine's speed
    drifts by tens of percent over a minute, and each ratio must compare the same minutes."""
    km = KernelManager(kernel_name="python3")
    km.start_kernel(
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, extra_arguments=SAME_AS_HEARTH
    )
    kc = km.client()
    kc.start_channels()
    ws_url = url.replace("http", "ws") + f"/api/v1/sessions/p2/ws?token={TOKEN}"
    try:
        kc.wait_for_ready(timeout=60)
        with httpx.Client(base_url=url) as http:
            http.post("/api/v1/sessions", json={"session_id": "p2"}, headers=AUTH)
            with connect(ws_url) as ws:
                runs = {
                    "interactive": raw_interactive(kc),
                    "floor": raw_floor(kc),
                    "http": http_execute(http),
                    "ws": ws_execute(ws),
                }
                for run in runs.values():
                    warm(run, 20)
                samples: dict[str, list[float]] = {name: [] for name in runs}
                names = list(runs)
                for block in range(blocks):
                    for name in names[block % 4 :] + names[: block % 4]:
                        samples[name] += [runs[name]() for _ in range(n // blocks)]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return samples


def pooled_kernel_memory() -> tuple[list[tuple[int, int]], int]:
    """(RSS, PSS) in bytes of every ipykernel process under the bench server's session host
    (the kernels are its descendants), and the PSS of the other processes under it (a sandbox's
    bwrap), in bytes."""
    host = int(os.environ.get("BENCH_HOST_PID", "0"))
    kernels, others = [], 0
    for pid in descendants(host) if host else []:
        with contextlib.suppress(OSError, StopIteration):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
            smaps = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
            rss = next(int(x.split()[1]) for x in status if x.startswith("VmRSS"))
            pss = next(int(x.split()[1]) for x in smaps if x.startswith("Pss:"))
            if Path(argv[0].decode()).name.startswith("python") and b"ipykernel_launcher" in argv:
                kernels.append((rss * 1024, pss * 1024))
            elif not any(a.endswith(b"screen-model.mjs") for a in argv):  # the terminals' own
                others += pss * 1024
    return kernels, others


# -- raw jupyter_client ---------------------------------------------------------------------

# Hearth starts its kernels with IPython's history off (nothing of a user may outlive a recycle);
# the baseline runs the same kernel configuration, or it pays ~2 ms of history writes per execute.
SAME_AS_HEARTH = ["--HistoryManager.enabled=False"]


async def raw_cold_start(rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        km = AsyncKernelManager(kernel_name="python3")
        await km.start_kernel(
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, extra_arguments=SAME_AS_HEARTH
        )
        kc = km.client()
        kc.start_channels()
        await kc.wait_for_ready(timeout=60)
        reply = await kc.execute_interactive("1+1", output_hook=lambda m: None)
        samples.append(time.perf_counter() - started)
        assert reply["content"]["status"] == "ok"
        kc.stop_channels()
        await km.shutdown_kernel(now=True)
    return samples


def warm(fn: Callable[[], Any], times: int = 5) -> None:
    for _ in range(times):
        fn()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="P1 samples per side")
    parser.add_argument("--executes", type=int, default=200, help="P2 samples per side")
    parser.add_argument("--pool", type=int, default=2, help="Hearth's pool size")
    args = parser.parse_args()

    cold = asyncio.run(raw_cold_start(args.rounds))
    with hearth_server(args.pool) as url:
        warm(lambda: hearth_p1(url, 1, args.pool), 1)
        creates: list[float] = []
        pool_p1 = hearth_p1(url, args.rounds, args.pool, creates)
        p2 = p2_interleaved(url, args.executes)
        interactive, floor, http_p2, ws_p2 = p2["interactive"], p2["floor"], p2["http"], p2["ws"]
        with httpx.Client(base_url=url) as http:
            wait_pool_ready(http, args.pool)
        memory, sandbox_pss = pooled_kernel_memory()
    # the same server without the sandbox: what the sandbox costs on the paths it touches
    with hearth_server(args.pool, sandbox="none") as url:
        warm(lambda: hearth_p1(url, 1, args.pool), 1)
        bare_p1 = hearth_p1(url, args.rounds, args.pool)
        warm(lambda: hearth_p2_http(url, 20), 1)
        bare_p2 = hearth_p2_http(url, args.executes)

    raw_median = stats(interactive)[0]
    print(
        f"Kernel benchmarks ({os.cpu_count()} CPUs, Python {sys.version.split()[0]}); "
        "median [p90]\n"
    )
    print(f"{'P1 request -> first 1+1 result':44} {'time':>20}   ratio")
    print(f"  {'raw jupyter_client cold start':42} {fmt(cold)}   1.0x")
    ratio = stats(cold)[0] / stats(pool_p1)[0]
    print(f"  {'Hearth, warm pool (HTTP create+execute)':42} {fmt(pool_p1)}   {ratio:.0f}x faster")
    print(f"  {'  of which POST /api/v1/sessions':42} {fmt(creates)}")
    on_off = stats(pool_p1)[0] / stats(bare_p1)[0]
    print(f"  {'Hearth unsandboxed (sandbox = none)':42} {fmt(bare_p1)}   sandboxed {on_off:.2f}x")
    print(f"\n{'P2 execute round trip (1+1)':44} {'time':>20}   vs raw")
    print(f"  {'raw jupyter_client execute_interactive':42} {fmt(interactive)}   1.00x")
    print(
        f"  {'raw minimal send/receive loop (floor)':42} {fmt(floor)}   "
        f"{stats(floor)[0] / raw_median:.2f}x"
    )
    print(
        f"  {'Hearth over HTTP (keep-alive)':42} {fmt(http_p2)}   "
        f"{stats(http_p2)[0] / raw_median:.2f}x"
    )
    print(f"  {'Hearth over the websocket':42} {fmt(ws_p2)}   {stats(ws_p2)[0] / raw_median:.2f}x")
    print(
        f"  {'Hearth unsandboxed, HTTP':42} {fmt(bare_p2)}   "
        f"{stats(bare_p2)[0] / raw_median:.2f}x (sandboxed {stats(http_p2)[0] / stats(bare_p2)[0]:.2f}x)"
    )
    if memory:
        rss = statistics.mean(m[0] for m in memory) / 2**20
        pss = statistics.mean(m[1] for m in memory) / 2**20
        print(
            f"\nMemory per pooled kernel ({len(memory)} measured): RSS {rss:.1f} MiB, "
            f"PSS {pss:.1f} MiB; the sandbox's own processes (bwrap) PSS "
            f"{sandbox_pss / len(memory) / 2**20:.1f} MiB per kernel"
        )


if __name__ == "__main__":
    main()
