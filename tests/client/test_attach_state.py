"""``hearth attach`` keeps its offset in the data directory as it goes: a ``hearth attach``
killed with SIGKILL leaves it behind, and the next one shows only what is new."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import hearth
from tests.client.helpers import SHELL, poll
from tests.client.test_attach import Tty
from tests.conftest import ALICE, RunningServer


@pytest.fixture
def ttys() -> Iterator[list[Tty]]:
    made: list[Tty] = []
    yield made
    for t in made:
        t.close()


def remembered(data_home: Path, id: str) -> int | None:
    try:
        state = json.loads((data_home / "hearth" / "attach-state.json").read_text())
    except (OSError, ValueError):
        return None
    offsets = [offset for key, offset in state.items() if key.endswith(f" {id}")]
    return offsets[0] if offsets else None


def test_the_offset_is_kept_while_attached_and_survives_sigkill(
    server: RunningServer, tmp_path: Path, ttys: list[Tty]
) -> None:
    data_home = tmp_path / "xdg"
    with hearth.Client(server.url, ALICE) as client:
        client.terminals.create(id="k", command=SHELL)
        first = Tty(server, data_home, "attach", "k")
        ttys.append(first)
        first.type(b"PS1='$ '; echo one-$((40+2))\r")
        first.read_until(b"one-42")
        poll(
            lambda: remembered(data_home, "k") == client.terminals.get("k").output_end,
            what="the offset of everything written, kept while attached",
        )
        first.proc.kill()  # SIGKILL: no chance to save anything on the way out
        first.proc.wait()

        second = Tty(server, data_home, "attach", "k")
        ttys.append(second)
        second.type(b"echo two-$((1+1))\r")
        second.read_until(b"two-2")
        assert b"one-42" not in second.seen  # nothing shown twice
        second.type(b"\x1c")
        assert second.wait() == 0
        assert remembered(data_home, "k") == client.terminals.get("k").output_end
