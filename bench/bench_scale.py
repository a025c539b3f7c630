"""The scale run (issue 12): one `hearth serve` (sandboxed, its screen model on) holding many
live terminals (idle shells) and kernel sessions, with many viewers streaming output at once and
one viewer typing.

    .venv/bin/python bench/bench_scale.py [--terminals 1000] [--kernels 50] [--viewers 200]

Reports, in a Markdown table: errors (target 0), whether every stream was exact by offset,
keystroke echo p50/p99 under the streaming load, the time to create the terminals and the kernel
sessions, CPU seconds and RSS of the web server, the session host and the screen model, and the
time to list every terminal. Everything runs against the real server as its users drive it
(REST, websockets); the session host is ended with `hearth shutdown` at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from terminal_common import Plan, cpu_seconds, log, percentile, rss_kib, settled_rss_kib
from terminal_hearth import Hearth, HearthChannel, Served, hearth_server

# builtins only in the loop (printf, read -t as the pause): the output is the load, not the
# spawning of 6000 processes (with `seq` and `sleep` per burst the shells kept 2 cores 98% busy)
STREAM = (
    "exec 3<> <(:); for i in $(seq 1 {bursts}); do printf 'line %s of a burst\\n' {{1..{lines}}}; "
    "read -t 0.1 -u 3; done; exec 3<&-"
)


class Tally:
    """Errors by kind, each with its first example."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.examples: dict[str, str] = {}

    def add(self, kind: str, example: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.examples.setdefault(kind, example[:300])

    @property
    def total(self) -> int:
        return sum(self.counts.values())


async def gather_limited(
    jobs: list[Callable[[], Awaitable[Any]]], limit: int, tally: Tally, kind: str
) -> list[float]:
    """Run the jobs, at most ``limit`` at a time; the seconds each took (errors tallied)."""
    gate = asyncio.Semaphore(limit)
    took: list[float] = []

    async def one(job: Callable[[], Awaitable[Any]]) -> None:
        async with gate:
            started = time.perf_counter()
            try:
                await job()
            except Exception as exc:
                tally.add(kind, repr(exc))
            else:
                took.append(time.perf_counter() - started)

    await asyncio.gather(*(one(job) for job in jobs))
    return took


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine so far (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def usage(served: Served) -> dict[str, tuple[float, int]]:
    """(CPU seconds so far, RSS KiB) of each of Hearth's processes."""
    named = {"web server": served.pid, "session host": served.host_pid}
    if served.model_pid is not None:
        named["screen model"] = served.model_pid
    return {name: (cpu_seconds(pid), rss_kib(pid)) for name, pid in named.items()}


async def stream(h: Hearth, sid: str, command: str, tally: Tally, timeout: float) -> int:
    """Attach to ``sid``, run ``command`` to its end; the bytes received (offsets checked)."""
    async with h.attach(sid) as chan:
        await asyncio.wait_for(chan.got_replay_done.wait(), timeout)
        await chan.run_until_marker(command.encode() + b"\r", "DONE", timeout)
        check(chan, sid, tally)
        return chan.expected or 0


def check(chan: HearthChannel, sid: str, tally: Tally) -> None:
    if chan.gap_bytes or chan.overlap_bytes:
        tally.add(
            "stream not exact", f"{sid}: {chan.gap_bytes} skipped, {chan.overlap_bytes} repeated"
        )
    for error in chan.errors:
        tally.add("error frame or dropped connection", f"{sid}: {error}")


async def typing(h: Hearth, sid: str, samples: int, start: asyncio.Event) -> list[float]:
    """Echo times of single keys at a prompt, once ``start`` is set."""
    out: list[float] = []
    async with h.attach(sid) as chan:
        await chan.ready(60)
        await start.wait()
        for i in range(samples):
            if i and i % 100 == 0:
                await chan.send(b"\x15")  # a fresh line: it never wraps
                await chan.ready(60)
            watch = chan.watch(b"x")
            started = time.perf_counter_ns()
            await chan.send(b"x")
            await chan.wait(watch, 60)
            assert watch.found_at is not None
            out.append((watch.found_at - started) / 1e9)
    return out


async def main_async(args: argparse.Namespace) -> None:
    tmp = tempfile.mkdtemp(prefix="hearth-bench-scale-")
    log(f"working in {tmp}")
    try:
        plan = Plan(
            payload=0,
            producer="",
            runs=0,
            echo_samples=args.echo,
            warmup=0,
            reattach_lines=0,
            reattach_samples=0,
            create_samples=0,
            terminals=args.terminals,
            timeout=300,
            tmp=Path(tmp),
        )
        env = {
            "HEARTH_SANDBOX": "bubblewrap",
            "HEARTH_MAX_TERMINALS": str(args.terminals + 10),
            "HEARTH_MAX_TERMINALS_PER_USER": str(args.terminals + 10),
            "HEARTH_MAX_KERNELS": str(args.kernels + 4),
            "HEARTH_SESSION_POOL_SIZE": "2",
            "HEARTH_LOG_LEVEL": os.environ.get("HEARTH_LOG_LEVEL", "warning"),
            "HEARTH_SCREEN_MODEL": "false" if args.no_screen_model else "true",
            "HEARTH_SCREEN_MODEL_IDLE_TIME": str(args.idle_time),
        }
        with hearth_server(plan, "scale", env) as served:
            await run(args, plan, served)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


async def run(args: argparse.Namespace, plan: Plan, served: Served) -> None:
    h = Hearth(served.port, plan)
    tally = Tally()
    figures: list[tuple[str, str]] = []
    start_usage = usage(served)

    log(f"creating {args.terminals} terminals ...")
    ids = [f"t{i}" for i in range(args.terminals)]
    started = time.perf_counter()
    took = await gather_limited([lambda i=i: h.create(i) for i in ids], 16, tally, "create")
    created = time.perf_counter() - started
    figures.append(
        (
            "create the terminals (16 at a time)",
            f"{created:.1f} s "
            f"(each: p50 {percentile(took, 50) * 1000:.0f} ms, p99 {percentile(took, 99) * 1000:.0f} ms)",
        )
    )

    log(f"creating {args.kernels} kernel sessions ...")
    kernels = httpx.AsyncClient(base_url=h.http.base_url, headers=h.http.headers, timeout=300)

    async def kernel(n: int) -> None:
        r = await kernels.post("/api/v1/sessions", json={"session_id": f"k{n}"})
        r.raise_for_status()
        r = await kernels.post(f"/api/v1/sessions/k{n}/execute", json={"code": "1+1"})
        if r.json()["outputs"][0]["data"]["text/plain"] != "2":
            raise RuntimeError(f"k{n}: {r.text}")

    started = time.perf_counter()
    await gather_limited([lambda n=n: kernel(n) for n in range(args.kernels)], 8, tally, "kernel")
    figures.append(
        (
            "create the kernel sessions and run 1+1 in each (8 at a time)",
            f"{time.perf_counter() - started:.1f} s",
        )
    )
    await kernels.aclose()

    started = time.perf_counter()
    listed = await h.sessions()
    figures.append(
        (
            f"list the terminals (GET …/sessions, {len(listed)})",
            f"{(time.perf_counter() - started) * 1000:.0f} ms",
        )
    )
    if len(listed) != args.terminals:
        tally.add("list", f"{len(listed)} listed of {args.terminals}")
    idle_usage = usage(served)

    log(f"{args.viewers} viewers streaming, one typing ...")
    command = STREAM.format(bursts=args.bursts, lines=args.lines)
    go = asyncio.Event()
    typist = asyncio.ensure_future(typing(h, ids[-1], args.echo, go))
    streams = [
        lambda sid=sid: stream(h, sid, command, tally, plan.timeout) for sid in ids[: args.viewers]
    ]
    before = usage(served)
    client_before = time.process_time()
    machine_before = machine_busy()
    started = time.perf_counter()
    go.set()
    streaming = asyncio.ensure_future(gather_limited(streams, args.viewers, tally, "stream"))
    try:
        echo = await typist
    except Exception as exc:
        tally.add("typing", repr(exc))
        echo = []
    took = await streaming
    seconds = time.perf_counter() - started
    after = usage(served)
    client_cpu = time.process_time() - client_before
    machine_after = machine_busy()
    busy = (machine_after[0] - machine_before[0]) / max(1, machine_after[1] - machine_before[1])
    figures.append(
        (
            f"{args.viewers} viewers streaming ({args.bursts} bursts of {args.lines} lines each)",
            f"{len(took)} done in {seconds:.1f} s",
        )
    )
    figures.append(
        (
            "keystroke echo under that load, p50 / p99",
            f"{percentile(echo, 50) * 1000:.2f} / {percentile(echo, 99) * 1000:.2f} ms",
        )
    )
    figures.append(
        (
            "the whole machine while streaming (the shells and their programs too)",
            f"{busy:.0%} busy",
        )
    )
    figures.append(
        (
            "the benchmark's own client (every viewer, in one process): CPU while streaming",
            f"{client_cpu:.1f} s ({client_cpu / seconds * 100:.0f}% of a core)",
        )
    )
    for name in after:
        cpu = after[name][0] - before[name][0]
        figures.append(
            (
                f"{name}: CPU while streaming; RSS idle → after",
                f"{cpu:.1f} s ({cpu / seconds * 100:.0f}% of a core); "
                f"{idle_usage[name][1] / 1024:.0f} → {after[name][1] / 1024:.0f} MiB",
            )
        )
    for name, (cpu, _) in idle_usage.items():
        figures.append((f"{name}: CPU to create everything", f"{cpu - start_usage[name][0]:.1f} s"))
    if served.model_pid is not None and args.idle_time <= 120:
        wait = args.idle_time + 12  # the model looks for idle screens every min(idle, 10) s
        log(f"waiting {wait:g} s for the idle screens to sleep")
        await asyncio.sleep(wait)
        asleep = settled_rss_kib(served.model_pid)
        figures.append(
            (
                f"screen model RSS after {wait:g} s untouched (screen_model_idle_time = "
                f"{args.idle_time:g} s: every screen asleep)",
                f"{after['screen model'][1] / 1024:.0f} → {asleep / 1024:.0f} MiB",
            )
        )
    await h.http.aclose()

    print(
        f"\nScale run ({os.cpu_count()} CPUs): {args.terminals} terminals, {args.kernels} "
        f"kernel sessions, {args.viewers} viewers streaming, 1 typing\n"
    )
    print("| figure | value |\n|---|---|")
    print(f"| errors | {tally.total} |")
    for kind, count in tally.counts.items():
        print(f"| — {kind} | {count} (first: {tally.examples[kind]}) |")
    for name, value in figures:
        print(f"| {name} | {value} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--terminals", type=int, default=1000)
    parser.add_argument("--kernels", type=int, default=50)
    parser.add_argument("--viewers", type=int, default=200)
    parser.add_argument("--bursts", type=int, default=30, help="bursts of output per viewer")
    parser.add_argument("--lines", type=int, default=200, help="lines per burst")
    parser.add_argument("--echo", type=int, default=200, help="keystrokes timed")
    parser.add_argument("--keep", action="store_true", help="keep the data dir and logs")
    parser.add_argument("--no-screen-model", action="store_true", help="what the model costs")
    parser.add_argument(
        "--idle-time", type=float, default=20, help="the server's screen_model_idle_time (s)"
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
