#!/usr/bin/env python3
"""The terminal emulators a screen model could be built on, side by side (issue 10): what each
costs per byte of output and what it keeps of a screen.

    .venv/bin/python bench/bench_emulators.py     # about a minute (pyte is slow)

- xterm.js (@xterm/headless 6, as Hearth's screen model runs it: web/screen/, in Node.js);
- pyte 0.8.2 and pyavt 0.1.2, in their own environment (bench/.venv-emulators, made on first use
  from bench/requirements-emulators.txt).

Each is fed 5 MB of `ls -l --color`-like lines in 64 KiB pieces (CPU per byte), then the same
checks: 300 lines of scrollback kept, an alternate screen entered (what row 0 shows) and left,
bracketed paste / application cursor keys / mouse tracking / SGR mouse tracked, the column after
"漢字😀X" (7 with Unicode 11 widths), 256-colour and RGB foregrounds kept, and whether it can give
the escape sequences that redraw it. Prints a Markdown table.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_screen import listing_lines
from hearth.terminals.screen import ScreenModels
from terminal_common import cpu_seconds, log, pinned_venv

BENCH = Path(__file__).resolve().parent
VENV = BENCH / ".venv-emulators"
REQUIREMENTS = BENCH / "requirements-emulators.txt"
WORKER = BENCH / "emulator_worker.py"
sys.path.insert(0, str(BENCH))
from emulator_worker import CHECKS, COLS, ROWS  # noqa: E402


async def xterm(payload: bytes) -> dict[str, Any]:
    """The same checks on Hearth's own model."""
    models = ScreenModels("node", 1000)
    await models.start()
    try:
        out = bytearray()

        def source(offset: int | None) -> tuple[bytes, int]:
            return bytes(out[offset or 0 :]), len(out)

        def feed(screen: Any, data: bytes) -> None:
            out.extend(data)
            screen.output(data, len(out), streaming=False)

        cost = models.open(ROWS, COLS, source)
        await cost.snapshot()
        assert models.pid is not None
        cpu0 = cpu_seconds(models.pid)
        for at in range(0, len(payload), 65536):
            feed(cost, payload[at : at + 65536])
        await cost.snapshot()
        ns = (cpu_seconds(models.pid) - cpu0) / len(payload) * 1e9
        out.clear()
        screen = models.open(ROWS, COLS, source)
        lines = b"".join(b"line %d\r\n" % n for n in range(300))
        feed(screen, lines + CHECKS["main"] + CHECKS["alt"])
        in_alt = await screen.snapshot()
        feed(screen, CHECKS["leave"])
        left = not any("ALT" in line for line in (await screen.snapshot())["lines"])
        feed(screen, CHECKS["modes"] + CHECKS["wide"])
        wide = await screen.snapshot()
        feed(screen, CHECKS["colour"])
        last = await screen.snapshot()
    finally:
        await models.aclose()
    data = last["data"]
    return {
        "ns_per_byte": ns,
        "alternate": in_alt["alternate"],
        "alt_text": in_alt["lines"][0],
        "alt_left": left,
        "modes": {str(m): f"\x1b[?{m}h" in data for m in (2004, 1, 1000, 1006)},
        "wide_col": wide["cursor"]["col"],
        "colours": ["38;5;208" in data, "38;2;10;20;30" in data],
        "scrollback": data.count("\r\n") - ROWS + 1,
        "redraw": "yes: screen, scrollback, both buffers, modes, cursor",
    }


def yes(value: object) -> str:
    return "—" if value is None else ("yes" if value else "**no**")


def main() -> int:
    python = pinned_venv(VENV, REQUIREMENTS, "pyte, avt")
    with tempfile.TemporaryDirectory(prefix="hearth-bench-emulators-") as folder:
        payload = listing_lines(25_000)  # ~5 MB
        path = Path(folder) / "payload"
        path.write_bytes(payload)
        results: dict[str, dict[str, Any]] = {}
        log("xterm.js (Hearth's screen model)")
        results["xterm.js 6 headless (Node.js)"] = asyncio.run(xterm(payload))
        for name, label in (("pyavt", "pyavt 0.1.2"), ("pyte", "pyte 0.8.2")):
            log(name)
            started = time.monotonic()
            done = subprocess.run(
                [str(python), str(WORKER), name, str(path)],
                capture_output=True,
                text=True,
                check=True,
            )
            log(f"  {time.monotonic() - started:.0f} s")
            results[label] = json.loads(done.stdout)
    print(
        "| emulator | CPU per byte | alternate screen | bracketed paste, app cursor, "
        "mouse, SGR mouse | column after 漢字😀X (7) | 256 / RGB colour | scrollback of 300 "
        "lines | redraw |"
    )
    print("|---|---:|---|---|---:|---|---:|---|")
    for label, r in results.items():
        if r["alt_text"] != "ALT" or not r["alt_left"]:
            alt = "**no** (drawn over the main screen, which is lost)"
        elif not r.get("alternate"):
            alt = "kept, but not told (no flag)"
        else:
            alt = "yes, flagged"
        modes = ", ".join(yes(r["modes"][m]) for m in ("2004", "1", "1000", "1006"))
        colours = " / ".join(yes(bool(c)) for c in r["colours"])
        print(
            f"| {label} | {r['ns_per_byte']:,.0f} ns | {alt} | {modes} | {r['wide_col']} | "
            f"{colours} | {r['scrollback']} | {r['redraw'] or '**no**'} |"
        )
    print()
    print(
        "- par-term-emu-core-rust (a Rust emulator with Python bindings) is not in the table: "
        "its wheels need Python 3.12 or newer, and Hearth runs on 3.11 (nothing may compile at "
        "install)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
