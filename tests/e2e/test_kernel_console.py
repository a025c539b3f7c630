"""The kernel console in the browser: a session from the warm pool, streamed output, a
traceback rendered without escape codes, an image/png display."""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Callable
from typing import Any

from tests.conftest import RunningServer
from tests.e2e.conftest import open_workspace, poll, shot


def tiny_png(width: int = 24, height: int = 16) -> bytes:
    """An orange PNG made from bytes (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + b"\xf5\xa5\x24" * width
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def test_code_runs_with_streamed_text_a_traceback_and_an_image(
    make_server: Callable[..., RunningServer], context: Any
) -> None:
    server = make_server(session_pool_size=1)
    ready = lambda: server.call(lambda: server.core.kernels.pool_state())["ready"] >= 1  # noqa: E731
    poll("a warm kernel in the pool", ready, timeout=60)

    page = open_workspace(context, server.url)
    page.wait_for_function("() => window.hearth.tabs().length === 1")
    page.keyboard.press("Alt+Shift+KeyK")
    page.locator('.chip[data-name="ready"]').wait_for()
    page.locator('[data-action="new-kernel"]').click()
    page.wait_for_function("() => document.querySelector('.kernel-select').value !== ''")
    assert "from the warm pool" in page.locator(".console-note").last.inner_text()

    b64 = base64.b64encode(tiny_png()).decode()
    code = page.locator("textarea.code")
    code.fill(
        "from IPython.display import display\n"
        "print('hello from', 6 * 7)\n"
        f"display({{'image/png': '{b64}', 'text/plain': '<tiny png>'}}, raw=True)\n"
        "21 * 2"
    )
    code.press("Shift+Enter")
    cell = page.locator('.cell[data-state="ok"]').first
    cell.wait_for()
    assert "hello from 42" in cell.locator(".output.stream").inner_text()
    assert "42" in cell.locator(".output.execute_result").inner_text()
    assert cell.locator(".prompt").inner_text() == "In [1]:"
    image = cell.locator('img[data-mime="image/png"]')
    page.wait_for_function(
        "(img) => img.complete && img.naturalWidth === 24 && img.naturalHeight === 16",
        arg=image.element_handle(),
    )

    code.fill("def f():\n    return 1 / 0\nf()")
    page.locator('[data-action="run"]').click()
    failed = page.locator('.cell[data-state="error"]').first
    failed.wait_for()
    trace = failed.locator(".output.error").inner_text()
    assert "ZeroDivisionError" in trace and "\x1b" not in trace
    assert failed.locator(".prompt").inner_text() == "In [2]:"
    shot(page, "kernel-console")
