#!/usr/bin/env python3
"""The screen model (SPEC §9): what it costs per byte, how fast a snapshot is, and the output
throughput with it on and off, in one run.

    .venv/bin/python bench/bench_screen.py            # the full run (about two minutes)
    .venv/bin/python bench/bench_screen.py --quick    # a smaller one

1. Model cost: the throughput payload (50 MB of 100-byte lines) and a full-screen program's
   stream (cursor moves, colours, a status line) are fed straight to the session host's own
   ScreenModels in 64 KiB pieces, as PTY reads arrive, with nothing skipped. Node.js's CPU and
   the feeding Python's CPU per byte, until a snapshot shows the model has taken it all.
2. Snapshot: a 50×200 terminal holding 1000 lines of scrollback of 200 coloured columns: the
   first snapshot and the median of the next ones, straight from the model and through
   `GET …/screen` of a running server.
3. Throughput: `cat` of the payload through `hearth serve`, with the model on and with it off,
   alternated run by run with the raw PTY floor (this machine's speed drifts between runs), and
   the servers' CPU (host, web, model), counted until the model has taken every byte.

Prints a Markdown table on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_terminals import make_payload
from hearth.terminals.screen import ScreenModels
from terminal_common import (
    Plan,
    ThroughputRun,
    cpu_seconds,
    log,
    measure_echo,
    measure_throughput,
    percentile,
    stop_all_servers,
)
from terminal_floor import RawPty
from terminal_hearth import Hearth, hearth_server, visible_payload

PIECE = 64 * 1024  # a PTY read


def tui_stream(size: int) -> bytes:
    """What a full-screen program writes: cursor moves, colour changes, short runs of text."""
    frame = bytearray()
    for row in range(1, 51):
        frame += b"\x1b[%d;1H\x1b[38;5;%dm%-60s\x1b[0m" % (row, row * 5 % 256, b"item %d" % row)
        frame += b"\x1b[%d;70H\x1b[1;44m %6d \x1b[0m" % (row, row * 7919)
    frame += b"\x1b[50;1H\x1b[7m status: ok \x1b[0m\x1b[K"
    return bytes(frame) * (size // len(frame) + 1)


def listing_lines(count: int, cols: int = 200) -> bytes:
    """``count`` lines as `ls -l --color` writes them, padded to ``cols`` columns."""
    out = bytearray()
    for i in range(count):
        name = b"\x1b[01;34mdirectory-%06d\x1b[0m" % i
        line = b"drwxr-xr-x 2 user user 4096 Nov 30 12:00 " + name
        out += line + b" " * (cols - 41 - 16) + b"\r\n"
    return bytes(out)


def coloured_lines(count: int, cols: int = 200) -> bytes:
    """``count`` lines of ``cols`` columns, the colour changing every ten."""
    line = b"".join(b"\x1b[3%dm%s" % (i % 8, b"%-10d" % i) for i in range(cols // 10))
    return (line + b"\x1b[0m\r\n") * count


async def model_cost(data: bytes, what: str) -> dict[str, float]:
    """CPU per byte of the model (Node.js) and of feeding it (this process), nothing skipped."""
    models = ScreenModels("node", 1000)
    await models.start()
    try:
        fed = 0

        def source(offset: int | None) -> tuple[bytes, int]:
            return data[offset or 0 : fed], fed

        screen = models.open(50, 200, source)
        await screen.snapshot()  # started and warm
        assert models.pid is not None
        node0, py0, t0 = cpu_seconds(models.pid), time.process_time(), time.perf_counter()
        for at in range(0, len(data), PIECE):
            piece = data[at : at + PIECE]
            fed = at + len(piece)
            await screen.ready()  # the model is near: the pipe's patience a PTY would give
            screen.output(piece, fed, streaming=False)  # each piece at once, as echoes go
        python = time.process_time() - py0
        await screen.snapshot()
        wall = time.perf_counter() - t0
        node = cpu_seconds(models.pid) - node0
        assert models.skipped_bytes == 0
    finally:
        await models.aclose()
    n = len(data)
    log(f"  {what}: {n / 1e6:.0f} MB, node {node:.2f} s, feeding {python:.2f} s, wall {wall:.2f} s")
    return {"node_ns": node / n * 1e9, "feed_ns": python / n * 1e9, "mbps": n / wall / 1e6}


async def snapshot_times(data: bytes, samples: int) -> dict[str, float]:
    """The first snapshot of ``data`` in a started model (warmed up, as it warms itself at
    start), and the median of the next ones."""
    models = ScreenModels("node", 1000)
    await models.start()
    try:
        await models.open(5, 5, lambda offset: (b"", 0)).snapshot()  # after its warm-up
        output = bytearray(data)
        screen = models.open(50, 200, lambda offset: (bytes(output[offset or 0 :]), len(output)))
        t = time.perf_counter()
        first = await screen.snapshot()
        first_ms = (time.perf_counter() - t) * 1000
        times, unchanged = [], []
        for _ in range(samples):
            output += b"\x1b[0m"  # output that changes nothing shown: the screen is drawn anew
            screen.output(b"\x1b[0m", len(output), streaming=False)
            t = time.perf_counter()
            answer = await screen.snapshot()
            times.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            await screen.snapshot()  # no output since: the model answers as it did
            unchanged.append((time.perf_counter() - t) * 1000)
    finally:
        await models.aclose()
    assert answer["data"] == first["data"]
    return {
        "first_ms": first_ms,
        "median_ms": statistics.median(times),
        "unchanged_ms": statistics.median(unchanged),
        "chars": len(first["data"]),
    }


async def http_snapshot(plan: Plan, samples: int) -> float:
    """Median ms of `GET …/screen` of a session holding the same 1000 coloured lines."""
    lines = plan.tmp / "coloured.txt"
    lines.write_bytes(coloured_lines(1050).replace(b"\r\n", b"\n"))
    with hearth_server(plan, "snapshot", {}) as served:
        h = Hearth(served.port, plan)
        seen = visible_payload(plan, plan.tmp / "hearth-snapshot")  # where the shell sees it
        folder = Path(seen.producer.partition(" ")[2]).parent
        (folder / "coloured.txt").write_bytes(lines.read_bytes())
        async with h.session("snap") as chan:
            await chan.send(b"stty cols 200 rows 50; cat coloured.txt\r")
            deadline = time.monotonic() + plan.timeout
            while (await h.http.get(f"/api/v1/terminal/sessions/{chan.session_id}")).json()[
                "output_end"
            ] < 1050 * 200:
                assert time.monotonic() < deadline, "the lines never arrived"
                await asyncio.sleep(0.05)
            times = []
            for _ in range(samples + 1):
                t = time.perf_counter()
                r = await h.http.get(f"/api/v1/terminal/sessions/{chan.session_id}/screen")
                r.raise_for_status()
                times.append((time.perf_counter() - t) * 1000)
        await h.http.aclose()
    return statistics.median(times[1:])


async def throughput(plan: Plan) -> tuple[dict[str, list[ThroughputRun]], dict[str, list[float]]]:
    """Throughput runs of floor, on and off, alternated; then keystroke echoes of on and off,
    alternated in batches of 100 (each echo goes to the model at once, when it is on)."""
    runs: dict[str, list[ThroughputRun]] = {"floor": [], "on": [], "off": []}
    echoes: dict[str, list[float]] = {"on": [], "off": []}
    with (
        hearth_server(plan, "on", {}) as on,
        hearth_server(plan, "off", {"HEARTH_SCREEN_MODEL": "false"}) as off,
    ):
        servers = {"on": (on, Hearth(on.port, plan)), "off": (off, Hearth(off.port, plan))}
        for n in range(plan.runs):
            log(f"  round {n + 1} of {plan.runs}")
            pty = RawPty()
            try:
                runs["floor"].append(await measure_throughput(pty, plan))
            finally:
                await pty.close()
            for name, (served, h) in servers.items():
                tput_plan = visible_payload(plan, plan.tmp / f"hearth-{name}")
                async with h.session("tput") as chan:
                    settle = functools.partial(h.screen, chan.session_id)
                    runs[name].append(
                        await measure_throughput(chan, tput_plan, served.pids, settle)
                    )
                    chan.check_stream(f"hearth ({name})")
        log("  echo, on and off")
        echo_plan = dataclasses.replace(plan, echo_samples=100, warmup=10)
        for _ in range(plan.runs):
            for name, (_, h) in servers.items():
                async with h.session("echo") as chan:
                    echoes[name] += await measure_echo(chan, echo_plan)
        for _, h in servers.values():
            await h.http.aclose()
    return runs, echoes


def mbps(runs: list[ThroughputRun], payload: int) -> float:
    return payload / statistics.median(r.seconds for r in runs) / 1e6


def cpu(runs: list[ThroughputRun]) -> float:
    return statistics.median(r.server_cpu or 0.0 for r in runs)


async def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="10 MB, 3 rounds")
    p.add_argument("--runs", type=int, help="throughput rounds (default 7, quick 3)")
    args = p.parse_args(argv)
    payload = 10_000_000 if args.quick else 50_000_000
    with tempfile.TemporaryDirectory(prefix="hearth-bench-screen-") as folder:
        tmp = Path(folder)
        plan = Plan(
            payload=payload,
            producer=f"cat {make_payload(tmp, payload)}",
            runs=args.runs or (3 if args.quick else 7),
            echo_samples=0,
            warmup=0,
            reattach_lines=0,
            reattach_samples=0,
            create_samples=0,
            terminals=0,
            timeout=120,
            tmp=tmp,
        )
        payload_file = Path(plan.producer.partition(" ")[2])
        text = (await asyncio.to_thread(payload_file.read_bytes)).replace(b"\n", b"\r\n")
        log("model cost")
        lines_cost = await model_cost(text, "lines")
        tui_cost = await model_cost(tui_stream(payload), "full-screen program")
        log("snapshot")
        snap = await snapshot_times(coloured_lines(1050), 20)
        listing = await snapshot_times(listing_lines(1050), 20)
        http_ms = await http_snapshot(plan, 20)
        log("throughput, model on and off")
        try:
            runs, echoes = await throughput(plan)
        finally:
            stop_all_servers()
    on, off, floor = (mbps(runs[k], payload) for k in ("on", "off", "floor"))
    delta_ns = (cpu(runs["on"]) - cpu(runs["off"])) / payload * 1e9
    mb = payload / 1e6
    rows = [
        ("model CPU per byte, 100-byte lines (ns)", f"{lines_cost['node_ns']:.1f}", "≤ 100"),
        ("model CPU per byte, full-screen program (ns)", f"{tui_cost['node_ns']:.1f}", "≤ 100"),
        ("feeding it, the host's CPU per byte (ns)", f"{lines_cost['feed_ns']:.1f}", "—"),
        ("model speed alone, lines (MB/s)", f"{lines_cost['mbps']:.0f}", "—"),
        ("snapshot, 1000 × 200 `ls -l` lines, first (ms)", f"{listing['first_ms']:.1f}", "—"),
        ("snapshot, the same, median of 20 (ms)", f"{listing['median_ms']:.1f}", "≤ 30"),
        ("snapshot, 1000 × 200 lines of 20 colours, first (ms)", f"{snap['first_ms']:.1f}", "—"),
        ("snapshot, the same, median of 20 (ms)", f"{snap['median_ms']:.1f}", "≤ 30"),
        ("snapshot, no output since the last one (ms)", f"{snap['unchanged_ms']:.1f}", "—"),
        (
            "`GET …/screen` of the 20-colour lines, nothing new since, median (ms)",
            f"{http_ms:.1f}",
            "—",
        ),
        (
            f"throughput, {mb:g} MB, model on (MB/s)",
            f"{on:.1f} ({on / floor:.2f}× floor)",
            "≥ 0.8× floor",
        ),
        (f"throughput, {mb:g} MB, model off (MB/s)", f"{off:.1f} ({off / floor:.2f}× floor)", "—"),
        ("raw PTY floor (MB/s)", f"{floor:.1f}", "—"),
        ("servers' CPU, on − off, per byte (ns)", f"{delta_ns:.1f}", "≤ 100"),
        (
            "keystroke echo p50, model on / off (ms)",
            f"{percentile(echoes['on'], 50) * 1e3:.3f} / {percentile(echoes['off'], 50) * 1e3:.3f}",
            "—",
        ),
    ]
    print("| figure | value | target |")
    print("|---|---:|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    print(
        f"- {plan.runs} alternating rounds of floor, on, off; medians. The servers' CPU is the "
        "session host's, the web server's and the model's, read once the model has taken every "
        "byte (`GET …/screen` answers after it has). Snapshot data: "
        f"{listing['chars']:,} and {snap['chars']:,} characters."
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
