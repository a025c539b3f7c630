"""Export a session's buffered history as an asciicast v2 recording (pure)."""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Iterable

from hearth.terminals.history import Entry, EntryType

__all__ = ["ReadFn", "entry_text", "render_cast"]

ReadFn = Callable[[int, int], bytes]
"""Reads ``length`` bytes of the output stream at ``offset`` (what is still buffered of them)."""


def entry_text(entries: Iterable[Entry], read: ReadFn) -> list[tuple[Entry, str]]:
    """Each entry with its text; output is decoded across entries so no character is split."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    expected = -1
    out: list[tuple[Entry, str]] = []
    for entry in entries:
        if entry.type is EntryType.OUTPUT:
            if entry.offset != expected:
                decoder.reset()
            data = read(entry.offset, entry.length)
            expected = entry.offset + entry.length
            out.append((entry, decoder.decode(data)))
        elif isinstance(entry.data, bytes):
            out.append((entry, entry.data.decode("utf-8", "replace")))
        else:
            out.append((entry, entry.data))
    return out


def render_cast(
    *,
    width: int,
    height: int,
    started: float,
    title: str,
    env: dict[str, str],
    entries: list[tuple[Entry, str]],
) -> str:
    """asciicast v2: a JSON header line, then ``[seconds, code, data]`` event lines."""
    header = {
        "version": 2,
        "width": width,
        "height": height,
        "timestamp": int(started),
        "title": title,
        "env": env,
    }
    lines = [json.dumps(header)]
    for entry, text in entries:
        t = round(max(0.0, entry.timestamp - started), 6)
        if entry.type is EntryType.OUTPUT and text:
            lines.append(json.dumps([t, "o", text]))
        elif entry.type is EntryType.INPUT:
            lines.append(json.dumps([t, "i", text]))
        elif entry.type is EntryType.SYSTEM and text.startswith("resize "):
            lines.append(json.dumps([t, "r", text.removeprefix("resize ")]))
    return "\n".join(lines) + "\n"
