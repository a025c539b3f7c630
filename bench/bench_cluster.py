"""Many nodes (SPEC §12): what a relaying node costs. Two `hearth serve` nodes and one Redis on
this machine; every session lives on node b and is used once directly (b) and once through a.

    .venv/bin/python bench/bench_cluster.py [--quick]        # ~1 min

Figures, relayed against direct, measured in the same run: a kernel execute round trip (`1`,
POST …/execute), keystroke echo on a terminal's websocket, the throughput of a terminal stream
(100-byte lines of `yes`), and the relaying node's CPU per MB it relays. Targets (issue 23): ≤ 1 ms p50
added, ≥ 0.7× the direct throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from tests.cluster.redis import Redis

from hearth.cluster.signing import HEADER, Signer
from terminal_common import (
    Plan,
    cpu_seconds,
    log,
    measure_echo,
    measure_throughput,
    ms,
    summarize_throughput,
)
from terminal_hearth import TOKEN, USER, Hearth, create_body, hearth_server

HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def node_env(name: str, redis: Redis, secret: str, db: int = 0) -> dict[str, str]:
    return {
        "HEARTH_CLUSTER_REDIS_URL": f"{redis.url.rsplit('/', 1)[0]}/{db}",
        "HEARTH_CLUSTER_SECRET": secret,
        "HEARTH_NODE_NAME": name,
        "HEARTH_SESSION_POOL_SIZE": "1",
    }


async def wait_for_each_other(ports: list[int]) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        for port in ports:
            while True:
                health = (await client.get(f"http://127.0.0.1:{port}/healthz")).json()
                nodes = health.get("nodes", [])
                up = len(nodes) >= len(ports) and all(n["reachable"] for n in nodes)
                if health.get("cluster") == "ok" and up:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the nodes did not see each other: {health}")
                await asyncio.sleep(0.05)


async def execute_round_trips(ports: list[int], session_id: str, samples: int) -> list[list[float]]:
    """Seconds per execute of ``1``, through each port in turn (direct and relayed samples
    alternate, so both see the same machine)."""
    out: list[list[float]] = [[] for _ in ports]
    clients = [
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=HEADERS, trust_env=False, timeout=60
        )
        for port in ports
    ]
    path = f"/api/v1/sessions/{session_id}/execute"
    try:
        for i in range(samples + 10):
            for times, client in zip(out, clients, strict=True):
                t0 = time.perf_counter_ns()
                answer = await client.post(path, json={"code": "1"})
                elapsed = (time.perf_counter_ns() - t0) / 1e9
                if answer.status_code != 200:
                    raise RuntimeError(f"execute: HTTP {answer.status_code} {answer.text}")
                if i >= 10:
                    times.append(elapsed)
    finally:
        for client in clients:
            await client.aclose()
    return out


async def terminal_figures(
    plan: Plan, port: int, session_id: str, relay_pid: int | None
) -> dict[str, Any]:
    h = Hearth(port, plan)
    runs = []
    relay_cpu = 0.0
    for _ in range(plan.runs):
        async with h.attach(session_id) as chan:
            cpu0 = cpu_seconds(relay_pid) if relay_pid else 0.0
            runs.append(await measure_throughput(chan, plan))
            if relay_pid:
                relay_cpu += cpu_seconds(relay_pid) - cpu0
    async with h.attach(session_id) as chan:
        echo = await measure_echo(chan, plan)
    await h.http.aclose()
    figures = {
        **summarize_throughput(runs, plan.payload),
        "echo_p50_ms": ms(echo),
        "echo_p99_ms": ms(echo, 99),
    }
    if relay_pid:
        figures["relay_cpu_ms_per_mb"] = relay_cpu * 1000 / (plan.runs * plan.payload / 1e6)
    return figures


async def measure(plan: Plan, a: Any, b: Any, samples: int) -> dict[str, dict[str, Any]]:
    await wait_for_each_other([a.port, b.port])
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{a.port}", headers=HEADERS, trust_env=False, timeout=60
    ) as client:
        kernel = await client.post("/api/v1/sessions", json={"session_id": "k1", "node": "b"})
        terminal = await client.post(
            "/api/v1/terminal/sessions", json={**create_body("t1"), "node": "b"}
        )
        for made in (kernel, terminal):
            if made.status_code not in (200, 201) or made.json().get("node") != "b":
                raise RuntimeError(f"create on b: HTTP {made.status_code} {made.text}")
    figures: dict[str, dict[str, Any]] = {}
    log("== execute, direct and relayed in turn")
    ports = [b.port, a.port]
    by_port = dict(zip(ports, await execute_round_trips(ports, "k1", samples), strict=True))
    for name, port, relay in (("direct", b.port, None), ("relayed", a.port, a.pid)):
        execs = by_port[port]
        log(f"== {name}: terminal")
        figures[name] = {
            "execute_p50_ms": ms(execs),
            "execute_p99_ms": ms(execs, 99),
            **await terminal_figures(plan, port, "t1", relay),
        }
        log(f"{name}: {json.dumps(figures[name])}")
    return figures


async def list_figures(plan: Plan, ports: list[int], count: int, signer: Signer) -> dict[str, Any]:
    await wait_for_each_other(ports)
    base = f"http://127.0.0.1:{ports[0]}"
    async with httpx.AsyncClient(
        base_url=base, headers=HEADERS, trust_env=False, timeout=120
    ) as client:
        gate = asyncio.Semaphore(16)
        placed: dict[str, int] = {}
        t0 = time.monotonic()

        async def one(i: int) -> None:
            async with gate:
                body = {"id": f"l{i}", "command": ["/bin/sleep", "1d"]}
                made = await client.post("/api/v1/terminal/sessions", json=body)
                if made.status_code != 201:
                    raise RuntimeError(f"create: HTTP {made.status_code} {made.text}")
                node = made.json()["node"]
                placed[node] = placed.get(node, 0) + 1

        await asyncio.gather(*(one(i) for i in range(count)))
        log(f"created {count} terminals in {time.monotonic() - t0:.1f} s: {placed}")
        alone = {}  # each node's own part, asked of it alone (a relayed list's signed header)
        for port in ports:
            own = []
            for _ in range(10):
                t0 = time.perf_counter_ns()
                part = await client.get(
                    f"http://127.0.0.1:{port}/api/v1/terminal/sessions",
                    headers={HEADER: signer.sign(USER, "GET", "/api/v1/terminal/sessions")},
                )
                own.append((time.perf_counter_ns() - t0) / 1e9)
                if part.status_code != 200:
                    raise RuntimeError(f"a node's part: HTTP {part.status_code} {part.text}")
            alone[str(port)] = ms(own)
        times = []
        for _ in range(20):
            t0 = time.perf_counter_ns()
            answer = await client.get("/api/v1/terminal/sessions")
            times.append((time.perf_counter_ns() - t0) / 1e9)
            if answer.status_code != 200:
                raise RuntimeError(f"list: HTTP {answer.status_code}")
        listed = answer.json()
        if len(listed) != count or len({s["id"] for s in listed}) != count:
            raise RuntimeError(f"listed {len(listed)} of {count}")
    return {
        "list_p50_ms": ms(times),
        "list_p99_ms": ms(times, 99),
        "placed": placed,
        "each_node_alone_p50_ms": alone,
    }


def list_on_three_nodes(plan: Plan, redis: Redis, secret: str, count: int) -> dict[str, Any]:
    many = {  # another cluster (Redis database 1): these three nodes only
        "HEARTH_SANDBOX": "none",
        "HEARTH_SCREEN_MODEL": "false",
        "HEARTH_MAX_TERMINALS": str(count),
        "HEARTH_MAX_TERMINALS_PER_USER": str(count),
        "HEARTH_SESSION_POOL_SIZE": "0",
    }
    with (
        hearth_server(plan, "c", node_env("c", redis, secret, 1) | many) as c,
        hearth_server(plan, "d", node_env("d", redis, secret, 1) | many) as d,
        hearth_server(plan, "e", node_env("e", redis, secret, 1) | many) as e,
    ):
        signer = Signer(secret, "bench")
        figures = asyncio.run(list_figures(plan, [c.port, d.port, e.port], count, signer))
        log(f"list: {json.dumps(figures)}")  # before the 10,000 sessions are shut down
        return figures


def print_table(figures: dict[str, Any], count: int) -> None:
    print("| figure | direct (node b) | relayed (through node a) | relayed − direct | target |")
    print("|---|---:|---:|---:|---|")
    if "direct" in figures:
        direct, relayed = figures["direct"], figures["relayed"]
        for name, key, target in (
            ("execute round trip p50 (ms)", "execute_p50_ms", "≤ +1 ms"),
            ("execute round trip p99 (ms)", "execute_p99_ms", ""),
            ("keystroke echo p50 (ms)", "echo_p50_ms", "≤ +1 ms"),
            ("keystroke echo p99 (ms)", "echo_p99_ms", ""),
        ):
            d, r = direct[key], relayed[key]
            print(f"| {name} | {d:.3f} | {r:.3f} | {r - d:+.3f} | {target} |")
        d, r = direct["throughput_mbps"], relayed["throughput_mbps"]
        print(f"| terminal stream (MB/s) | {d:.1f} | {r:.1f} | {r / d:.2f}× | ≥ 0.7× |")
        cpu = relayed["relay_cpu_ms_per_mb"]
        print(f"| relaying node's CPU per MB relayed | — | {cpu:.1f} ms | — | |")
    if "list" in figures:
        listing = figures["list"]
        print(
            f"| list {count} terminals held by three nodes, p50 / p99 (ms) | — | "
            f"{listing['list_p50_ms']:.1f} / {listing['list_p99_ms']:.1f} | — | ≤ 100 ms |"
        )
        parts = ", ".join(f"{v:.1f}" for v in listing["each_node_alone_p50_ms"].values())
        print(f"| each node's own part alone, p50 (ms) | — | {parts} | — | |")
    sys.stdout.flush()


def more_ptys(count: int) -> None:
    path = Path("/proc/sys/kernel/pty/max")
    if int(path.read_text()) < count + 1024:
        try:
            path.write_text(str(count + 4096))
        except OSError as exc:
            raise SystemExit(
                f"{count} terminals need kernel.pty.max ≥ {count + 1024}: {exc}"
            ) from None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="10 MB, fewer samples")
    p.add_argument("--json", type=Path, help="also write the raw figures to this file")
    p.add_argument("--list", type=int, help="terminals to list across three nodes")
    p.add_argument("--only", choices=("relay", "list"), help="one part of the two")
    args = p.parse_args()
    mb = 10 if args.quick else 50
    count = args.list or (1000 if args.quick else 10_000)
    if args.only != "relay":
        more_ptys(count)
    with tempfile.TemporaryDirectory(prefix="hearth-bench-cluster-") as tmp_name:
        tmp = Path(tmp_name)
        line = ("0123456789abcdefghijklmnopqrstuvwxyz" * 3)[:99]
        size = mb * 1_000_000
        plan = Plan(
            payload=size,
            producer=f"yes {line} | head -c {size}",  # 100-byte lines; no file: it is sandboxed
            runs=3,
            echo_samples=200 if args.quick else 500,
            warmup=20,
            reattach_lines=0,
            reattach_samples=0,
            create_samples=0,
            terminals=0,
            timeout=120.0,
            tmp=tmp,
        )
        (tmp / "redis").mkdir()
        redis = Redis("redis-server", tmp / "redis")
        secret = secrets.token_urlsafe(24)
        try:
            figures: dict[str, Any] = {}
            if args.only != "list":
                with (
                    hearth_server(plan, "b", node_env("b", redis, secret)) as b,
                    hearth_server(plan, "a", node_env("a", redis, secret)) as a,
                ):
                    figures = asyncio.run(measure(plan, a, b, 100 if args.quick else 300))
            if args.only != "relay":
                figures["list"] = list_on_three_nodes(plan, redis, secret, count)
        finally:
            redis.stop()
    print_table(figures, count)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
