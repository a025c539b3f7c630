"""What the three terminal benchmarks share: the shell, markers, statistics and child processes.

Every system under test (the raw PTY floor, terminado, Hearth) runs the same shell with the same
size and is driven with the same inputs; only the transport between the PTY and this process
differs. Figures are medians (or percentiles) of a bounded number of samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent

SHELL: list[str] = ["/bin/bash", "--norc", "--noprofile"]
ROWS, COLS = 50, 200
# One terminal environment for the three systems (Hearth adds TERM itself; the others get it here).
SHELL_ENV_EXTRA = {"TERM": "xterm-256color", "PS1": "$ ", "HISTFILE": "/dev/null"}


def shell_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEARTH_", "PYTHON"))}
    env.update(SHELL_ENV_EXTRA)
    return env


# --------------------------------------------------------------------------------------------
# Markers: typed as `echo X""Y` so that the echo of the command line never contains `XY`.


def marker_command(tag: str) -> tuple[bytes, bytes]:
    """A shell line that prints a marker, and the marker as it appears in the output."""
    head, tail = f"BENCH_{tag}_", f"{os.getpid()}_{time.monotonic_ns() % 1_000_000_007}"
    return f'echo {head}""{tail}\r'.encode(), f"{head}{tail}".encode()


class MarkerWatch:
    """Counts the bytes of an output stream and notices a marker, even across chunk boundaries."""

    def __init__(self, marker: bytes) -> None:
        self.marker = marker
        self.nbytes = 0
        self.chunks = 0
        self.found_at: int | None = None  # perf_counter_ns when seen
        self.done = asyncio.Event()
        self._tail = b""

    def feed(self, data: bytes) -> bool:
        self.nbytes += len(data)
        self.chunks += 1
        if self.found_at is not None:
            return True
        m = len(self.marker)
        if self.marker in data or (self._tail and self.marker in self._tail + data[: m - 1]):
            self.found_at = time.perf_counter_ns()
            self.done.set()
            return True
        if m > 1:
            self._tail = (self._tail + data[-(m - 1) :])[-(m - 1) :]
        return False


class Channel:
    """A shell's input and output as seen by the benchmark, whatever carries them.

    Subclasses implement `send` and call `feed` with each output chunk as it arrives.
    """

    def __init__(self) -> None:
        self._watch: MarkerWatch | None = None
        self.closed = asyncio.Event()

    async def send(self, data: bytes) -> None:
        raise NotImplementedError

    def feed(self, data: bytes) -> None:
        if self._watch is not None:
            self._watch.feed(data)

    def watch(self, marker: bytes) -> MarkerWatch:
        """Start looking for `marker` in the output from now on (install before sending)."""
        self._watch = MarkerWatch(marker)
        return self._watch

    async def wait(self, watch: MarkerWatch, timeout: float) -> MarkerWatch:
        closed = asyncio.ensure_future(self.closed.wait())
        found = asyncio.ensure_future(watch.done.wait())
        try:
            await asyncio.wait({closed, found}, timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            closed.cancel()
            found.cancel()
        if watch.found_at is None:
            why = "the connection closed" if self.closed.is_set() else f"{timeout:g} s passed"
            raise TimeoutError(f"marker {watch.marker!r} not seen: {why} ({watch.nbytes} bytes)")
        return watch

    async def run_until_marker(self, line: bytes, tag: str, timeout: float) -> MarkerWatch:
        """Send `line` followed by an echo of a marker; wait for the marker's output."""
        command, marker = marker_command(tag)
        watch = self.watch(marker)
        await self.send(line + command)
        return await self.wait(watch, timeout)

    async def ready(self, timeout: float = 10.0) -> None:
        """The shell answers: a marker echo came back."""
        await self.run_until_marker(b"", "READY", timeout)


@dataclass
class ThroughputRun:
    seconds: float
    nbytes: int  # bytes received (the payload, its CR of each LF, the prompt)
    client_cpu: float  # CPU seconds this process spent
    server_cpu: float | None  # CPU seconds the server's processes spent


async def quiet(plan: Plan) -> None:
    """Before a timed step: note (and with --quiet-wait, wait out) other load on the machine."""
    plan.busy_seen.append(await asyncio.to_thread(wait_quiet, plan.quiet_wait))


