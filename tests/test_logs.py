"""Logs are logfmt lines on stderr, and a token never reaches them, whatever its shape."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator

import pytest

from hearth.logs import configure_logging, redact

SECRET = "tok-Sup3r_s3cret-XYZ"


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The real logging set-up, writing to a buffer; the loggers are put back afterwards."""
    names = ["", "uvicorn", "uvicorn.error", "uvicorn.access"]
    saved = {
        name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level) for name in names
    }
    propagate = {name: logging.getLogger(name).propagate for name in names}
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    configure_logging("info")
    try:
        yield out
    finally:
        for name, (handlers, level) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate[name]


SHAPES = [
    f"GET /api/v1/terminal/ws/a1?token={SECRET}&reconnect=true",
    f"GET /api/v1/terminal/ws/a1?reconnect=true&token={SECRET}",
    f"GET /login?token={SECRET}",
    f"/login?next=%2Fws%3Ftoken%3D{SECRET}",
    f"Authorization: Bearer {SECRET}",
    f"authorization: bearer {SECRET}",
    f"Cookie: theme=dark; hearth_token={SECRET}; lang=fr",
    f"Cookie: hearth_token={SECRET}",
    f"[(b'authorization', b'Bearer {SECRET}'), (b'cookie', b'hearth_token={SECRET}')]",
    f"{{'hearth_token': '{SECRET}'}}",
    f'{{"token": "{SECRET}"}}',
    f"QueryParams('token={SECRET}')",
]


@pytest.mark.parametrize("text", SHAPES)
def test_redact(text: str) -> None:
    assert SECRET not in redact(text)
    assert "***" in redact(text)


def test_redact_keeps_the_rest_readable() -> None:
    assert redact(f"GET /ws/a1?token={SECRET}&since=42 HTTP/1.1") == (
        "GET /ws/a1?token=***&since=42 HTTP/1.1"
    )
    assert redact(f"Cookie: a=1; hearth_token={SECRET}; b=2") == (
        "Cookie: a=1; hearth_token=***; b=2"
    )
    plain = "Missing or wrong token: send a header, or log in at /login"
    assert redact(plain) == plain


@pytest.mark.parametrize("text", SHAPES)
def test_no_token_in_the_message(stderr: io.StringIO, text: str) -> None:
    log = logging.getLogger("hearth.test")
    log.warning(text)
    log.warning("request %s", text)
    log.warning("%s - %r", "127.0.0.1:5555", text)
    output = stderr.getvalue()
    assert output.count("\n") == 3
    assert SECRET not in output


def test_no_token_in_uvicorn_access_lines(stderr: io.StringIO) -> None:
    access = logging.getLogger("uvicorn.access")
    access.info(
        '%s - "%s %s HTTP/%s" %d',
        "127.0.0.1:5555",
        "GET",
        f"/api/v1/terminal/sessions?token={SECRET}",
        "1.1",
        200,
    )
    logging.getLogger("uvicorn.error").info(
        '%s - "WebSocket %s" [accepted]', "127.0.0.1:5555", f"/ws/terminal/a?token={SECRET}"
    )
    output = stderr.getvalue()
    assert "logger=uvicorn.access" in output
    assert "sessions?token=***" in output
    assert SECRET not in output


def test_no_token_in_extra_fields(stderr: io.StringIO) -> None:
    logging.getLogger("hearth.test").warning(
        "refused",
        extra={"url": f"/ws?token={SECRET}", "headers": {"cookie": f"hearth_token={SECRET}"}},
    )
    output = stderr.getvalue()
    assert 'url="/ws?token=***"' in output
    assert SECRET not in output


def test_no_token_in_tracebacks(stderr: io.StringIO) -> None:
    try:
        raise RuntimeError(f"could not open ws://h/ws?token={SECRET} with Bearer {SECRET}")
    except RuntimeError:
        logging.getLogger("hearth.test").exception("boom")
    output = stderr.getvalue()
    assert "exc=" in output
    assert "RuntimeError" in output
    assert SECRET not in output


def test_a_logfmt_line(stderr: io.StringIO) -> None:
    logging.getLogger("hearth.terminals").warning(
        "session %s closed", "a1", extra={"user": "alice", "note": 'said "hi"\nthen left'}
    )
    (line,) = stderr.getvalue().splitlines()
    assert line.startswith("ts=")
    assert " level=warning logger=hearth.terminals " in line
    assert 'msg="session a1 closed"' in line
    assert "user=alice" in line
    assert 'note="said \\"hi\\"\\nthen left"' in line


def test_the_level_is_applied(stderr: io.StringIO) -> None:
    logging.getLogger("hearth.test").debug("not shown")
    assert stderr.getvalue() == ""
