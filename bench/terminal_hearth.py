"""Hearth, driven as its users drive it: `hearth serve` in a child process, REST and websocket.

Sessions are created with `POST /api/v1/terminal/sessions` (command = the benchmark's shell) and
attached with `WS /api/v1/terminal/ws/{id}?reconnect=true`; output arrives as binary frames
(`0x01`, 8-byte big-endian offset, data), whose offsets are checked: a gap or an overlap is
reported, so a figure can't be bought by dropping bytes.

The sessions live in the data directory's session host (`hearth host`), which `hearth serve`
starts and which outlives it: after each server, `hearth shutdown` ends the host and its sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx

from terminal_common import (
    COLS,
    REPO_DIR,
    ROWS,
    SHELL,
    SHELL_ENV_EXTRA,
    Channel,
    Plan,
    Result,
    ServerProcess,
    descendants,
    free_port,
    log,
    marker_command,
    measure_echo,
    measure_throughput,
    ms,
    profiled,
    quiet,
    server_process,
    settled_rss_kib,
    shell_env,
    summarize_throughput,
    ws_connect,
)

TOKEN = "bench-token-1"
USER = "bench"
API = "/api/v1/terminal"

# Settings the benchmark gives every Hearth server: no kernel pool (this measures terminals) and
# room for the memory figure's terminals. Everything else is the default unless --hearth-env.
BASE_ENV = {
    "HEARTH_TOKENS": json.dumps({TOKEN: USER}),
    "HEARTH_SESSION_POOL_SIZE": "0",
    "HEARTH_MAX_TERMINALS": "1000",
    "HEARTH_MAX_TERMINALS_PER_USER": "1000",
}


def hearth_bin() -> Path:
    return Path(os.environ.get("HEARTH_BIN", REPO_DIR / ".venv" / "bin" / "hearth"))


class HearthChannel(Channel):
    """One websocket viewer: checks that offsets follow each other, feeds the data on."""

    def __init__(self, ws: Any, session_id: str) -> None:
        super().__init__()
        self.ws = ws
        self.session_id = session_id
        self.hello: dict[str, Any] | None = None
        self.got_hello = asyncio.Event()
        self.replay_done: dict[str, Any] | None = None
        self.replay_done_at: int | None = None
        self.got_replay_done = asyncio.Event()
        self.replayed = bytearray()
        self.expected: int | None = None
        self.gap_bytes = 0
        self.overlap_bytes = 0
        self.errors: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                if isinstance(message, bytes):
                    if message[0] != 1:
                        raise RuntimeError(f"unknown binary frame type {message[0]}")
                    offset = int.from_bytes(message[1:9], "big")
                    data = message[9:]
                    if self.expected is not None:
                        if offset > self.expected:
                            self.gap_bytes += offset - self.expected
                        elif offset < self.expected:
                            self.overlap_bytes += self.expected - offset
                    self.expected = offset + len(data)
                    if self.replay_done is None:
                        self.replayed += data
                    self.feed(data)
                    continue
                frame = json.loads(message)
                kind = frame.get("type")
                if kind == "hello":
                    self.hello = frame
                    self.expected = frame["replay_from"]
                    self.got_hello.set()
                elif kind == "replay_done":
                    self.replay_done_at = time.perf_counter_ns()
                    self.replay_done = frame
                    self.got_replay_done.set()
                elif kind == "error":
                    self.errors.append(frame)
        except Exception as exc:  # a dropped connection ends the stream
            self.errors.append({"exception": repr(exc)})
        finally:
            self.close_code = getattr(self.ws, "close_code", None)
            self.closed.set()

    async def send(self, data: bytes) -> None:
        await self.ws.send(data)

    async def aclose(self) -> None:
        await self.ws.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    def check_stream(self, who: str) -> None:
        if self.gap_bytes or self.overlap_bytes:
            raise RuntimeError(
                f"{who}: offsets skipped {self.gap_bytes} bytes and repeated "
                f"{self.overlap_bytes} bytes"
            )


def create_body(session_id: str) -> dict[str, Any]:
    """`POST /api/v1/terminal/sessions`: the benchmark's shell, as the other systems run it."""
    return {
        "id": session_id,
        "command": SHELL,
        "env": {k: v for k, v in SHELL_ENV_EXTRA.items() if k != "TERM"},
        "rows": ROWS,
        "cols": COLS,
    }


