"""Terminals on another machine (SPEC §11): Hearth's SSH terminal against OpenSSH's own client in a
local PTY, over the same loopback sshd, in one run.

    .venv/bin/python bench/bench_ssh.py [--quick]        # as root (it runs its own sshd); ~1 min

Both run the same remote shell at the same size: `env PS1='$ ' … bash --norc --noprofile`.
OpenSSH: `ssh -tt` (key login, its defaults, host key pinned) on a PTY this process reads, which
is what a terminal server built on `ssh` would do. Hearth: `hearth serve` (its session host holds
the SSH connection, asyncssh), a saved connection with the same key, a terminal with
`connection_id`, read over its websocket. Figures: keystroke echo p50/p99, throughput of `cat`
of a file on the remote side, create → the shell answers.

A third contender is what people use in a browser today: the same `ssh -tt` as the shell of a web
terminal, terminado (Jupyter Server's terminals; TCP_NODELAY set, its best case) read over its
websocket. Raw `ssh` on a PTY has no websocket in its path at all, so it bounds what any web
terminal can reach; terminado running `ssh` is the web path Hearth replaces.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.ssh.sshd import Sshd, start_sshd

from terminal_common import (
    Plan,
    log,
    marker_command,
    measure_echo,
    measure_throughput,
    median,
    ms,
    summarize_throughput,
)
from terminal_floor import RawPty
from terminal_hearth import Hearth, hearth_server
from terminal_terminado import Terminado, terminado_server

REMOTE_SHELL = [
    "env",
    "PS1=$ ",
    "HISTFILE=/dev/null",
    "TERM=xterm-256color",
    "/bin/bash",
    "--norc",
    "--noprofile",
]


def ssh_argv(sshd: Sshd, key: Path, known_hosts: Path) -> list[str]:
    return [
        "ssh",
        "-tt",
        "-F",
        "/dev/null",
        "-i",
        str(key),
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-p",
        str(sshd.port),
        f"{sshd.key_user}@{sshd.host}",
        " ".join(f"'{a}'" for a in REMOTE_SHELL),
    ]


async def openssh(plan: Plan, argv: list[str]) -> dict[str, float]:
    runs = []
    for _ in range(plan.runs):
        pty = RawPty(argv)
        try:
            runs.append(await measure_throughput(pty, plan))
        finally:
            await pty.close()
    pty = RawPty(argv)
    try:
        echo = await measure_echo(pty, plan)
    finally:
        await pty.close()
    creates = []
    for _ in range(plan.create_samples):
        command, marker = marker_command("HI")
        t0 = time.perf_counter_ns()
        pty = RawPty(argv)
        try:
            watch = pty.watch(marker)
            await pty.send(command)
            await pty.wait(watch, plan.timeout)
            assert watch.found_at is not None
            creates.append((watch.found_at - t0) / 1e9)
        finally:
            await pty.close()
    return {
        **summarize_throughput(runs, plan.payload),
        "echo_p50_ms": ms(echo),
        "echo_p99_ms": ms(echo, 99),
        "create_ms": median(creates) * 1000,
    }


async def terminado_ssh(plan: Plan, port: int) -> dict[str, float]:
    t = Terminado(port, plan)
    runs = []
    for _ in range(plan.runs):
        name = t.name("tput")
        async with t.connect(name) as chan:
            runs.append(await measure_throughput(chan, plan))
        await t.kill(name)
    name = t.name("echo")
    async with t.connect(name) as chan:
        echo = await measure_echo(chan, plan)
    await t.kill(name)
    await t.http.aclose()
    return {
        **summarize_throughput(runs, plan.payload),
        "echo_p50_ms": ms(echo),
        "echo_p99_ms": ms(echo, 99),
    }


async def hearth(plan: Plan, sshd: Sshd, port: int) -> dict[str, float]:
    h = Hearth(port, plan)
    body = {
        "id": "box",
        "host": sshd.host,
        "port": sshd.port,
        "username": sshd.key_user,
        "auth": {"private_key": sshd.private_key},
        "host_key": sshd.host_key,
    }
    r = await h.http.post("/api/v1/connections", json=body)
    if r.status_code != 201:
        raise RuntimeError(f"connection: HTTP {r.status_code} {r.text}")

    async def create(session_id: str) -> None:
        made = await h.http.post(
            "/api/v1/terminal/sessions",
            json={"id": session_id, "connection_id": "box", "command": REMOTE_SHELL},
        )
        if made.status_code != 201:
            raise RuntimeError(f"create: HTTP {made.status_code} {made.text}")

    async def one(prefix: str):  # type: ignore[no-untyped-def]
        session_id = h.new_id(prefix)
        await create(session_id)
        return session_id

    runs = []
    for _ in range(plan.runs):
        sid = await one("tput")
        async with h.attach(sid) as chan:
            runs.append(await measure_throughput(chan, plan))
        await h.delete(sid)
    sid = await one("echo")
    async with h.attach(sid) as chan:
        echo = await measure_echo(chan, plan)
    await h.delete(sid)
    creates = []
    for _ in range(plan.create_samples):
        sid = h.new_id("create")
        command, marker = marker_command("HI")
        t0 = time.perf_counter_ns()
        await create(sid)
        async with h.attach(sid) as chan:
            watch = chan.watch(marker)
            await chan.send(command)
            await chan.wait(watch, plan.timeout)
            assert watch.found_at is not None
            creates.append((watch.found_at - t0) / 1e9)
        await h.delete(sid)
    await h.http.aclose()
    return {
        **summarize_throughput(runs, plan.payload),
        "echo_p50_ms": ms(echo),
        "echo_p99_ms": ms(echo, 99),
        "create_ms": median(creates) * 1000,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="10 MB, fewer samples")
    p.add_argument("--json", type=Path, help="also write the raw figures to this file")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench_ssh.py runs its own sshd and test users: run it as root", file=sys.stderr)
        return 2
    mb = 10 if args.quick else 50
    with tempfile.TemporaryDirectory(prefix="hearth-bench-ssh-") as tmp_name:
        tmp = Path(tmp_name)
        os.chmod(tmp, 0o755)  # the remote user reads the payload
        payload = tmp / "payload.txt"
        line = (b"0123456789abcdefghijklmnopqrstuvwxyz" * 3)[:99] + b"\n"
        payload.write_bytes(line * (mb * 10_000))
        os.chmod(payload, 0o644)
        plan = Plan(
            payload=payload.stat().st_size,
            producer=f"cat {payload}",
            runs=3,
            echo_samples=200 if args.quick else 500,
            warmup=20,
            reattach_lines=0,
            reattach_samples=0,
            create_samples=5 if args.quick else 10,
            terminals=0,
            timeout=120.0,
            tmp=tmp,
        )
        sshd = start_sshd()
        try:
            key = tmp / "id"
            key.write_text(sshd.private_key)
            key.chmod(0o600)
            known = tmp / "known_hosts"
            known.write_text(f"[{sshd.host}]:{sshd.port} {sshd.host_key}\n")
            log("== OpenSSH")
            theirs = asyncio.run(openssh(plan, ssh_argv(sshd, key, known)))
            log(f"OpenSSH: {json.dumps(theirs)}")
            log("== terminado running ssh -tt")
            with terminado_server(plan, ssh_argv(sshd, key, known), nodelay=True) as (port, _):
                web = asyncio.run(terminado_ssh(plan, port))
            log(f"terminado + ssh: {json.dumps(web)}")
            log("== hearth")
            with hearth_server(plan, "ssh", {}) as served:
                ours = asyncio.run(hearth(plan, sshd, served.port))
            log(f"hearth: {json.dumps(ours)}")
        finally:
            sshd.close()
    rows = [
        ("keystroke echo p50 (ms)", "echo_p50_ms", "≤ 1.0× terminado + ssh"),
        ("keystroke echo p99 (ms)", "echo_p99_ms", ""),
        (f"throughput, {mb} MB `cat` (MB/s)", "throughput_mbps", "≥ 0.8× OpenSSH"),
        ("create → the shell answers (ms)", "create_ms", "≤ 1.5× OpenSSH"),
    ]
    print(
        "| figure | Hearth | OpenSSH `ssh -tt` | ratio | terminado + `ssh -tt` | ratio | target |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, key_, target in rows:
        a, b = ours[key_], theirs[key_]
        c = web.get(key_)
        versus = "— | —" if c is None else f"{c:.3f} | {a / c:.2f}×"
        print(f"| {name} | {a:.3f} | {b:.3f} | {a / b:.2f}× | {versus} | {target} |")
    if args.json:
        figures = {"hearth": ours, "openssh": theirs, "terminado_ssh": web}
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
