"""One Python terminal emulator, timed and checked (run by bench_emulators.py in its own venv).

python emulator_worker.py pyte|pyavt PAYLOAD   → one JSON line: ns per byte and the checks
"""

from __future__ import annotations

import codecs
import json
import sys
import time
from collections.abc import Callable
from typing import Any

COLS, ROWS, SCROLLBACK = 200, 50, 1000
CHECKS = {
    "main": b"main-line\r\n",
    "alt": b"\x1b[?1049h\x1b[H\x1b[2JALT",
    "leave": b"\x1b[?1049l",
    "modes": b"\x1b[?2004h\x1b[?1h\x1b[?1000h\x1b[?1006h",
    "wide": "\r\n漢字😀X".encode(),
    "colour": b"\r\n\x1b[38;5;208mA\x1b[38;2;10;20;30mB\x1b[0m",
}


def pyte_emulator() -> tuple[Callable[[bytes], None], Callable[[], dict[str, Any]]]:
    import pyte

    screen = pyte.HistoryScreen(COLS, ROWS, history=SCROLLBACK)
    stream = pyte.ByteStream(screen)

    def facts() -> dict[str, Any]:
        y = screen.cursor.y
        row = screen.buffer[y]
        return {
            "alternate": None,  # no alternate screen
            "modes": {m: (m << 5) in screen.mode for m in (2004, 1, 1000, 1006)},
            "cursor_col": screen.cursor.x,
            "colours": [row[0].fg, row[1].fg],
            "scrollback": len(screen.history.top),
            "redraw": False,  # no serializer: a redraw would be built by hand
            "text0": "".join(c.data for c in screen.buffer[0].values()).strip(),
            "visible": list(screen.display),
        }

    return stream.feed, facts


def pyavt_emulator() -> tuple[Callable[[bytes], None], Callable[[], dict[str, Any]]]:
    import avt

    vt = avt.Vt(COLS, ROWS, scrollback_limit=SCROLLBACK)
    decode = codecs.getincrementaldecoder("utf-8")("replace").decode

    def facts() -> dict[str, Any]:
        line = vt[vt.cursor.row]
        return {
            "alternate": None,  # not exposed
            "modes": {2004: None, 1: vt.cursor_key_app_mode, 1000: None, 1006: None},
            "cursor_col": vt.cursor.col,
            "colours": [str(line[0].pen.foreground), str(line[1].pen.foreground)],
            "scrollback": len(vt.lines()) - ROWS,
            "redraw": "dump() (the screen only, without scrollback)",
            "text0": vt.view()[0].text.strip(),
            "visible": [line.text for line in vt.view()],
        }

    return lambda data: vt.feed_str(decode(data)), facts


def main() -> None:
    which, payload = sys.argv[1], sys.argv[2]
    make = {"pyte": pyte_emulator, "pyavt": pyavt_emulator}[which]
    with open(payload, "rb") as f:
        data = f.read()
    feed, _ = make()
    started = time.process_time()
    for at in range(0, len(data), 65536):
        feed(data[at : at + 65536])
    cpu = time.process_time() - started
    feed, facts = make()
    feed(b"".join(b"line %d\r\n" % n for n in range(300)) + CHECKS["main"] + CHECKS["alt"])
    in_alt = facts()["text0"]
    feed(CHECKS["leave"])
    left = not any("ALT" in line for line in facts()["visible"])
    feed(CHECKS["modes"] + CHECKS["wide"])
    wide = facts()["cursor_col"]
    feed(CHECKS["colour"])
    found = facts()
    found.pop("visible")
    found.update(alt_text=in_alt, alt_left=left, wide_col=wide, ns_per_byte=cpu / len(data) * 1e9)
    print(json.dumps(found, default=str))


if __name__ == "__main__":
    main()
