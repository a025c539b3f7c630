"""Large input on the terminal websocket (SPEC §3.4): input up to ``max_input_bytes`` is
delivered whole, larger input gets an error frame and the connection stays open; only a
message beyond the websocket frame limit closes it (1009)."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Callable

from hearth.server.serve import ws_max_size
from tests.conftest import ALICE, RunningServer
from tests.server.termclient import TermClient
from tests.server.test_terminal_ws import make

MiB = 1024 * 1024
# Reads exactly N bytes of input in raw mode (no line editing, no echo), then says what it got.
RECEIVER = """
import hashlib, os, sys, tty
n = int(sys.argv[1])
tty.setraw(0)
print("ready", flush=True)
digest, got = hashlib.sha256(), 0
while got < n:
    chunk = os.read(0, 65536)
    digest.update(chunk)
    got += len(chunk)
print("got", got, digest.hexdigest(), "end", flush=True)
"""


def paste_text(size: int) -> str:
    """Text of ``size`` UTF-8 bytes whose JSON form is much larger (quotes, tabs, newlines and
    non-ASCII characters are escaped)."""
    line = 'echo "größe"\t$((1+1)) \\ done\n'
    text = line * (size // len(line.encode()))
    return text + "x" * (size - len(text.encode()))


async def test_input_of_max_input_bytes_in_one_text_frame_is_delivered_whole(
    server: RunningServer,
) -> None:
    size = server.settings.max_input_bytes
    text = paste_text(size)
    frame = json.dumps({"type": "input", "data": text})
    assert len(frame) > 1.3 * size  # its JSON form is well beyond max_input_bytes
    await make(server, "paste", [sys.executable, "-c", RECEIVER, str(size)])
    t = await TermClient.connect(server.ws_url, "paste", ALICE, reconnect="true")
    await t.read_until(b"ready")
    await t.send(frame)
    out = await t.read_until(b" end", timeout=30)
    match = re.search(rb"got (\d+) ([0-9a-f]{64}) end", out)
    assert match, out[-200:]
    assert int(match[1]) == size
    assert match[2].decode() == hashlib.sha256(text.encode()).hexdigest()
    assert not [f for f in t.frames if f["type"] == "error"]
    await t.close()


async def test_a_paste_larger_than_max_input_bytes_is_refused_with_an_error_frame(
    server: RunningServer,
) -> None:
    assert server.settings.max_input_bytes == MiB  # the default
    t = await TermClient.connect(server.ws_url, "big", ALICE)
    await t.send(b"y" * (2 * MiB))  # binary input
    error = await t.frame("error")
    assert "1048576 bytes" in error["message"] and "smaller pieces" in error["message"]
    await t.send(json.dumps({"type": "input", "data": paste_text(2 * MiB)}))  # as text
    assert "smaller pieces" in (await t.frame("error"))["message"]
    await t.send(b"echo still-$((2*3))\n")  # the connection stays, and so does the session
    await t.read_until(b"still-6\r\n")
    await t.send('{"type":"ping"}')
    await t.frame("pong")
    await t.close()


async def test_a_message_beyond_the_frame_limit_closes_with_1009(
    make_server: Callable[..., RunningServer],
) -> None:
    """The bound that remains: 6 x max_input_bytes + 64 KiB (README)."""
    server = make_server(max_input_bytes=1000)
    limit = ws_max_size(1000)
    assert limit == 6 * 1000 + 64 * 1024
    t = await TermClient.connect(server.ws_url, "huge", ALICE)
    await t.send(b"z" * limit)  # at the limit: an error frame
    assert "smaller pieces" in (await t.frame("error"))["message"]
    await t.send(b"z" * (limit + 1))
    assert await t.until_closed() == 1009
