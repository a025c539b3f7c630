"""What a cold screen sends the model when it is built: the frames, in order, read off the pipe
(the order is what no snapshot of xterm.js shows reliably, as it reflows on a resize)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hearth.terminals.screen import _HEADER, ScreenModels


class _Pipe:
    """The model's stdin, kept: what a real Node.js process would have read."""

    def __init__(self) -> None:
        self.sent = bytearray()
        self.transport = self

    def write(self, data: bytes) -> None:
        self.sent += data

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0


class _Model:
    pid = 0

    def __init__(self) -> None:
        self.stdin = _Pipe()


def frames(sent: bytes) -> list[tuple[str, Any]]:
    at, found = 0, []
    while at < len(sent):
        op, _, length = _HEADER.unpack_from(sent, at)
        payload = bytes(sent[at + _HEADER.size : at + _HEADER.size + length])
        at += _HEADER.size + length
        kind = chr(op)
        found.append((kind, struct.unpack(">HH", payload[:4]) if kind in "OR" else payload))
    return found


def models_with(model: _Model | None) -> ScreenModels:
    models = ScreenModels("node", 1000, script=Path("unused.mjs"))
    models._process = model  # type: ignore[assignment]
    models._priority = lambda **_: None  # type: ignore[method-assign]
    return models


def source_of(data: bytearray) -> Callable[[int | None], tuple[bytes, int]]:
    return lambda offset: (bytes(data[offset or 0 :]), len(data))


async def test_a_restored_buffer_is_drawn_before_the_resizes_that_came_after_it() -> None:
    model = _Model()
    models = models_with(model)
    data = bytearray(b"restored line\r\n" * 3)  # a session restored from its log
    screen = models.open(24, 80, source_of(data), cold=True, end=len(data))
    screen.resize(40, 120)  # a viewer attaches at its size
    models.take_all(screen)
    models._flush()
    assert [kind for kind, _ in frames(model.stdin.sent)][-3:] == ["O", "D", "R"]
    assert frames(model.stdin.sent)[-1] == ("R", (40, 120))


async def test_a_screen_warmed_while_the_model_was_down_ends_at_the_sessions_size() -> None:
    model = _Model()
    models = models_with(None)
    data = bytearray()
    screen = models.open(24, 80, source_of(data), cold=True)
    data += b"a\r\n"
    screen.output(b"a\r\n", len(data), streaming=False)
    screen.resize(30, 100)
    screen.warm()  # the buffer is about to drop its first byte, but the model is restarting
    for _ in range(70):  # more window changes than a cold screen remembers
        screen.resize(50, 200)
    models._process = model  # type: ignore[assignment]  # back
    models.take_all(screen)
    models._flush()
    resizes = [size for kind, size in frames(model.stdin.sent) if kind == "R"]
    assert resizes[-1] == (50, 200) and (screen.rows, screen.cols) == (50, 200)