class Hearth:
    def __init__(self, port: int, plan: Plan) -> None:
        self.base = f"127.0.0.1:{port}"
        self.plan = plan
        self.http = httpx.AsyncClient(
            base_url=f"http://{self.base}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            trust_env=False,
            timeout=plan.timeout,
        )
        self._n = 0

    def new_id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}-{self._n}"

    async def create(self, session_id: str) -> dict[str, Any]:
        r = await self.http.post(f"{API}/sessions", json=create_body(session_id))
        if r.status_code != 201:
            raise RuntimeError(f"create {session_id}: HTTP {r.status_code} {r.text}")
        return r.json()  # type: ignore[no-any-return]

    async def delete(self, session_id: str) -> None:
        await self.http.delete(f"{API}/sessions/{session_id}")

    async def screen(self, session_id: str) -> None:
        """Its screen (SPEC §9): answered once the screen model has taken all output so far."""
        r = await self.http.get(f"{API}/sessions/{session_id}/screen")
        if r.status_code not in (200, 503):  # 503: the model is off
            raise RuntimeError(f"screen of {session_id}: HTTP {r.status_code} {r.text}")

    async def sessions(self) -> list[dict[str, Any]]:
        r = await self.http.get(f"{API}/sessions")
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    @contextlib.asynccontextmanager
    async def attach(self, session_id: str, **params: str) -> AsyncIterator[HearthChannel]:
        query = {"token": TOKEN, "reconnect": "true", "rows": str(ROWS), "cols": str(COLS)}
        query.update(params)
        url = f"ws://{self.base}{API}/ws/{session_id}?" + "&".join(
            f"{k}={v}" for k, v in query.items()
        )
        async with ws_connect(url, self.plan) as ws:  # type: ignore[attr-defined]
            chan = HearthChannel(ws, session_id)
            try:
                yield chan
            finally:
                await chan.aclose()

    @contextlib.asynccontextmanager
    async def session(self, prefix: str) -> AsyncIterator[HearthChannel]:
        """A new session with one viewer attached, replay done; closed afterwards."""
        session_id = self.new_id(prefix)
        await self.create(session_id)
        try:
            async with self.attach(session_id) as chan:
                await asyncio.wait_for(chan.got_replay_done.wait(), self.plan.timeout)
                yield chan
        finally:
            await self.delete(session_id)


