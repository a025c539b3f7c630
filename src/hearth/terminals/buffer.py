"""The output buffer: the most recent output of a terminal, addressed by absolute byte offset.

Pure: no I/O, no clock. Every byte the process ever wrote has an offset (0 for the first byte).
The buffer keeps the bytes from ``start`` to ``end``. Overflow policy, applied after each append:

1. keep the most recent ``max_lines`` lines whole: cut just after a newline, so that at most
   ``max_lines`` complete lines (plus the line being written) remain;
2. then keep at most ``max_bytes``: cut at the first line boundary inside the last ``max_bytes``,
   or inside a line when that tail holds no newline;
3. never cut above ``floor`` (an offset some reader still needs); the bytes held only because of
   the floor are ``pinned_bytes``, and the owner decides how long it lets that grow.
"""

from __future__ import annotations

from bisect import bisect_right

__all__ = ["OutputBuffer"]


class OutputBuffer:
    def __init__(self, max_lines: int, max_bytes: int) -> None:
        if max_lines < 1 or max_bytes < 1:
            raise ValueError("an output buffer holds at least one line and one byte")
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self._chunks: list[bytes] = []
        self._starts: list[int] = []  # absolute offset of each chunk's first byte
        self._newlines: list[int] = []  # newline count of each chunk
        self._head = 0  # index of the first live chunk; dead ones are compacted lazily
        self._start = 0
        self._end = 0
        self._policy_start = 0  # where the caps alone would start the buffer
        self._policy_lines = 0  # newlines between policy_start and end

    @property
    def start(self) -> int:
        """Offset of the oldest byte still buffered."""
        return self._start

    @property
    def end(self) -> int:
        """Offset of the next byte to be produced."""
        return self._end

    def __len__(self) -> int:
        return self._end - self._start

    @property
    def pinned_bytes(self) -> int:
        """Bytes kept beyond the policy only because a floor held them."""
        return max(0, self._policy_start - self._start)

    def skip_to(self, offset: int) -> None:
        """Start an empty buffer at ``offset`` (a session restored from its log)."""
        if self._end != self._start:
            raise ValueError("only an empty buffer can move its start")
        self._start = self._end = self._policy_start = max(self._end, offset)

    def append(self, data: bytes, floor: int | None = None) -> None:
        if not data:
            return
        newlines = data.count(b"\n")
        last = len(self._chunks) - 1
        if last >= self._head and len(self._chunks[last]) + len(data) <= 4096:
            # Coalesce small writes (keystroke echoes) so idle terminals stay cheap.
            self._chunks[last] += data
            self._newlines[last] += newlines
        else:
            self._chunks.append(data)
            self._starts.append(self._end)
            self._newlines.append(newlines)
        self._end += len(data)
        self._policy_lines += newlines
        self._apply_caps()
        self.trim(floor)

    def fits(self, data: bytes) -> bool:
        """Whether appending ``data`` would keep every byte produced so far (no cap reached)."""
        return (
            self._start == 0
            and self._end + len(data) <= self.max_bytes
            and self._policy_lines + data.count(b"\n") <= self.max_lines
        )

    def trim(self, floor: int | None = None) -> None:
        """Drop what the policy no longer keeps, but nothing at or above ``floor``."""
        target = self._policy_start if floor is None else min(self._policy_start, floor)
        if target > self._start:
            self._drop_before(target)

    def drop_oldest(self, nbytes: int) -> int:
        """Drop up to ``nbytes`` of the oldest output (global memory pressure); returns how many."""
        target = min(self._end, self._start + max(0, nbytes))
        dropped = target - self._start
        if dropped:
            if target > self._policy_start:
                self._policy_lines -= self._count_newlines(self._policy_start, target)
                self._policy_start = target
            self._drop_before(target)
        return dropped

    def read(self, since: int, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` bytes starting at offset ``since`` (clamped into the buffer)."""
        since = max(since, self._start)
        if since >= self._end or max_bytes <= 0:
            return b""
        i = bisect_right(self._starts, since, lo=self._head) - 1
        parts: list[bytes] = []
        want = max_bytes
        pos = since
        while want > 0 and i < len(self._chunks):
            chunk = self._chunks[i]
            lo = pos - self._starts[i]
            piece = chunk[lo : lo + want] if (lo or len(chunk) - lo > want) else chunk
            parts.append(piece)
            want -= len(piece)
            pos += len(piece)
            i += 1
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _apply_caps(self) -> None:
        """Move ``policy_start`` to where the line and byte caps ask, ignoring any floor."""
        cut = self._policy_start
        excess = self._policy_lines - self.max_lines
        if excess > 0:
            cut = self._after_nth_newline(cut, excess)
            self._policy_lines -= excess
        if self._end - cut > self.max_bytes:
            limit = self._end - self.max_bytes
            # A line that starts exactly at ``limit`` fits: look for its newline at limit - 1.
            boundary = self._first_line_start_from(limit - 1)
            new_cut = boundary if boundary is not None else limit
            self._policy_lines -= self._count_newlines(cut, new_cut)
            cut = new_cut
        self._policy_start = cut

    def _count_newlines(self, lo: int, hi: int) -> int:
        count = 0
        i = bisect_right(self._starts, lo, lo=self._head) - 1
        while lo < hi and i < len(self._chunks):
            base = self._starts[i]
            count += self._chunks[i].count(b"\n", lo - base, hi - base)
            i += 1
            if i < len(self._chunks):
                lo = self._starts[i]
        return count

    def _after_nth_newline(self, pos: int, n: int) -> int:
        """Offset just after the n-th newline at or after ``pos`` (n >= 1)."""
        i = bisect_right(self._starts, pos, lo=self._head) - 1
        while i < len(self._chunks):
            chunk = self._chunks[i]
            lo = pos - self._starts[i]
            count = chunk.count(b"\n", lo) if lo else self._newlines[i]
            if count >= n:
                # What follows the n-th newline is split's last part: one call in C, where a
                # loop of ``index`` cost a Python iteration per line of output.
                rest = (chunk[lo:] if lo else chunk).split(b"\n", n)[-1]
                return self._starts[i] + len(chunk) - len(rest)
            n -= count
            i += 1
            if i < len(self._chunks):
                pos = self._starts[i]
        return self._end

    def _first_line_start_from(self, offset: int) -> int | None:
        """Offset just after the first newline at or after ``offset``, if any before ``end``."""
        i = bisect_right(self._starts, offset, lo=self._head) - 1
        pos = offset
        while i < len(self._chunks):
            chunk = self._chunks[i]
            idx = chunk.find(b"\n", pos - self._starts[i])
            if idx >= 0:
                found = self._starts[i] + idx + 1
                return found if found < self._end else None
            i += 1
            if i < len(self._chunks):
                pos = self._starts[i]
        return None

    def _drop_before(self, target: int) -> None:
        i = self._head
        while i < len(self._chunks) and self._starts[i] + len(self._chunks[i]) <= target:
            i += 1
        if i < len(self._chunks) and self._starts[i] < target:
            chunk = self._chunks[i]
            cut = target - self._starts[i]
            removed = chunk.count(b"\n", 0, cut)
            self._chunks[i] = chunk[cut:]
            self._starts[i] = target
            self._newlines[i] -= removed
        self._head = i
        self._start = target
        if self._head > 64 and self._head * 2 > len(self._chunks):
            del self._chunks[: self._head], self._starts[: self._head], self._newlines[: self._head]
            self._head = 0
