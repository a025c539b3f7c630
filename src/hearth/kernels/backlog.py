"""The one overflow policy for a kernel's output to each of its readers (pure).

A reader slower than the kernel must not cost the session host more than ``LIMIT`` bytes, and
must still get every request's status: :class:`Backlog` drops output, never what ends a request.
The HTTP execute and the kernel websocket read through one each (``session._Sink``,
``kernel._Waiter``); a Jupyter client's relay (``channels.py``) holds the same ``LIMIT`` in
Jupyter's way: its replies wait and its IOPub drops, as ZeroMQ does for a slow subscriber.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["LIMIT", "Backlog", "droppable", "notice_text", "size_of"]

LIMIT = 32 * 1024 * 1024  # bytes held for one reader
MESSAGE_OVERHEAD = 256  # bytes of a message beyond its content (header, parent, dict)

T = TypeVar("T")

_KEPT = frozenset({"status", "execute_input", "execute_result", "error", "done"})
_KEPT_PER_REQUEST = {"status": 2}  # busy, then idle; one of each other kept kind


def droppable(kind: str) -> bool:
    """Whether a message (or event) of this type may be dropped for a reader that is behind."""
    return kind not in _KEPT and not kind.endswith("_reply")


def size_of(value: object) -> int:
    """About how many bytes ``value`` (a decoded JSON message or event) holds: its strings'
    lengths, without encoding it."""
    if isinstance(value, str | bytes | bytearray | memoryview):
        return len(value)
    if isinstance(value, dict):
        return 2 + sum(size_of(k) + size_of(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return 2 + sum(size_of(v) for v in value)
    return 8


def notice_text(messages: int, size: int) -> str:
    return (
        f"Hearth dropped {messages} output messages ({_amount(size)}) of this execution: it was "
        f"read more slowly than the kernel wrote it, and at most {LIMIT >> 20} MiB wait for a "
        "reader. Read the output as it comes (stream it), or write less of it (to a file of "
        "the session, and download that).\n"
    )


def _amount(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB" if size >= 1 << 20 else f"{size} bytes"


class Backlog(Generic[T]):
    """Items for one reader, in order, holding at most ``limit`` bytes of droppable ones;
    ``notice(text)`` makes the item that stands for dropped ones.

    - output (stream, display and the other messages a request doesn't end with) that comes
      while the backlog is full is dropped and counted, until the reader has taken it down to
      half;
    - what answers or ends a request (its replies, status, ``execute_input``,
      ``execute_result``, ``error``, the ``done`` event) is never dropped: a few per request,
      whatever the kernel prints. Only as many as a request has are kept so (two statuses, one
      of each other kind): code in the kernel can send these too, and more are output;
    - where output was dropped the reader gets one notice of how much, and what to do.
    """

    def __init__(self, notice: Callable[[str], T], limit: int = LIMIT) -> None:
        self._items: deque[tuple[T, int]] = deque()
        self._notice = notice
        self.limit = limit
        self.held = 0  # bytes
        self.dropping = False
        self.dropped = 0  # messages since the last notice
        self.dropped_bytes = 0
        self._kept: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T, size: int, can_drop: bool) -> bool:
        """Queue ``item`` (of about ``size`` bytes); False if it was dropped."""
        if self.dropping and self.held <= self.limit // 2:
            self.dropping = False
        if can_drop and (self.dropping or self.held >= self.limit):
            self.dropping = True
            self.dropped += 1
            self.dropped_bytes += size
            return False
        if self.dropped:
            text = notice_text(self.dropped, self.dropped_bytes)
            self.dropped = self.dropped_bytes = 0
            self._append(self._notice(text), len(text))
        self._append(item, size)
        return True

    def put_message(self, item: T, size: int, kind: str) -> bool:
        """:meth:`put` of a kernel's message or event of type ``kind``: droppable beyond the
        few of its kind that a request has (see the policy)."""
        can_drop = droppable(kind)
        if not can_drop:
            self._kept[kind] += 1
            can_drop = self._kept[kind] > _KEPT_PER_REQUEST.get(kind, 1)
        return self.put(item, size, can_drop)

    def take(self) -> T:
        """The first item (``IndexError`` when there is none)."""
        item, size = self._items.popleft()
        self.held -= size
        return item

    def _append(self, item: T, size: int) -> None:
        self._items.append((item, size))
        self.held += size
