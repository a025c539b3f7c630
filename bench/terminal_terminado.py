"""The baseline: terminado 0.18 (as in Jupyter Server), in its own venv, driven over its websocket.

Its protocol: JSON text frames, `["stdin", text]` and `["set_size", rows, cols]` in,
`["setup", {}]`, `["stdout", text]` and `["disconnect", 1]` out. A `NamedTermManager` keeps a
terminal after its websocket closes and replays its buffer (up to 1000 read chunks) to the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx

from terminal_common import (
    BENCH_DIR,
    COLS,
    ROWS,
    SHELL,
    Channel,
    Plan,
    Result,
    log,
    marker_command,
    measure_echo,
    measure_throughput,
    ms,
    pinned_venv,
    profiled,
    quiet,
    server_process,
    settled_rss_kib,
    shell_env,
    summarize_throughput,
    ws_connect,
)

VENV = BENCH_DIR / ".venv"
REQUIREMENTS = BENCH_DIR / "requirements-terminado.txt"
SERVER_SCRIPT = BENCH_DIR / "terminal_terminado_server.py"


def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv() -> Path:
    """Create bench/.venv with terminado pinned, unless it is there already."""
    return pinned_venv(VENV, REQUIREMENTS, "terminado, tornado, websockets, httpx")


class TerminadoChannel(Channel):
    def __init__(self, ws: object) -> None:
        super().__init__()
        self.ws = ws
        self.setup = asyncio.Event()
        self.first_stdout: str | None = None
        self.first_stdout_at: int | None = None
        self.got_first_stdout = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.ws:  # type: ignore[attr-defined]
                kind, *rest = json.loads(message)
                if kind == "stdout":
                    if self.first_stdout is None:
                        self.first_stdout_at = time.perf_counter_ns()
                        self.first_stdout = rest[0]
                        self.got_first_stdout.set()
                    self.feed(rest[0].encode())
                elif kind == "setup":
                    self.setup.set()
                elif kind == "disconnect":
                    break
        except Exception:  # a dropped connection ends the stream
            pass
        finally:
            self.closed.set()

    async def send(self, data: bytes) -> None:
        await self.ws.send(json.dumps(["stdin", data.decode()]))  # type: ignore[attr-defined]

    async def set_size(self, rows: int, cols: int) -> None:
        await self.ws.send(json.dumps(["set_size", rows, cols]))  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        await self.ws.close()  # type: ignore[attr-defined]
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class Terminado:
    def __init__(self, port: int, plan: Plan) -> None:
        self.base = f"127.0.0.1:{port}"
        self.plan = plan
        self.http = httpx.AsyncClient(base_url=f"http://{self.base}", trust_env=False)
        self._n = 0

    def name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}-{self._n}"

    @contextlib.asynccontextmanager
    async def connect(self, name: str, *, size: bool = True) -> AsyncIterator[TerminadoChannel]:
        async with ws_connect(f"ws://{self.base}/websocket/{name}", self.plan) as ws:  # type: ignore[attr-defined]
            chan = TerminadoChannel(ws)
            if size:
                await chan.set_size(ROWS, COLS)
            try:
                yield chan
            finally:
                await chan.aclose()

    async def kill(self, name: str, wait: bool = True) -> None:
        """SIGHUP the terminal; with `wait`, until terminado has let it go (its PTY close blocks
        the event loop for 0.1 s, which must not land in the next measurement)."""
        await self.http.delete(f"/bench/terminals/{name}")
        deadline = time.monotonic() + 10
        while wait and name in (await self.stats())["names"] and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        if wait:
            await asyncio.sleep(0.2)

    async def stats(self) -> dict[str, Any]:
        return (await self.http.get("/bench/stats")).json()  # type: ignore[no-any-return]


@contextlib.contextmanager
def terminado_server(
    plan: Plan, shell: list[str] | None = None, nodelay: bool | None = None
) -> Iterator[tuple[int, int]]:
    """Start the terminado server running ``shell`` (the bench's shell unless given); yields
    (port, pid)."""
    python = ensure_venv()
    argv = [str(python), str(SERVER_SCRIPT)]
    if plan.terminado_nodelay if nodelay is None else nodelay:
        argv.append("--nodelay")
    argv += ["--", *(shell or SHELL)]
    log_path = plan.tmp / "terminado.log"
    with server_process(argv, env=shell_env(), log_path=log_path) as server:
        deadline = time.monotonic() + 30
        while True:
            server.check_alive()
            for line in log_path.read_text(errors="replace").splitlines():
                if line.startswith("LISTENING "):
                    yield int(line.split()[1]), server.pid
                    return
            if time.monotonic() > deadline:
                raise RuntimeError("terminado did not start within 30 s:\n" + server.log_tail())
            time.sleep(0.02)


async def run(plan: Plan) -> Result:
    result = Result("terminado")
    with terminado_server(plan) as (port, pid):
        t = Terminado(port, plan)
        stats = await t.stats()
        result.notes.append(
            f"terminado {stats['version']} (NamedTermManager, tornado websocket"
            f"{', TCP_NODELAY set' if plan.terminado_nodelay else ', stock: no TCP_NODELAY'})"
        )

        log("terminado: throughput")
        runs = []
        with profiled(pid, plan, "terminado-throughput"):
            for _ in range(plan.runs):
                name = t.name("tput")
                async with t.connect(name) as chan:
                    runs.append(await measure_throughput(chan, plan, (pid,)))
                await t.kill(name)
        result.figures.update(summarize_throughput(runs, plan.payload))

        log("terminado: echo")
        name = t.name("echo")
        async with t.connect(name) as chan:
            echo = await measure_echo(chan, plan)
        await t.kill(name)
        result.figures["echo_p50_ms"] = ms(echo, 50)
        result.figures["echo_p99_ms"] = ms(echo, 99)

        log("terminado: reattach")
        await quiet(plan)
        times, nbytes = await reattach(t, plan)
        result.figures["reattach_ms"] = ms(times)
        result.figures["reattach_bytes"] = nbytes

        log("terminado: create")
        await quiet(plan)
        result.figures["create_ms"] = ms(await create_to_answer(t, plan))

        log("terminado: memory")
        await quiet(plan)
        per, buffered = await memory_per_terminal(t, plan, pid)
        result.figures["memory_kib"] = per
        result.figures["memory_buffered_bytes"] = buffered
        await t.http.aclose()
    return result


async def reattach(t: Terminado, plan: Plan) -> tuple[list[float], int]:
    """Produce the lines, disconnect; then time connect → the replayed buffer has arrived."""
    name = t.name("reattach")
    async with t.connect(name) as chan:
        await chan.ready()
        await chan.run_until_marker(plan.replay_command.encode() + b"\r", "LINES", plan.timeout)
    await asyncio.sleep(0.2)
    times, nbytes = [], 0
    for _ in range(plan.reattach_samples):
        t0 = time.perf_counter_ns()
        async with t.connect(name, size=False) as chan:
            await asyncio.wait_for(chan.got_first_stdout.wait(), plan.timeout)
            assert chan.first_stdout is not None and chan.first_stdout_at is not None
            times.append((chan.first_stdout_at - t0) / 1e9)
            replay = chan.first_stdout.encode()
            if plan.replay_last_line not in replay:
                raise RuntimeError("terminado's replay misses the last line")
            nbytes = len(replay)
    await t.kill(name)
    return times, nbytes


async def create_to_answer(t: Terminado, plan: Plan) -> list[float]:
    """Seconds from opening the websocket (which creates the terminal) to the echo's answer."""
    out = []
    for _ in range(plan.create_samples):
        name = t.name("create")
        command, marker = marker_command("HI")
        t0 = time.perf_counter_ns()
        async with t.connect(name) as chan:
            watch = chan.watch(marker)
            await chan.send(command)
            await chan.wait(watch, plan.timeout)
            assert watch.found_at is not None
            out.append((watch.found_at - t0) / 1e9)
        await t.kill(name)
    return out


async def memory_per_terminal(t: Terminado, plan: Plan, pid: int) -> tuple[float, int]:
    """KiB of server RSS per idle terminal (no websocket attached), beyond its buffered bytes."""
    warm = [t.name("memwarm") for _ in range(5)]
    for name in warm:
        async with t.connect(name) as chan:
            await chan.ready()
    await asyncio.sleep(0.5)
    before = await asyncio.to_thread(settled_rss_kib, pid)
    buffered_before = (await t.stats())["buffered_bytes"]
    names = [t.name("mem") for _ in range(plan.terminals)]
    for name in names:
        async with t.connect(name, size=False) as chan:
            await asyncio.wait_for(chan.setup.wait(), plan.timeout)
    await asyncio.sleep(1.0)  # every shell prints its prompt
    after = await asyncio.to_thread(settled_rss_kib, pid)
    stats = await t.stats()
    buffered = stats["buffered_bytes"] - buffered_before
    if stats["terminals"] < plan.terminals:
        raise RuntimeError(f"terminado holds {stats['terminals']} terminals, not {plan.terminals}")
    # The terminals are left to the server's shutdown (terminado kills them all in parallel).
    return (after - before - buffered / 1024) / plan.terminals, buffered
