"""tmux as the independent reference for screens (SPEC §9): the same program in a tmux pane of
the same size, read back with ``capture-pane`` and its format flags."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

TMUX = shutil.which("tmux")


def require_tmux() -> None:
    """Skip without tmux, but fail in CI, which installs it (a skip there would hide)."""
    if TMUX is None:
        why = "the screen tests compare with tmux: apt-get install tmux"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)


FLAGS = (
    "alternate_on",
    "cursor_x",
    "cursor_y",
    "cursor_flag",
    "keypad_cursor_flag",
    "mouse_any_flag",
    "mouse_sgr_flag",
    "scroll_region_upper",
    "scroll_region_lower",
)


class Tmux:
    """A private tmux server (its own socket, no user config, no status line)."""

    def __init__(self, folder: Path) -> None:
        require_tmux()
        self.socket = folder / "tmux.sock"
        self.config = folder / "tmux.conf"
        self.config.write_text("set -g status off\nset -g history-limit 5000\n")

    def run(self, *args: str) -> str:
        command = [TMUX or "tmux", "-S", str(self.socket), "-f", str(self.config), *args]
        return subprocess.run(command, check=True, capture_output=True, text=True).stdout

    def start(self, name: str, argv: list[str], rows: int, cols: int) -> None:
        shell_command = "env TERM=xterm-256color " + shlex.join(argv)
        self.run("new-session", "-d", "-s", name, "-x", str(cols), "-y", str(rows), shell_command)
        size = self.run("display-message", "-p", "-t", name, "#{pane_height} #{pane_width}")
        assert size.split() == [str(rows), str(cols)], size

    def lines(self, name: str) -> list[str]:
        """The visible rows, trailing blanks cut (capture-pane's plain text)."""
        text = self.run("capture-pane", "-p", "-t", name)
        rows = int(self.run("display-message", "-p", "-t", name, "#{pane_height}"))
        lines = text.split("\n")[:rows]
        return [line.rstrip() for line in lines] + [""] * (rows - len(lines))

    def flags(self, name: str) -> dict[str, str]:
        fmt = " ".join(f"#{{{flag}}}" for flag in FLAGS)
        values = self.run("display-message", "-p", "-t", name, fmt).split()
        return dict(zip(FLAGS, values, strict=True))

    def wait_for(self, name: str, marker: str, timeout: float = 15) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            lines = self.lines(name)
            if any(marker in line for line in lines):
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(f"{marker!r} not on the tmux screen: {lines}")
            time.sleep(0.05)

    def kill(self) -> None:
        subprocess.run([TMUX or "tmux", "-S", str(self.socket), "kill-server"], capture_output=True)
