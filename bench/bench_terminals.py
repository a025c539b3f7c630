#!/usr/bin/env python3
"""Terminal benchmarks: Hearth beside its two baselines, measured in the same run.

    .venv/bin/python bench/bench_terminals.py            # the full run (a few minutes)
    .venv/bin/python bench/bench_terminals.py --quick    # a smaller run (well under a minute)
    .venv/bin/python bench/bench_terminals.py --only floor,terminado

Baselines: the floor (the same shell on a raw PTY read by a plain asyncio reader in this process)
and terminado (in its own venv, bench/.venv, created on first use from
bench/requirements-terminado.txt). Hearth is `.venv/bin/hearth serve` (or $HEARTH_BIN). Everything
runs on 127.0.0.1 with bounded loops and stops by itself; children are stopped on exit.

Prints a Markdown table for the README on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from terminal_common import (
    REPLAY_LINE,
    SHELL,
    Plan,
    Result,
    dump_json,
    log,
    median,
    stop_all_servers,
)

# "hearth" runs sandboxed (bubblewrap, as `sandbox = auto` does where bwrap is installed);
# "hearth-unsandboxed" is the same server with `sandbox = none`, for what the sandbox costs.
# "hearth-screen-off" is "hearth" with its screen model off (throughput only: what the model costs).
SYSTEMS = ("floor", "terminado", "hearth", "hearth-unsandboxed", "hearth-screen-off")
LINE = 100  # bytes per line of the throughput payload, newline included


def make_payload(tmp: Path, size: int) -> Path:
    """`size` bytes of printable lines (99 characters and a newline), for `cat` to produce."""
    line = (b"0123456789abcdefghijklmnopqrstuvwxyz" * 3)[: LINE - 1] + b"\n"
    path = tmp / "payload.txt"
    whole, rest = divmod(size, LINE)
    with open(path, "wb") as f:
        block = line * 10_000
        for _ in range(whole // 10_000):
            f.write(block)
        f.write(line * (whole % 10_000))
        f.write(line[: rest - 1] + b"\n" if rest else b"")
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smaller run: 10 MB, fewer samples")
    p.add_argument("--only", default=",".join(SYSTEMS), help="comma list of " + ",".join(SYSTEMS))
    p.add_argument("--mb", type=float, help="throughput payload in MB (default 50, quick 10)")
    p.add_argument("--producer", help="shell command producing the payload (default: cat FILE)")
    p.add_argument("--runs", type=int, help="throughput runs per system (median shown)")
    p.add_argument("--echo-samples", type=int, help="keystrokes timed per system")
    p.add_argument("--reattach-samples", type=int, help="reattaches timed per system")
    p.add_argument("--create-samples", type=int, help="creates timed per system")
    p.add_argument("--terminals", type=int, help="idle terminals for the memory figure (100)")
    p.add_argument("--timeout", type=float, default=120.0, help="per-step timeout, seconds")
    p.add_argument(
        "--deflate",
        action="store_true",
        help="offer permessage-deflate, as browsers do (default: no compression)",
    )
    p.add_argument("--terminado-nodelay", action="store_true", help="set TCP_NODELAY in terminado")
    p.add_argument(
        "--hearth-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for every Hearth server (e.g. HEARTH_MAX_BUFFER_BYTES=...)",
    )
    p.add_argument(
        "--hearth-tput-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the throughput Hearth server only",
    )
    p.add_argument(
        "--wide-lines",
        action="store_true",
        help="reattach: 80-column lines instead of `seq 1 1000`'s short ones",
    )
    p.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample the servers with py-spy during the throughput runs (collapsed stacks)",
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        metavar="S",
        help="before each timed step, wait up to S s for other load to stop (default 60)",
    )
    p.add_argument("--json", type=Path, help="also write the raw figures to this file")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temporary dir (server logs)")
    p.add_argument("--setup", action="store_true", help="only create bench/.venv, then exit")
    args = p.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    for system in args.only:
        if system not in SYSTEMS:
            p.error(f"--only: unknown system {system!r}; choose among {', '.join(SYSTEMS)}")
    return args


def make_plan(args: argparse.Namespace, tmp: Path) -> Plan:
    quick = args.quick

    def pick(value: object, full: object, small: object) -> object:
        return value if value is not None else (small if quick else full)

    payload = int(float(pick(args.mb, 50, 10)) * 1_000_000)  # type: ignore[arg-type]
    producer = args.producer or f"cat {make_payload(tmp, payload)}"

    def env_pairs(items: list[str]) -> dict[str, str]:
        return dict(item.split("=", 1) for item in items)

    return Plan(
        payload=payload,
        producer=producer,
        runs=int(pick(args.runs, 3, 1)),  # type: ignore[call-overload]
        echo_samples=int(pick(args.echo_samples, 500, 100)),  # type: ignore[call-overload]
        warmup=20,
        reattach_lines=1000,
        reattach_samples=int(pick(args.reattach_samples, 50, 10)),  # type: ignore[call-overload]
        create_samples=int(pick(args.create_samples, 20, 5)),  # type: ignore[call-overload]
        terminals=int(pick(args.terminals, 100, 30)),  # type: ignore[call-overload]
        timeout=args.timeout,
        tmp=tmp,
        deflate=args.deflate,
        hearth_env=env_pairs(args.hearth_env),
        hearth_tput_env=env_pairs(args.hearth_tput_env),
        terminado_nodelay=args.terminado_nodelay,
        profile=args.profile,
        quiet_wait=args.quiet_wait,
        replay_format=REPLAY_LINE if args.wide_lines else "%g",
    )


async def run_system(system: str, plan: Plan) -> Result:
    if system == "floor":
        import terminal_floor as module
    elif system == "terminado":
        import terminal_terminado as module  # type: ignore[no-redef]
    else:
        import terminal_hearth

        if system == "hearth-unsandboxed":
            return await terminal_hearth.run(plan, "none", full=False)
        if system == "hearth-screen-off":
            return await terminal_hearth.run(plan, "bubblewrap", full=False, screen_model=False)
        return await terminal_hearth.run(plan, "bubblewrap")
    return await module.run(plan)


# --------------------------------------------------------------------------------------------
# The table


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or value != value:
        return "—"
    return f"{value:,.{digits}f}"


def table(results: dict[str, Result], plan: Plan) -> str:
    h, f, t = (results.get(s, Result(s)).figures for s in ("hearth", "floor", "terminado"))

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    def x(r: float | None, of: str) -> str:
        return "—" if r is None else f"{r:.2f}× {of}"

    def met(ok: bool | None) -> str:
        return "—" if ok is None else ("yes" if ok else "**no**")

    def both(*values: float | None) -> bool:
        return all(v is not None for v in values)

    def g(d: dict[str, float], key: str) -> float | None:
        return d.get(key)

    mb = plan.payload / 1e6
    rows: list[tuple[str, str, str, str, str, str, str]] = []

    hm, fm, tm = g(h, "throughput_mbps"), g(f, "throughput_mbps"), g(t, "throughput_mbps")
    hr, tr = ratio(hm, fm), ratio(tm, fm)
    rows.append(
        (
            f"output throughput, {mb:g} MB to a websocket client (MB/s)",
            fmt(hm),
            fmt(fm),
            fmt(tm) + (f" ({tr:.2f}×)" if tr else ""),
            x(hr, "floor"),
            "≥ 0.9× floor",
            met(hr >= 0.9 if hr is not None else None),
        )
    )
    he, fe, te = g(h, "echo_p50_ms"), g(f, "echo_p50_ms"), g(t, "echo_p50_ms")
    er = ratio(he, fe)
    ok = (er <= 2.5 and (te is None or he < te)) if er is not None and he is not None else None
    rows.append(
        (
            "keystroke echo p50 (ms)",
            fmt(he, 3),
            fmt(fe, 3),
            fmt(te, 3),
            x(er, "floor"),
            "≤ 2.5× floor and < terminado",
            met(ok),
        )
    )
    he99, fe99, te99 = g(h, "echo_p99_ms"), g(f, "echo_p99_ms"), g(t, "echo_p99_ms")
    rows.append(
        (
            "keystroke echo p99 (ms)",
            fmt(he99, 3),
            fmt(fe99, 3),
            fmt(te99, 3),
            x(ratio(he99, fe99), "floor"),
            "—",
            "—",
        )
    )
    hra, tra = g(h, "reattach_ms"), g(t, "reattach_ms")
    rows.append(
        (
            f"reattach + replay of {plan.reattach_lines} lines (ms)",
            fmt(hra, 2),
            "—",
            fmt(tra, 2),
            x(ratio(hra, tra), "terminado"),
            "≤ 3 ms",
            met(hra <= 3 if hra is not None else None),
        )
    )
    hk, fk, tk = g(h, "memory_kib"), g(f, "memory_kib"), g(t, "memory_kib")
    rows.append(
        (
            "server memory per idle terminal, beyond buffered bytes (KiB)",
            fmt(hk),
            fmt(fk),
            fmt(tk),
            x(ratio(hk, tk), "terminado"),
            "≤ 29 KiB",
            met(hk <= 29 if hk is not None else None),
        )
    )
    hc, fc, tc = g(h, "create_ms"), g(f, "create_ms"), g(t, "create_ms")
    cr = ratio(hc, fc)
    rows.append(
        (
            "create → shell answers (ms)",
            fmt(hc, 2),
            fmt(fc, 2),
            fmt(tc, 2),
            x(cr, "floor"),
            "≤ 2× floor",
            met(cr <= 2 if cr is not None else None),
        )
    )
    head = ("figure", "hearth", "floor", "terminado", "ratio", "target", "met")
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * 4 + ["---"] * 2) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def sandbox_table(results: dict[str, Result]) -> str:
    """What the sandbox costs: Hearth sandboxed beside the same server unsandboxed, both against
    the floor (issue 8's targets)."""
    on, off, floor = (
        results.get(s, Result(s)).figures for s in ("hearth", "hearth-unsandboxed", "floor")
    )
    rows = []
    for key, label, digits, target, good in (
        ("throughput_mbps", "output throughput (MB/s)", 1, "sandboxed ≥ 0.8× floor", 0.8),
        ("create_ms", "create → shell answers (ms)", 2, "sandboxed ≤ 3× floor", 3.0),
        ("echo_p50_ms", "keystroke echo p50 (ms)", 3, "—", None),
    ):
        a, b, f = on.get(key), off.get(key), floor.get(key)
        of_floor = a / f if a is not None and f else None
        if of_floor is None or good is None:
            met = "—"
        elif key == "throughput_mbps":
            met = "yes" if of_floor >= good else "**no**"
        else:
            met = "yes" if of_floor <= good else "**no**"
        rows.append(
            f"| {label} | {fmt(a, digits)} | {fmt(b, digits)} | {fmt(f, digits)} | "
            + ("—" if a is None or not b else f"{a / b:.2f}×")
            + " | "
            + ("—" if of_floor is None else f"{of_floor:.2f}×")
            + f" | {target} | {met} |"
        )
    head = "| figure | sandboxed | unsandboxed | floor | on/off | on/floor | target | met |"
    return "\n".join([head, "|---|---:|---:|---:|---:|---:|---|---|", *rows])


def screen_table(results: dict[str, Result], plan: Plan) -> str:
    """What the screen model costs (issue 10's targets): the throughput run with it on and off.
    The server's CPU is counted until the model has taken every byte (see measure_throughput)."""
    on, off, floor = (
        results.get(s, Result(s)).figures for s in ("hearth", "hearth-screen-off", "floor")
    )
    a, b, f = on.get("throughput_mbps"), off.get("throughput_mbps"), floor.get("throughput_mbps")
    ca, cb = on.get("throughput_server_cpu_s"), off.get("throughput_server_cpu_s")
    per_byte = (ca - cb) / plan.payload * 1e9 if ca is not None and cb is not None else None
    of_floor = a / f if a is not None and f else None
    rows = [
        f"| output throughput (MB/s) | {fmt(a)} | {fmt(b)} | {fmt(f)} | "
        + ("—" if of_floor is None else f"{of_floor:.2f}× floor")
        + " | ≥ 0.8× floor | "
        + ("—" if of_floor is None else ("yes" if of_floor >= 0.8 else "**no**"))
        + " |",
        f"| server CPU, host + web + model (s) | {fmt(ca, 2)} | {fmt(cb, 2)} | — | "
        + ("—" if per_byte is None else f"{per_byte:.0f} ns per byte")
        + " | ≤ 100 ns per byte | "
        + ("—" if per_byte is None else ("yes" if per_byte <= 100 else "**no**"))
        + " |",
    ]
    head = "| figure | model on | model off | floor | cost | target | met |"
    return "\n".join([head, "|---|---:|---:|---:|---:|---|---|", *rows])


def describe(plan: Plan, results: dict[str, Result], elapsed: float) -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    busy = plan.busy_seen
    out = [
        f"Machine: {os.cpu_count()} cores ({cpu}), Linux {platform.release()}, "
        f"Python {platform.python_version()}; run took {elapsed:.0f} s.",
        f"Shell: `{' '.join(SHELL)}` on a 50×200 PTY for all three. "
        f"Throughput: `{plan.producer.split('/')[0]}…` of {plan.payload / 1e6:g} MB "
        f"({plan.payload // LINE:,} lines of {LINE} bytes), median of {plan.runs} run(s), "
        "timed from sending the command to reading a marker echoed after it.",
        f"Echo: p50/p99 over {plan.echo_samples} keystrokes at the bash prompt "
        f"(after {plan.warmup} warm-up). Reattach: median of {plan.reattach_samples} "
        f"reconnects to a terminal that printed `{plan.replay_command}` while detached "
        "(connect → replay complete). Create: median of "
        f"{plan.create_samples}. Memory: RSS of the server before/after {plan.terminals} "
        "idle terminals (no viewer), minus what they buffered, per terminal; for Hearth, the "
        "session host (where the sessions live) plus the web server.",
        "Other load on the machine before the timed steps: at most "
        f"{max(busy, default=0):.0%} of the CPUs (median {median(busy) if busy else 0:.0%}).",
        f"Websocket client: `websockets`, permessage-deflate "
        f"{'offered' if plan.deflate else 'not offered'}.",
    ]
    for result in results.values():
        out += result.notes
    return "\n".join(f"- {line}" for line in out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.setup:
        import terminal_terminado

        log(f"ready: {terminal_terminado.ensure_venv()}")
        return 0

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
    results: dict[str, Result] = {}
    failed = False
    with tmp_ctx() as tmp_name:
        tmp = Path(tmp_name)
        plan = make_plan(args, tmp)
        try:
            for system in args.only:
                log(f"== {system}")
                try:
                    results[system] = asyncio.run(run_system(system, plan))
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # one system failing still prints the others
                    failed = True
                    log(f"{system} failed: {exc!r}")
                    results[system] = Result(system, notes=[f"{system} FAILED: {exc}"])
                log(f"{system}: {json.dumps(results[system].figures)}")
        finally:
            stop_all_servers()
        if args.keep_tmp:
            log(f"logs kept in {tmp}")
    elapsed = time.monotonic() - started
    print(table(results, plan))
    print()
    if "hearth" in results and "hearth-unsandboxed" in results:
        print(sandbox_table(results))
        print()
    if "hearth" in results and "hearth-screen-off" in results:
        print(screen_table(results, plan))
        print()
    print(describe(plan, results, elapsed))
    if args.json:
        dump_json(args.json, list(results.values()), {"elapsed_s": elapsed, "argv": sys.argv[1:]})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