async def measure_throughput(
    chan: Channel,
    plan: Plan,
    server_pids: Sequence[int] = (),
    settle: Callable[[], Awaitable[object]] | None = None,
) -> ThroughputRun:
    """Seconds from sending `producer` to seeing the marker printed after its output.

    `server_pids`: the server's processes, whose CPU time is added up (Hearth's output crosses
    two: the session host and the web server, and goes to a third, its screen model).
    `settle`: awaited after the timing, before the CPU is read: work the server still owes for
    this output (the screen model may lag behind the stream) is counted too."""
    producer, payload, timeout = plan.producer, plan.payload, plan.timeout
    await chan.ready()
    await quiet(plan)
    command, marker = marker_command("TPUT")
    watch = chan.watch(marker)
    server0 = sum(map(cpu_seconds, server_pids)) if server_pids else None
    busy0, total0 = machine_busy()
    cpu0 = time.process_time()
    t0 = time.perf_counter_ns()
    await chan.send(producer.encode() + b"\r" + command)
    await chan.wait(watch, timeout)
    assert watch.found_at is not None
    client_cpu = time.process_time() - cpu0
    busy1, total1 = machine_busy()
    machine = (busy1 - busy0) / max(1, total1 - total0)
    if settle is not None:
        await settle()
    server_cpu = sum(map(cpu_seconds, server_pids)) - server0 if server0 is not None else None
    if watch.nbytes < payload:
        raise RuntimeError(f"only {watch.nbytes} of {payload} bytes arrived")
    seconds = (watch.found_at - t0) / 1e9
    log(
        f"  {payload / seconds / 1e6:6.1f} MB/s  {seconds:.3f} s  {watch.nbytes} bytes in "
        f"{watch.chunks} chunks ({watch.nbytes / max(1, watch.chunks) / 1024:.1f} KiB avg)  "
        f"cpu: machine {machine:.0%}, client {client_cpu:.2f} s"
        + (f", server {server_cpu:.2f} s" if server_cpu is not None else "")
    )
    return ThroughputRun(seconds, watch.nbytes, client_cpu, server_cpu)


