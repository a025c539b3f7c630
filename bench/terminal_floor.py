"""The floor: the same shell on a raw PTY, read in this process by a plain asyncio reader.

No server, no framing, no socket: `loop.add_reader(master)` and `os.read(master, 65536)`. Whatever
a terminal server adds on top of this is its overhead.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable

from terminal_common import (
    COLS,
    ROWS,
    SHELL,
    Channel,
    Plan,
    Result,
    ThroughputRun,
    log,
    marker_command,
    measure_echo,
    measure_throughput,
    ms,
    quiet,
    shell_env,
    summarize_throughput,
)

READ_SIZE = 65536


def _become_terminal_owner() -> None:  # in the child, after setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class RawPty(Channel):
    """A shell on a PTY; output chunks are fed straight from the event loop's reader callback."""

    def __init__(self, argv: list[str] | None = None) -> None:
        super().__init__()
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        self.proc = subprocess.Popen(
            argv or SHELL,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=shell_env(),
            start_new_session=True,
            preexec_fn=_become_terminal_owner,
            close_fds=True,
        )
        os.close(slave)
        os.set_blocking(master, False)
        self.fd = master
        self.on_data: Callable[[bytes], None] = self.feed
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:  # EIO: the slave side is gone
            if exc.errno != errno.EIO:
                raise
            data = b""
        if not data:
            self._loop.remove_reader(self.fd)
            self.closed.set()
            return
        self.on_data(data)

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:
                await asyncio.sleep(0.0005)
                continue
            view = view[n:]

    async def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGHUP)
        try:
            await asyncio.wait_for(asyncio.to_thread(self.proc.wait), 2.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await asyncio.to_thread(self.proc.wait)
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self.fd)
        with contextlib.suppress(OSError):
            os.close(self.fd)


async def throughput(plan: Plan) -> list[ThroughputRun]:
    out = []
    for _ in range(plan.runs):
        pty = RawPty()
        try:
            out.append(await measure_throughput(pty, plan))
        finally:
            await pty.close()
        await asyncio.sleep(0.2)  # as the servers' runs do between creates: each starts idle
    return out


async def echo_latency(plan: Plan) -> list[float]:
    pty = RawPty()
    try:
        return await measure_echo(pty, plan)
    finally:
        await pty.close()


async def create_to_answer(samples: int, timeout: float) -> list[float]:
    """Seconds from spawning the shell on a new PTY to reading the answer of an `echo`."""
    out = []
    for _ in range(samples):
        command, marker = marker_command("HI")
        t0 = time.perf_counter_ns()
        pty = RawPty()
        try:
            watch = pty.watch(marker)
            await pty.send(command)
            await pty.wait(watch, timeout)
            assert watch.found_at is not None
            out.append((watch.found_at - t0) / 1e9)
        finally:
            await pty.close()
        await asyncio.sleep(0.2)  # as the servers' runs do between creates: each starts idle
    return out


async def memory_per_terminal(n: int) -> tuple[float, int]:
    """KiB of RSS a plain asyncio process adds per idle PTY shell it holds (measured in a child)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "memory",
        str(n),
        stdout=asyncio.subprocess.PIPE,
        cwd=os.path.dirname(__file__),
    )
    stdout, _ = await asyncio.wait_for(proc.communicate(), 120)
    per, buffered = stdout.decode().split()
    return float(per), int(buffered)


async def _memory_child(n: int) -> None:
    from terminal_common import settled_rss_kib

    held: list[bytearray] = []
    ptys = []

    def keep(buf: bytearray) -> Callable[[bytes], None]:
        return buf.extend

    warm = RawPty()
    await warm.ready()
    before = settled_rss_kib(os.getpid(), quiet=0.3)
    for _ in range(n):
        pty = RawPty()
        buf = bytearray()
        held.append(buf)
        pty.on_data = keep(buf)
        ptys.append(pty)
    await asyncio.sleep(1.0)  # let every shell print its prompt
    after = settled_rss_kib(os.getpid(), quiet=0.3)
    buffered = sum(len(b) for b in held)
    print((after - before - buffered / 1024) / n, buffered)
    for pty in [*ptys, warm]:
        await pty.close()


async def run(plan: Plan) -> Result:
    result = Result("floor")
    log("floor: throughput")
    tput = await throughput(plan)
    result.figures.update(summarize_throughput(tput, plan.payload))
    log("floor: echo")
    echo = await echo_latency(plan)
    result.figures["echo_p50_ms"] = ms(echo, 50)
    result.figures["echo_p99_ms"] = ms(echo, 99)
    log("floor: create")
    await quiet(plan)
    result.figures["create_ms"] = ms(await create_to_answer(plan.create_samples, plan.timeout))
    log("floor: memory")
    await quiet(plan)
    per, buffered = await memory_per_terminal(plan.terminals)
    result.figures["memory_kib"] = per
    result.figures["memory_buffered_bytes"] = buffered
    return result


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "memory":
    asyncio.run(_memory_child(int(sys.argv[2])))