def listening_pid(port: int, candidates: list[int]) -> int:
    """The process (among `candidates`) that holds the listening socket on 127.0.0.1:`port`."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
            inodes.add(f"socket:[{fields[9]}]")
    for pid in candidates:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return pid
    return candidates[0]


def host_pids(data_dir: Path) -> list[int]:
    """The session host of `data_dir` (`... -m hearth host --data-dir D`), found in /proc: it
    may have been started by a server that is gone."""
    want = [b"-m", b"hearth", b"host", b"--data-dir", str(data_dir.resolve()).encode()]
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")[:-1]
                if len(argv) > len(want) and argv[-len(want) :] == want:
                    found.append(int(entry.name))
    return found


class SessionHost:
    """The session host of a data directory: it keeps the sessions when `hearth serve` stops,
    so the benchmark ends it (and them) with `hearth shutdown`, as a user would."""

    def __init__(
        self, binary: Path, data_dir: Path, env: dict[str, str], log_path: Path | None
    ) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.env = env
        self.log_path = log_path

    def pid(self) -> int:
        found = host_pids(self.data_dir)
        if len(found) != 1:
            raise RuntimeError(f"{len(found)} session hosts run for {self.data_dir}, not 1")
        return found[0]

    def pids(self) -> list[int]:
        return [p for host in host_pids(self.data_dir) for p in (host, *descendants(host))]

    def stop(self) -> None:
        argv = [str(self.binary), "shutdown", "--data-dir", str(self.data_dir)]
        where = f"; see {self.log_path}" if self.log_path else ""
        with open(self.log_path or os.devnull, "ab") as out:
            try:
                done = subprocess.run(
                    argv, env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=90
                )
            except subprocess.TimeoutExpired:
                log(f"  WARNING: `hearth shutdown` took over 90 s{where}")
                return
        if done.returncode != 0:
            log(f"  WARNING: `hearth shutdown` exited with status {done.returncode}{where}")


def screen_model_pid(host_pid: int) -> int | None:
    """The session host's screen model (Node.js running screen-model.mjs, under the sandbox's
    helpers: bwrap, setpriv, env, whose command lines name the script too), if on."""
    for pid in descendants(host_pid):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if argv[0].endswith(b"node") and any(a.endswith(b"screen-model.mjs") for a in argv):
                return pid
    return None


@dataclasses.dataclass
class Served:
    port: int
    pid: int  # the web server: the process listening on the port
    host_pid: int  # the session host: where the sessions live
    model_pid: int | None  # the host's screen model (SPEC §9), unless it is off

    @property
    def pids(self) -> tuple[int, ...]:
        """All: a terminal's output crosses the host, then the web server; the host also feeds
        it to the screen model."""
        model = () if self.model_pid is None else (self.model_pid,)
        return self.host_pid, self.pid, *model


@contextlib.contextmanager
def hearth_server(plan: Plan, name: str, extra_env: dict[str, str]) -> Iterator[Served]:
    """Start `hearth serve` on a free port (it starts the session host); at the end, stop it
    and then the host with `hearth shutdown`."""
    binary = hearth_bin()
    if not binary.exists():
        raise RuntimeError(f"{binary} not found: `.venv/bin/pip install -e .` first")
    port = free_port()
    data_dir = plan.tmp / f"hearth-{name}"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = shell_env()
    env.update(BASE_ENV)
    env.update(extra_env)
    env.update(plan.hearth_env)
    argv = [str(binary), "serve", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--data-dir", str(data_dir)]
    log_path = plan.tmp / f"hearth-{name}.log"
    host = SessionHost(binary, data_dir, env, log_path)
    with server_process(argv, env=env, log_path=log_path, companion=host) as server:
        wait_healthy(server, port)
        pid = listening_pid(port, [server.pid, *descendants(server.pid)])
        host_pid = host.pid()
        yield Served(port, pid, host_pid, screen_model_pid(host_pid))


def wait_healthy(server: ServerProcess, port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(trust_env=False, timeout=2) as client:
        while True:
            server.check_alive()
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"hearth was not healthy within {timeout:g} s:\n" + server.log_tail()
                )
            time.sleep(0.05)


async def run(
    plan: Plan, sandbox: str = "bubblewrap", *, full: bool = True, screen_model: bool = True
) -> Result:
    """Hearth's figures with `sandbox` in force; `full=False` skips reattach and memory (which
    the sandbox does not touch: it changes how a shell starts and where its output comes from).
    `screen_model=False`: throughput only, with the screen model off (what it costs)."""
    name = "hearth" if sandbox == "bubblewrap" else "hearth-unsandboxed"
    if not screen_model:
        name = "hearth-screen-off"
    result = Result(name)
    sandbox_env = {"HEARTH_SANDBOX": sandbox}
    if not screen_model:
        sandbox_env["HEARTH_SCREEN_MODEL"] = "false"
    shown = (
        {k: v for k, v in BASE_ENV.items() if k != "HEARTH_TOKENS"} | sandbox_env | plan.hearth_env
    )
    result.notes.append(
        f"{name} settings: " + ", ".join(f"{k}={v}" for k, v in shown.items()) + " (else defaults)"
    )

    # Throughput: a viewer that falls more than max_buffer_bytes behind would be told it missed
    # bytes instead of getting them; the run checks the offsets, so a lossy run fails loudly.
    with hearth_server(plan, f"{name}-tput", sandbox_env | plan.hearth_tput_env) as served:
        h = Hearth(served.port, plan)
        log(f"{name}: throughput")
        tput_plan = visible_payload(plan, plan.tmp / f"hearth-{name}-tput")
        runs = []
        # the output crosses both processes: the host reads the PTY, the web server sends
        with (
            profiled(served.host_pid, plan, f"{name}-throughput-host"),
            profiled(served.pid, plan, f"{name}-throughput-web"),
        ):
            for _ in range(plan.runs):
                async with h.session("tput") as chan:
                    settle = functools.partial(h.screen, chan.session_id)
                    runs.append(await measure_throughput(chan, tput_plan, served.pids, settle))
                    chan.check_stream("hearth throughput")
        result.figures.update(summarize_throughput(runs, plan.payload))
        await h.http.aclose()
    if not screen_model:
        return result

    with hearth_server(plan, f"{name}-main", sandbox_env) as served:
        h = Hearth(served.port, plan)
        log(f"{name}: echo")
        async with h.session("echo") as chan:
            with (
                profiled(served.host_pid, plan, f"{name}-echo-host"),
                profiled(served.pid, plan, f"{name}-echo-web"),
            ):
                echo = await measure_echo(chan, plan)
            chan.check_stream("hearth echo")
        result.figures["echo_p50_ms"] = ms(echo, 50)
        result.figures["echo_p99_ms"] = ms(echo, 99)

        if full:
            log(f"{name}: reattach")
            await quiet(plan)
            times, nbytes = await reattach(h, plan)
            result.figures["reattach_ms"] = ms(times)
            result.figures["reattach_bytes"] = nbytes

        log(f"{name}: create")
        await quiet(plan)
        result.figures["create_ms"] = ms(await create_to_answer(h, plan))
        await h.http.aclose()
    if not full:
        return result

    with hearth_server(plan, f"{name}-memory", sandbox_env) as served:
        h = Hearth(served.port, plan)
        log(f"{name}: memory")
        await quiet(plan)
        memory = await memory_per_terminal(h, plan, served)
        result.figures.update(memory)
        result.notes.append(
            f"{name} memory: RSS of the session host (`hearth host`, where the sessions live), "
            "the web server (`hearth serve`) and the screen model (Node.js): "
            f"{memory['memory_host_kib']:.1f} + {memory['memory_web_kib']:.1f} + "
            f"{memory['memory_model_kib']:.1f} KiB per terminal"
        )
        await h.http.aclose()
    return result


def visible_payload(plan: Plan, data_dir: Path) -> Plan:
    """The plan with its payload file where a sandboxed shell sees it: the user's home (the
    sandbox's /tmp is its own, so the benchmark's temporary file is out of its sight)."""
    command, _, path = plan.producer.partition(" ")
    if command != "cat" or not path.startswith(str(plan.tmp)):
        return plan
    home = data_dir / "homes" / USER
    home.mkdir(parents=True, exist_ok=True)
    copy = home / "payload.txt"
    if not copy.exists():
        try:
            os.link(path, copy)
        except OSError:  # the home is in the disk image (session_disk_limit): another fs
            shutil.copyfile(path, copy)
    return dataclasses.replace(plan, producer=f"cat {copy}")


async def reattach(h: Hearth, plan: Plan) -> tuple[list[float], int]:
    """Produce the lines, disconnect; then time connect(reconnect=true) → `replay_done`."""
    session_id = h.new_id("reattach")
    await h.create(session_id)
    async with h.attach(session_id) as chan:
        await asyncio.wait_for(chan.got_replay_done.wait(), plan.timeout)
        await chan.ready()
        await chan.run_until_marker(plan.replay_command.encode() + b"\r", "LINES", plan.timeout)
    await asyncio.sleep(0.2)
    times, nbytes = [], 0
    for _ in range(plan.reattach_samples):
        t0 = time.perf_counter_ns()
        async with h.attach(session_id) as chan:
            await asyncio.wait_for(chan.got_replay_done.wait(), plan.timeout)
            assert chan.replay_done_at is not None and chan.hello is not None
            times.append((chan.replay_done_at - t0) / 1e9)
            chan.check_stream("hearth reattach")
            if len(chan.replayed) != chan.hello["replay_bytes"]:
                raise RuntimeError(
                    f"hearth replayed {len(chan.replayed)} bytes, hello announced "
                    f"{chan.hello['replay_bytes']}"
                )
            if plan.replay_last_line not in chan.replayed:
                raise RuntimeError("hearth's replay misses the last line")
            nbytes = len(chan.replayed)
    await h.delete(session_id)
    return times, nbytes


async def create_to_answer(h: Hearth, plan: Plan) -> list[float]:
    """Seconds from the create request to the echo's answer (create, attach, type, read)."""
    out = []
    for _ in range(plan.create_samples):
        session_id = h.new_id("create")
        command, marker = marker_command("HI")
        t0 = time.perf_counter_ns()
        await h.create(session_id)
        async with h.attach(session_id) as chan:
            watch = chan.watch(marker)
            await chan.send(command)
            await chan.wait(watch, plan.timeout)
            assert watch.found_at is not None
            out.append((watch.found_at - t0) / 1e9)
        await h.delete(session_id)
        await asyncio.sleep(0.2)  # the teardown must not land in the next sample
    return out