def summarize_throughput(runs: list[ThroughputRun], payload: int) -> dict[str, float]:
    """The median run's figures (by time), plus the spread of all runs."""
    ordered = sorted(runs, key=lambda r: r.seconds)
    mid = ordered[len(ordered) // 2] if len(ordered) % 2 else ordered[len(ordered) // 2 - 1]
    out = {
        "throughput_s": median([r.seconds for r in runs]),
        "throughput_mbps": payload / median([r.seconds for r in runs]) / 1e6,
        "throughput_min_mbps": payload / ordered[-1].seconds / 1e6,
        "throughput_max_mbps": payload / ordered[0].seconds / 1e6,
        "throughput_client_cpu_s": mid.client_cpu,
    }
    if mid.server_cpu is not None:
        out["throughput_server_cpu_s"] = mid.server_cpu
    return out


async def measure_echo(chan: Channel, plan: Plan, batch: int = 100) -> list[float]:
    """Seconds from typing 'x' at the prompt to seeing it echoed, per sample.

    The typed line is killed (Ctrl-U) every `batch` keys so that it never wraps; a marker command
    then proves the prompt is back before the next key.
    """
    samples, warmup, timeout = plan.echo_samples, plan.warmup, plan.timeout
    await chan.ready()
    await quiet(plan)
    out: list[float] = []
    typed = 0
    for i in range(warmup + samples):
        if typed == batch:
            await chan.send(b"\x15")
            await chan.ready(timeout)
            typed = 0
        watch = chan.watch(b"x")
        t0 = time.perf_counter_ns()
        await chan.send(b"x")
        await chan.wait(watch, timeout)
        assert watch.found_at is not None
        typed += 1
        if i >= warmup:
            out.append((watch.found_at - t0) / 1e9)
    await chan.send(b"\x15")
    await chan.ready(timeout)
    return out


# --------------------------------------------------------------------------------------------
# Statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank on the sorted values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


@dataclass
class Result:
    """One system's figures: name → value, plus notes (free text, shown under the table)."""

    system: str
    figures: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {"system": self.system, "figures": self.figures, "notes": self.notes}


# --------------------------------------------------------------------------------------------
# Processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    """VmRSS of one process (its children are not counted), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def background_busy(window: float = 0.5) -> float:
    """How busy the machine is (0..1 of all CPUs) over `window` seconds, from /proc/stat."""
    busy0, total0 = machine_busy()
    time.sleep(window)
    busy1, total1 = machine_busy()
    return (busy1 - busy0) / max(1, total1 - total0)


QUIET = 0.10  # the machine counts as quiet below this busy fraction


def wait_quiet(max_wait: float) -> float:
    """Wait (at most `max_wait` s) until other processes leave the CPUs alone; returns the last
    busy fraction seen. The figures mean little on a machine busy with something else."""
    deadline = time.monotonic() + max_wait
    busy = background_busy()
    warned = False
    while busy > QUIET and time.monotonic() < deadline:
        if not warned:
            log(f"  machine {busy:.0%} busy with other work; waiting up to {max_wait:g} s")
            warned = True
        busy = background_busy(1.0)
    if busy > QUIET:
        log(f"  WARNING: measuring on a machine {busy:.0%} busy with other work")
    return busy


def pinned_venv(venv: Path, requirements: Path, imports: str) -> Path:
    """The python of ``venv``, made with ``requirements`` unless it can already import
    ``imports`` (a comma list of modules)."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", f"import {imports}"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    log(f"creating {venv} with {requirements.name} ...")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(requirements)], check=True)
    subprocess.run(check, check=True)
    return python


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (its children not counted)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settled_rss_kib(pid: int, *, timeout: float = 3.0, quiet: float = 0.3) -> int:
    """VmRSS once it has stopped moving for `quiet` seconds (bounded by `timeout`)."""
    deadline = time.monotonic() + timeout
    last, since = rss_kib(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = rss_kib(pid)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


class ServerProcess:
    """A server started as a child in its own process group; stopped (TERM, grace, KILL) on exit."""

    def __init__(
        self, argv: Sequence[str], *, env: dict[str, str], log_path: Path, cwd: Path | None = None
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _LIVE.append(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.argv[0]} exited with status {self.proc.returncode}; its log ends with:\n"
                + self.log_tail()
            )

    def stop(self, grace: float = 5.0) -> None:
        if self in _LIVE:
            _LIVE.remove(self)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(grace)
        # The shells live in sessions of their own: whatever the server left behind is reaped by
        # the kill_leftovers() sweep, which knows their pids only through /proc.
        self._log.close()


_LIVE: list[ServerProcess] = []


def stop_all_servers() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.stop(grace=2.0)


def descendants(pid: int) -> list[int]:
    """Every live process whose parent chain leads to `pid` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks after boot), to tell it from a later process of the same
    pid; None if it is gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def process_marks(pids: Iterable[int]) -> dict[int, int]:
    """The live processes among `pids`, each with its start time (see `kill_leftovers`)."""
    marks = {pid: start_time(pid) for pid in pids}
    return {pid: when for pid, when in marks.items() if when is not None}


def kill_leftovers(marks: dict[int, int]) -> None:
    """SIGKILL whichever of the processes noted by `process_marks` still runs (not a newcomer
    that took over one of their pids)."""
    for pid, when in marks.items():
        if start_time(pid) == when:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


class Companion(Protocol):
    """A process a server leaves running on purpose (Hearth's session host, which holds the
    sessions and outlives `hearth serve`): stopped after the server, and swept with it."""

    def pids(self) -> list[int]:
        """It and every process under it, now."""
        ...

    def stop(self) -> None:
        """End it and what it holds, as its users would."""
        ...


@contextlib.contextmanager
def companion_stopped(companion: Companion) -> Iterator[None]:
    """Stop `companion` when the block ends; kill whatever of it the stop left running."""
    try:
        yield
    finally:
        leftovers = process_marks(companion.pids())
        try:
            companion.stop()
        finally:
            kill_leftovers(leftovers)


