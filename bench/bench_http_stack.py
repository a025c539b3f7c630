"""The web server's HTTP stack, measured before choosing it: uvicorn's HTTP parser (httptools or
h11) and the web server's event loop (uvloop or asyncio's own), on the HTTP execute path.

    .venv/bin/python bench/bench_http_stack.py [--executes 300] [--rounds 3]

Each variant is a sandboxed ``hearth serve`` (``bench/serve_variant.py``; its session host runs
on uvloop in every variant), driven by one httpx client: ``1+1`` executed over HTTP, and a bare
``GET /api/v1/sessions/{id}``, alternately. The variants take turns, ``--rounds`` times, and each
figure is the median over all its samples.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_kernels import AUTH, hearth_server

VARIANT = Path(__file__).resolve().parent / "serve_variant.py"
VARIANTS = [
    ("httptools", "uvloop"),
    ("h11", "uvloop"),
    ("httptools", "asyncio"),
    ("h11", "asyncio"),
]


def measure(url: str, n: int) -> tuple[list[float], list[float]]:
    executes, gets = [], []
    with httpx.Client(base_url=url, timeout=60) as http:
        http.post("/api/v1/sessions", json={"session_id": "s"}, headers=AUTH).raise_for_status()
        for i in range(n + 20):
            started = time.perf_counter()
            r = http.post("/api/v1/sessions/s/execute", json={"code": "1+1"}, headers=AUTH)
            took = time.perf_counter() - started
            assert r.json()["status"] == "ok", r.text
            started = time.perf_counter()
            http.get("/api/v1/sessions/s", headers=AUTH).raise_for_status()
            got = time.perf_counter() - started
            if i >= 20:  # warm-up
                executes.append(took * 1000)
                gets.append(got * 1000)
    return executes, gets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executes", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    found: dict[tuple[str, str], tuple[list[float], list[float]]] = {v: ([], []) for v in VARIANTS}
    for _ in range(args.rounds):
        for http, loop in VARIANTS:
            command = [sys.executable, str(VARIANT), "--http", http, "--loop", loop, "--"]
            with hearth_server(1, command=command) as url:
                executes, gets = measure(url, args.executes // args.rounds)
            found[(http, loop)][0].extend(executes)
            found[(http, loop)][1].extend(gets)
    print(f"\n{'web server':24} {'execute 1+1':>12} {'GET session':>12}   (medians, ms)")
    for (http, loop), (executes, gets) in found.items():
        name = f"{http} + {loop}"
        print(f"  {name:22} {statistics.median(executes):12.2f} {statistics.median(gets):12.2f}")


if __name__ == "__main__":
    main()
