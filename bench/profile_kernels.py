"""Where the time of a kernel session's execute goes: timings split by process, and py-spy
profiles of each process on each path (issue 12).

    .venv/bin/python bench/profile_kernels.py [--rounds 30] [--seconds 8] [--out DIR]

1. The first execute on a pooled kernel, against the next ones. Each round takes a session from
   the warm pool and runs ``1+1`` four times: at once, at once again, again, and after 0.3 s
   idle. Each figure is split into what the session host measured from sending the request to
   the kernel's idle (``duration_ms``) and the rest (HTTP, the web server, the host hop).
2. An HTTP execute of ``1+1`` beside a bare HTTP request (``GET /api/v1/sessions/{id}``), with
   the same httpx client: what HTTP itself costs here; and the CPU each process (web server,
   session host, kernel, this client) spends per request.
3. Profiles (py-spy, collapsed stacks in ``--out``) of the web server, the session host and the
   kernels during a loop of HTTP executes, and during a loop of create → first execute →
   delete; summarised with ``bench/profile_summary.py``.

Hearth runs sandboxed, as ``bench_kernels.py`` runs it. py-spy comes from
``bench/requirements-profile.txt`` (into ``bench/.venv-profile`` on first use); it needs
ptrace rights over the server's processes (run as their user, or as root).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_kernels import AUTH, hearth_server, wait_pool_ready
from profile_summary import summary
from terminal_common import cpu_seconds, descendants, log, sampled
from terminal_hearth import listening_pid

POOL = 2


def med(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f}"


def execute(http: httpx.Client, session: str) -> tuple[float, float]:
    """(ms at the client, ms the host measured) of one ``1+1``."""
    started = time.perf_counter()
    r = http.post(f"/api/v1/sessions/{session}/execute", json={"code": "1+1"}, headers=AUTH)
    took = (time.perf_counter() - started) * 1000
    body = r.json()
    assert body["status"] == "ok", body
    return took, float(body["duration_ms"])


def first_executes(http: httpx.Client, rounds: int) -> None:
    names = ["1st (from the pool)", "2nd, at once", "3rd, at once", "4th, after 0.3 s idle"]
    client: list[list[float]] = [[] for _ in names]
    host: list[list[float]] = [[] for _ in names]
    creates = []
    for i in range(rounds):
        wait_pool_ready(http, POOL)
        time.sleep(0.3)  # as a pooled kernel is: idle for a while
        started = time.perf_counter()
        r = http.post("/api/v1/sessions", json={"session_id": f"first-{i}"}, headers=AUTH)
        creates.append((time.perf_counter() - started) * 1000)
        assert r.json()["from_pool"], r.text
        for n in range(len(names)):
            if n == 3:
                time.sleep(0.3)
            took, measured = execute(http, f"first-{i}")
            client[n].append(took)
            host[n].append(measured)
        http.delete(f"/api/v1/sessions/first-{i}", headers=AUTH)
    print(f"\n1. A session from the warm pool, {rounds} rounds (medians, ms)")
    print(f"  create (POST /api/v1/sessions)       {med(creates)}")
    print(f"  {'execute 1+1':36} {'client':>7} {'host':>7} {'rest':>7}")
    for name, c, h in zip(names, client, host, strict=True):
        rest = [a - b for a, b in zip(c, h, strict=True)]
        print(f"  {name:36} {med(c)} {med(h)} {med(rest)}")


def http_cost(http: httpx.Client, rounds: int, web: int, host: int) -> None:
    http.post("/api/v1/sessions", json={"session_id": "loop"}, headers=AUTH)
    wait_pool_ready(http, POOL)  # a kernel starting for the pool would look the busiest
    kernel = busiest(kernel_pids(host), http, "loop")
    executes, gets, measured = [], [], []
    pids = {"web server": web, "session host": host, "kernel": kernel}
    cpu: dict[str, list[float]] = {"execute": [], "get": []}
    for path in cpu:
        before = [cpu_seconds(pid) for pid in pids.values()] + [time.process_time()]
        for _ in range(rounds):
            started = time.perf_counter()
            if path == "execute":
                took, measure = execute(http, "loop")
                executes.append(took)
                measured.append(measure)
            else:
                http.get("/api/v1/sessions/loop", headers=AUTH).raise_for_status()
                gets.append((time.perf_counter() - started) * 1000)
        after = [cpu_seconds(pid) for pid in pids.values()] + [time.process_time()]
        cpu[path] = [(b - a) / rounds * 1000 for a, b in zip(before, after, strict=True)]
    print(f"\n2. HTTP, {rounds} rounds on one session (medians, ms)")
    print(f"  execute 1+1 at the client            {med(executes)}")
    print(f"  of which the host's measure          {med(measured)}")
    print(f"  GET /api/v1/sessions/loop            {med(gets)}")
    names = [*pids, "client (httpx)"]
    print("  CPU per request (mean, ms): " + ", ".join(names))
    for path, spent in cpu.items():
        print(
            f"    {path:8} " + "  ".join(f"{ms:5.2f}" for ms in spent) + f"   sum {sum(spent):.2f}"
        )


def kernel_pids(host: int) -> list[int]:
    found = []
    for pid in descendants(host):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"ipykernel" in argv and not argv.startswith((b"bwrap", b"/usr/bin/bwrap")):
            found.append(pid)
    return found


def busiest(kernels: list[int], http: httpx.Client, session: str) -> int:
    """The kernel of ``session``: the one that works while it executes."""
    before = {k: cpu_seconds(k) for k in kernels}
    for _ in range(30):
        execute(http, session)
    return max(kernels, key=lambda k: cpu_seconds(k) - before[k])


def profile(
    out: Path, name: str, pids: dict[str, int], seconds: float, load: Callable[[], Any]
) -> None:
    files = [out / f"{name}-{process}.txt" for process in pids]
    with contextlib.ExitStack() as stack:
        for (process, pid), path in zip(pids.items(), files, strict=True):
            stack.enter_context(sampled(pid, path, subprocesses=process == "host+kernels"))
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            load()
    print(f"\n3. {name}: py-spy over {seconds:g} s\n")
    print("\n\n".join(summary(path, 10) for path in files))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--out", type=Path, default=None, help="where the profiles go")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="hearth-profiles-"))
    with hearth_server(POOL) as url, httpx.Client(base_url=url, timeout=60) as http:
        host = int(os.environ["BENCH_HOST_PID"])
        port = urlsplit(url).port
        assert port is not None
        web = listening_pid(port, _serve_pids())
        wait_pool_ready(http, POOL)
        for _ in range(5):  # warm the paths
            http.get("/api/v1/pool", headers=AUTH)
        first_executes(http, args.rounds)
        http_cost(http, args.rounds * 10, web, host)

        http.post("/api/v1/sessions", json={"session_id": "prof"}, headers=AUTH)
        wait_pool_ready(http, POOL)
        targets = {"web": web, "host": host, "kernel": busiest(kernel_pids(host), http, "prof")}
        profile(out, "http-execute", targets, args.seconds, lambda: execute(http, "prof"))
        http.delete("/api/v1/sessions/prof", headers=AUTH)

        counter = iter(range(1_000_000))

        def first() -> None:
            session = f"p-{next(counter)}"
            wait_pool_ready(http, 1)
            http.post("/api/v1/sessions", json={"session_id": session}, headers=AUTH)
            execute(http, session)
            http.delete(f"/api/v1/sessions/{session}", headers=AUTH)

        pids = {"web": web, "host+kernels": host}
        profile(out, "first-execute", pids, args.seconds, first)
    log(f"profiles in {out}")


def _serve_pids() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"serve" in argv and any(a.endswith(b"hearth") for a in argv):
                found.append(int(entry.name))
    return found


if __name__ == "__main__":
    main()