@contextlib.contextmanager
def server_process(
    argv: Sequence[str],
    *,
    env: dict[str, str],
    log_path: Path,
    cwd: Path | None = None,
    companion: Companion | None = None,
) -> Iterator[ServerProcess]:
    server = ServerProcess(argv, env=env, log_path=log_path, cwd=cwd)
    try:
        yield server
    finally:
        # noted before the stop: once the server is gone, what it started is no longer under it
        leftovers = process_marks(descendants(server.pid))
        with companion_stopped(companion) if companion else contextlib.nullcontext():
            server.stop()
        kill_leftovers(leftovers)  # shells in sessions of their own, if nothing ended them


PROFILER_VENV = BENCH_DIR / ".venv-profile"
PROFILER_REQUIREMENTS = BENCH_DIR / "requirements-profile.txt"


def py_spy() -> Path:
    """py-spy, pinned, in bench/.venv-profile (made on first use)."""
    binary = PROFILER_VENV / "bin" / "py-spy"
    if not binary.exists():
        log(f"creating {PROFILER_VENV} with {PROFILER_REQUIREMENTS.name} ...")
        subprocess.run([sys.executable, "-m", "venv", str(PROFILER_VENV)], check=True)
        pip = [str(PROFILER_VENV / "bin" / "pip"), "install", "-q"]
        subprocess.run([*pip, "-r", str(PROFILER_REQUIREMENTS)], check=True)
    return binary


@contextlib.contextmanager
def sampled(pid: int, out: Path, *, subprocesses: bool = False) -> Iterator[None]:
    """Sample `pid` with py-spy into `out` (collapsed stacks; non-blocking, so the process runs
    at its own pace) while the body runs. With `subprocesses`, its children too, as they come."""
    argv = [str(py_spy()), "record", "--pid", str(pid), "--rate", "500", "--nonblocking", "--gil"]
    argv += ["--format", "raw", "--output", str(out)]
    if subprocesses:
        argv.append("--subprocesses")
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)  # attached
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log(f"  profile: {out}")


@contextlib.contextmanager
def profiled(pid: int, plan: Plan, name: str) -> Iterator[None]:
    """`sampled` into the plan's profile directory, if it has one."""
    if plan.profile is None:
        yield
        return
    with sampled(pid, plan.profile / f"{name}.txt"):
        yield


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def dump_json(path: Path, results: list[Result], meta: dict[str, object]) -> None:
    path.write_text(json.dumps({"meta": meta, "results": [r.to_json() for r in results]}, indent=2))


# --------------------------------------------------------------------------------------------
# What one run measures, and the websocket client both servers are driven with


REPLAY_LINE = "line %04.0f abcdefghijklmnopqrstuvwxyz 0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ -_=+"


@dataclass
class Plan:
    payload: int  # bytes the throughput producer writes
    producer: str  # the shell command that writes them
    runs: int  # throughput runs per system (the median is reported)
    echo_samples: int
    warmup: int
    reattach_lines: int
    reattach_samples: int
    create_samples: int
    terminals: int  # N idle terminals for the memory figure
    timeout: float
    tmp: Path
    deflate: bool = False  # offer permessage-deflate as browsers do
    hearth_env: dict[str, str] = field(default_factory=dict)  # every Hearth server
    hearth_tput_env: dict[str, str] = field(default_factory=dict)  # the throughput server
    terminado_nodelay: bool = False

    quiet_wait: float = 0.0  # before each timed step, wait this long at most for a quiet machine
    busy_seen: list[float] = field(default_factory=list)  # background load before each step
    profile: Path | None = None  # write py-spy profiles of the servers' throughput runs here
    replay_format: str = "%g"  # seq -f format of the reattach lines (REPLAY_LINE: 80 columns)

    @property
    def replay_command(self) -> str:
        return f"seq -f '{self.replay_format}' 1 {self.reattach_lines}"

    @property
    def replay_last_line(self) -> bytes:
        n, fmt = self.reattach_lines, self.replay_format
        return f"\r\n{fmt % (n - 1)}\r\n{fmt % n}\r\n".encode()


def ws_connect(url: str, plan: Plan, **kwargs: object) -> object:
    from websockets.asyncio.client import connect

    return connect(
        url,
        max_size=None,
        compression="deflate" if plan.deflate else None,
        ping_interval=None,
        proxy=None,
        open_timeout=plan.timeout,
        close_timeout=2,
        **kwargs,  # type: ignore[arg-type]
    )


def ms(values: Sequence[float], q: float = 50) -> float:
    return percentile(values, q) * 1000