async def memory_per_terminal(h: Hearth, plan: Plan, served: Served) -> dict[str, float]:
    """KiB of server RSS per idle terminal (no viewer), beyond its buffered bytes: the session
    host's, the web server's and the screen model's, and their sum (`memory_kib`)."""

    def buffered(sessions: list[dict[str, Any]]) -> int:
        return sum(s["output_end"] - s["output_start"] for s in sessions)

    def rss() -> tuple[int, int, int]:
        model = settled_rss_kib(served.model_pid) if served.model_pid is not None else 0
        return settled_rss_kib(served.host_pid), settled_rss_kib(served.pid), model

    warm = [h.new_id("memwarm") for _ in range(5)]
    for session_id in warm:
        await h.create(session_id)
        async with h.attach(session_id) as chan:
            await asyncio.wait_for(chan.got_replay_done.wait(), plan.timeout)
            await chan.ready()
    await asyncio.sleep(0.5)
    host0, web0, model0 = await asyncio.to_thread(rss)
    buffered_before = buffered(await h.sessions())
    ids = [h.new_id("mem") for _ in range(plan.terminals)]
    for session_id in ids:
        await h.create(session_id)
    await asyncio.sleep(1.0)  # every shell prints its prompt
    host1, web1, model1 = await asyncio.to_thread(rss)
    sessions = await h.sessions()
    nbytes = buffered(sessions) - buffered_before
    alive = sum(1 for s in sessions if s["alive"])
    if alive < plan.terminals + len(warm):
        raise RuntimeError(f"hearth holds {alive} live terminals, not {plan.terminals + len(warm)}")
    # The buffered bytes are the host's; the sessions are left to `hearth shutdown`.
    host = (host1 - host0 - nbytes / 1024) / plan.terminals
    web = (web1 - web0) / plan.terminals
    model = (model1 - model0) / plan.terminals
    return {
        "memory_kib": host + web + model,
        "memory_host_kib": host,
        "memory_web_kib": web,
        "memory_model_kib": model,
        "memory_buffered_bytes": nbytes,
    }
