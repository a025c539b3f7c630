#!/usr/bin/env python3
"""Restart: how soon a new `hearth serve` serves again the terminals its session host kept.

    .venv/bin/python bench/bench_restart.py                              # 100 terminals, 5 restarts
    .venv/bin/python bench/bench_restart.py --terminals 10 --repeats 2   # a smoke run

The sessions live in the data directory's session host (`hearth host`), which `hearth serve`
finds running or starts, and which outlives it. A server creates N idle terminals (the terminal
benchmark's bash) through the API and is stopped with SIGTERM: the host keeps them. Then,
`--repeats` times: start `hearth serve` (Popen) and time until all N are served again —
`/healthz` answers 200, `GET /api/v1/terminal/sessions` lists the N, and a websocket attach to
each (`?reconnect=true&since=<output_end>`, the N at once) has had its `hello` — then SIGTERM.
Target: ≤ 1 s.

For comparison, measured first, on the same host before it holds any session: `hearth serve` to
`/healthz` 200 with the host already running, and the import floor (`python -c "import
hearth.server.app"`). The first server of the run, which starts the host, is timed too.
Sandboxed with bubblewrap (what `sandbox = auto` picks where bwrap is installed), no kernel pool.
At the end `hearth shutdown` ends the host and every session in it.

Prints a Markdown table on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from terminal_common import (
    Result,
    ServerProcess,
    companion_stopped,
    dump_json,
    free_port,
    log,
    median,
    shell_env,
    stop_all_servers,
    wait_quiet,
)
from terminal_hearth import API, BASE_ENV, TOKEN, SessionHost, create_body, hearth_bin, host_pids

TARGET_S = 1.0


@dataclass
class Bench:
    """One run's fixed parts: where the host lives and how each server is started."""

    binary: Path
    data_dir: Path
    logs: Path
    port: int
    env: dict[str, str]
    timeout: float
    quiet_wait: float
    busy_seen: list[float] = field(default_factory=list)
    _started: int = 0

    @property
    def base(self) -> str:
        return f"127.0.0.1:{self.port}"

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=f"http://{self.base}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            trust_env=False,
            timeout=self.timeout,
        )

    @contextlib.contextmanager
    def serve(self) -> Iterator[tuple[ServerProcess, float]]:
        """`hearth serve`, and the perf_counter just before its Popen; SIGTERM at the end (to its
        process group: the host has a session of its own and keeps running)."""
        self._started += 1
        argv = [str(self.binary), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        argv += ["--data-dir", str(self.data_dir)]
        log_path = self.logs / f"serve-{self._started}.log"
        t0 = time.perf_counter()
        server = ServerProcess(argv, env=self.env, log_path=log_path)
        try:
            yield server, t0
        finally:
            stopping = time.perf_counter()
            server.stop(grace=10.0)
            log(f"  (serve stopped in {time.perf_counter() - stopping:.2f} s after SIGTERM)")

    async def quiet(self) -> None:
        self.busy_seen.append(await asyncio.to_thread(wait_quiet, self.quiet_wait))


@dataclass
class Restart:
    """Seconds from the Popen of `hearth serve` to each step of serving the N terminals again."""

    healthy: float
    listed: float
    attached: float  # the last hello: all N served again


async def wait_healthy(b: Bench, http: httpx.AsyncClient, server: ServerProcess) -> float:
    """perf_counter when /healthz first answered 200 (polled every 5 ms)."""
    deadline = time.monotonic() + b.timeout
    while True:
        server.check_alive()
        with contextlib.suppress(httpx.HTTPError):
            if (await http.get("/healthz")).status_code == 200:
                return time.perf_counter()
        if time.monotonic() > deadline:
            raise RuntimeError(f"hearth was not healthy in {b.timeout:g} s:\n{server.log_tail()}")
        await asyncio.sleep(0.005)


async def sessions(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await http.get(f"{API}/sessions")
    r.raise_for_status()
    return r.json()  # type: ignore[no-any-return]


async def open_hello(b: Bench, session: dict[str, Any]) -> tuple[float, Any]:
    """A viewer that resumes where the session's output ends: (perf_counter at its hello, the
    open websocket)."""
    from websockets.asyncio.client import connect

    query = f"reconnect=true&since={session['output_end']}&token={TOKEN}"
    url = f"ws://{b.base}{API}/ws/{session['id']}?{query}"
    options: dict[str, Any] = {"compression": None, "ping_interval": None, "proxy": None}
    ws = await connect(url, max_size=None, open_timeout=b.timeout, close_timeout=2, **options)
    try:
        while True:
            message = await asyncio.wait_for(ws.recv(), b.timeout)
            frame = json.loads(message) if isinstance(message, str) else {}
            if frame.get("type") == "hello":
                hello_at = time.perf_counter()
                if frame["session"]["id"] != session["id"] or not frame["session"]["alive"]:
                    raise RuntimeError(f"hello for {session['id']}: {frame['session']}")
                return hello_at, ws
            if frame.get("type") == "error":
                raise RuntimeError(f"attach {session['id']}: {frame}")
    except BaseException:
        await ws.close()
        raise


async def attach_all(b: Bench, listed: list[dict[str, Any]]) -> float:
    """Attach to every session at once; perf_counter at the last hello. The websockets are
    closed after the last hello, so closes don't compete with the attaches still under way."""
    results = await asyncio.gather(*(open_hello(b, s) for s in listed), return_exceptions=True)
    opened = [r for r in results if isinstance(r, tuple)]
    await asyncio.gather(*(ws.close() for _, ws in opened), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return max(at for at, _ in opened)


async def restart_once(b: Bench, ids: set[str]) -> Restart:
    async with b.http() as http:
        await b.quiet()
        with b.serve() as (server, t0):
            healthy = await wait_healthy(b, http, server)
            listed = [s for s in await sessions(http) if s["alive"]]
            listed_at = time.perf_counter()
            if {s["id"] for s in listed} != ids:
                raise RuntimeError(
                    f"the new server lists {len(listed)} live terminals, not {len(ids)}"
                )
            run = Restart(healthy - t0, listed_at - t0, await attach_all(b, listed) - t0)
            steps = f"/healthz {run.healthy:.3f} s, listed {run.listed:.3f} s"
            log(f"  {steps}, all attached {run.attached:.3f} s")
    return run


async def start_to_healthy(b: Bench) -> float:
    """Seconds from the Popen of `hearth serve` to /healthz 200."""
    async with b.http() as http:
        await b.quiet()
        with b.serve() as (server, t0):
            seconds = await wait_healthy(b, http, server) - t0
            log(f"  /healthz {seconds:.3f} s")
    return seconds


async def create_terminals(b: Bench, n: int) -> set[str]:
    """N idle terminals, created through a server's API, each having printed its prompt; the
    server is then stopped with SIGTERM (the host keeps them)."""
    ids = [f"idle-{i}" for i in range(n)]
    async with b.http() as http:
        with b.serve() as (server, _):
            await wait_healthy(b, http, server)
            for session_id in ids:
                r = await http.post(f"{API}/sessions", json=create_body(session_id))
                if r.status_code != 201:
                    raise RuntimeError(f"create {session_id}: HTTP {r.status_code} {r.text}")
            deadline = time.monotonic() + b.timeout
            while sum(1 for s in await sessions(http) if s["output_end"] > 0) < n:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the {n} shells did not all print a prompt")
                await asyncio.sleep(0.1)
    return set(ids)


def hearth_python(binary: Path) -> str:
    """The interpreter that runs `binary` (its #! line), for the import floor."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        first = binary.read_bytes()[:256].split(b"\n", 1)[0].decode()
        if first.startswith("#!") and Path(first[2:].strip()).exists():
            return first[2:].strip()
    return sys.executable


def time_import(python: str) -> float:
    """Seconds for a fresh interpreter to import the web server (what any start pays first)."""
    t0 = time.perf_counter()
    argv = [python, "-c", "import hearth.server.app"]
    subprocess.run(argv, check=True, env=shell_env(), stdin=subprocess.DEVNULL)
    return time.perf_counter() - t0


async def import_floor(b: Bench, repeats: int) -> list[float]:
    python = hearth_python(b.binary)
    out = []
    for _ in range(repeats):
        await b.quiet()
        out.append(await asyncio.to_thread(time_import, python))
    log(f"  {' '.join(f'{x:.3f}' for x in out)} s")
    return out


async def measure(b: Bench, n: int, repeats: int) -> dict[str, list[float]]:
    log("== import floor")
    floor = await import_floor(b, repeats)
    log("== serve, no host running: it starts one")
    cold = [await start_to_healthy(b)]
    host = host_pids(b.data_dir)
    if len(host) != 1:
        raise RuntimeError(f"{len(host)} session hosts run for the data directory after serve")
    log(f"== serve, host running (pid {host[0]}), no sessions: {repeats} starts")
    bare = [await start_to_healthy(b) for _ in range(repeats)]
    log(f"== {n} idle terminals")
    ids = await create_terminals(b, n)
    log(f"== restart with {n} terminals in the host: {repeats} starts")
    runs = []
    for _ in range(repeats):
        runs.append(await restart_once(b, ids))
        if host_pids(b.data_dir) != host:
            raise RuntimeError(f"the session host changed: {host} → {host_pids(b.data_dir)}")
    return {
        "restart_s": [r.attached for r in runs],
        "restart_healthy_s": [r.healthy for r in runs],
        "restart_listed_s": [r.listed for r in runs],
        "bare_healthy_s": bare,
        "cold_healthy_s": cold,
        "import_s": floor,
    }


# --------------------------------------------------------------------------------------------
# The table


def table(figures: dict[str, list[float]], n: int) -> str:
    def row(label: str, key: str, target: str = "—") -> str:
        values = figures.get(key, [])
        if not values:
            return f"| {label} | — | — | {target} | — |"
        mid, top = median(values), max(values)
        met = "—"
        if target != "—":
            met = "yes" if top <= TARGET_S else ("median only" if mid <= TARGET_S else "**no**")
        return f"| {label} | {mid:.3f} | {top:.3f} | {target} | {met} |"

    rows = [
        row(f"restart → all {n} terminals served again", "restart_s", f"≤ {TARGET_S:g} s"),
        row("  of which: `/healthz` 200", "restart_healthy_s"),
        row(f"  of which: the {n} listed", "restart_listed_s"),
        row("serve → `/healthz` 200, host running, no sessions", "bare_healthy_s"),
        row("serve → `/healthz` 200, no host: starts one (once)", "cold_healthy_s"),
        row('`python -c "import hearth.server.app"`', "import_s"),
    ]
    head = ["| figure (seconds from Popen) | median | max | target | met |"]
    return "\n".join([*head, "|---|---:|---:|---|---|", *rows])


def describe(args: argparse.Namespace, b: Bench, elapsed: float) -> str:
    busy = b.busy_seen
    lines = [
        f"Machine: {os.cpu_count()} cores, Linux {platform.release()}, Python "
        f"{platform.python_version()}; run took {elapsed:.0f} s.",
        f"{args.terminals} idle terminals (`bash --norc --noprofile`, 50×200) in the session host; "
        f"{args.repeats} restart(s), each: Popen of `hearth serve` → `/healthz` 200 (polled every "
        "5 ms) → `GET /api/v1/terminal/sessions` lists them → a websocket attach to each "
        "(`reconnect=true&since=<output_end>`, all at once) has had its `hello`; then SIGTERM.",
        f"Settings: HEARTH_SANDBOX={args.sandbox}, HEARTH_SESSION_POOL_SIZE=0, "
        "HEARTH_MAX_TERMINALS(_PER_USER)=1000; everything else at its default.",
        f"Other load on the machine before the timed steps: at most {max(busy, default=0):.0%} "
        f"of the CPUs (median {median(busy) if busy else 0:.0%}).",
        f"Rerun: `.venv/bin/python bench/bench_restart.py --terminals {args.terminals} "
        f"--repeats {args.repeats}"
        + (f" --sandbox {args.sandbox}" if args.sandbox != "bubblewrap" else "")
        + "`.",
    ]
    return "\n".join(f"- {line}" for line in lines)


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--terminals", type=int, default=100, help="idle terminals in the host (100)")
    p.add_argument("--repeats", type=int, default=5, help="timed starts of each kind (5)")
    p.add_argument("--sandbox", default="bubblewrap", help="HEARTH_SANDBOX (bubblewrap)")
    p.add_argument("--timeout", type=float, default=60.0, help="per-step timeout, seconds")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        metavar="S",
        help="before each timed start, wait up to S s for other load to stop (default 60)",
    )
    p.add_argument("--json", type=Path, help="also write the raw figures to this file")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temporary dir (logs)")
    return p.parse_args(argv)


def run(args: argparse.Namespace, tmp: Path) -> tuple[Bench, dict[str, list[float]]]:
    binary = hearth_bin()
    if not binary.exists():
        raise RuntimeError(f"{binary} not found: `.venv/bin/pip install -e .` first")
    env = shell_env() | BASE_ENV | {"HEARTH_SANDBOX": args.sandbox}
    b = Bench(binary, tmp / "data", tmp, free_port(), env, args.timeout, args.quiet_wait)
    b.data_dir.mkdir()
    host = SessionHost(binary, b.data_dir, env, tmp / "shutdown.log")
    with companion_stopped(host):  # `hearth shutdown` at the end, whatever happened
        try:
            figures = asyncio.run(measure(b, args.terminals, args.repeats))
        finally:
            stop_all_servers()  # before the host's shutdown
    return b, figures


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    started = time.monotonic()
    tmp_ctx: Callable[[], contextlib.AbstractContextManager[str]]
    tmp_ctx = (
        (lambda: contextlib.nullcontext(tempfile.mkdtemp(prefix="hearth-bench-")))
        if args.keep_tmp
        else (lambda: tempfile.TemporaryDirectory(prefix="hearth-bench-"))
    )
    with tmp_ctx() as name:
        b, figures = run(args, Path(name))
        if args.keep_tmp:
            log(f"logs kept in {name} (the host's: data/host.log)")
    elapsed = time.monotonic() - started
    print(table(figures, args.terminals))
    print()
    print(describe(args, b, elapsed))
    if args.json:
        result = Result("hearth-restart", {k: median(v) for k, v in figures.items()})
        dump_json(args.json, [result], {"runs": figures, "argv": sys.argv[1:]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
