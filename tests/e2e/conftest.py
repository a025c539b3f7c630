"""Browser tests: the built workspace in headless Chromium (Debian's package), driven by
Playwright through ``executable_path`` (Playwright's own browser download is never used).

Every wait is a poll with a deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ALICE, RunningServer

CHROMIUM = Path(os.environ.get("HEARTH_CHROMIUM", "/usr/bin/chromium"))
STATIC = Path(__file__).resolve().parents[2] / "src" / "hearth" / "static" / "index.html"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "e2e"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
WAIT_MS = 20_000  # generous: CI machines have 2 cores and run other things


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):  # CI installs it: a missing browser there is a failure
            pytest.fail(f"CI has no Chromium at {CHROMIUM}; .ci/run installs it", pytrace=False)
        pytest.skip(
            f"browser tests need Chromium at {CHROMIUM} (Debian: apt-get install chromium; "
            "or set HEARTH_CHROMIUM)"
        )
    if not STATIC.is_file():
        pytest.fail("the web workspace is not built: run `make web` first", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # launch() gives every run a fresh temporary user-data-dir of its own.
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def make_context(browser: Any, request: pytest.FixtureRequest) -> Iterator[Callable[[], Any]]:
    """Fresh browser profiles (empty localStorage: a new device each), with debugging on, so
    pages keep every byte they write to a terminal for comparison with the server's buffer.
    Uncaught page errors fail the test; every page left open is screenshotted at the end."""
    made: list[tuple[Any, list[str]]] = []

    def make() -> Any:
        ctx = browser.new_context(viewport={"width": 1280, "height": 760})
        ctx.set_default_timeout(WAIT_MS)
        ctx.add_init_script("try { localStorage.setItem('hearth_debug', '1'); } catch (e) {}")
        errors: list[str] = []
        ctx.on("weberror", lambda e: errors.append(str(e.error)))
        made.append((ctx, errors))
        return ctx

    yield make
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^\w.-]+", "_", request.node.name)
    problems: list[str] = []
    for n, (ctx, errors) in enumerate(made):
        for i, page in enumerate(ctx.pages):
            page.screenshot(path=str(ARTIFACTS / f"{name}-end{n}{i}.png"))
        ctx.close()
        problems += errors
    assert not problems, f"uncaught errors in the page: {problems}"


@pytest.fixture
def context(make_context: Callable[[], Any]) -> Any:
    return make_context()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def open_workspace(context: Any, base_url: str, token: str | None = ALICE) -> Any:
    page = context.new_page()
    page.goto(f"{base_url}/?token={token}" if token else f"{base_url}/")
    return page


def tabs(page: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = page.evaluate("() => window.hearth.tabs()")
    return result


def wait_tabs(page: Any, count: int, state: str = "connected") -> list[dict[str, Any]]:
    """Wait until exactly ``count`` tabs are all in ``state`` with nothing left to write (nor a
    screen being drawn)."""
    page.wait_for_function(
        """([count, state]) => {
            const t = window.hearth && window.hearth.tabs();
            return t && t.length === count && t.every((x) => x.state === state
                && x.received !== null && x.written === x.received && !x.drawing);
        }""",
        arg=[count, state],
    )
    return tabs(page)


def screen_text(page: Any, id: str) -> str:
    text: str = page.evaluate("(id) => window.hearth.text(id)", id)
    return text


def wait_text(page: Any, id: str, needle: str, count: int = 1) -> str:
    """Wait until ``needle`` appears on the tab's screen at least ``count`` times."""
    page.wait_for_function(
        "([id, needle, count]) => (window.hearth.text(id) || '').split(needle).length > count",
        arg=[id, needle, count],
    )
    return screen_text(page, id)


def written_bytes(page: Any, id: str) -> bytes:
    import base64

    data: str | None = page.evaluate("(id) => window.hearth.written(id)", id)
    assert data is not None, "debug recording is off"
    return base64.b64decode(data)


def type_line(page: Any, line: str) -> None:
    page.locator(".pane.active .xterm").click()
    page.keyboard.type(line)
    page.keyboard.press("Enter")


def server_output(server: RunningServer, user: str, id: str) -> tuple[int, int, bytes]:
    """The session's buffered output straight from the server: (start, end, bytes)."""

    def read() -> tuple[int, int, bytes]:
        session = server.core.terminals.find(user, id)
        assert session is not None, f"no session {id}"
        buffer = session.buffer
        return buffer.start, buffer.end, buffer.read(buffer.start, buffer.end - buffer.start)

    result: tuple[int, int, bytes] = server.call(read)
    return result


def poll(what: str, check: Callable[[], Any], timeout: float = WAIT_MS / 1000) -> Any:
    """Poll ``check`` until it returns something truthy, or fail saying ``what``."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


def written_offset(page: Any, id: str) -> int:
    for tab in tabs(page):
        if tab["id"] == id:
            written: int = tab["written"]
            return written
    return -1


def same_bytes(server: RunningServer, page: Any, id: str) -> bytes:
    """Once the page has caught up, what it wrote equals the server's buffer exactly: all of it
    (a replay), or the screen its load started from (SPEC §9), then every byte after it."""
    _, end, _ = server_output(server, "alice", id)
    poll("the page to catch up with the server", lambda: written_offset(page, id) >= end)
    start, _, data = server_output(server, "alice", id)
    written = written_bytes(page, id)
    [tab] = [t for t in tabs(page) if t["id"] == id]
    if tab["screenAt"] is None:
        assert written == data
    else:
        after = data[tab["screenAt"] - start :]
        assert written.endswith(after)
    return data
