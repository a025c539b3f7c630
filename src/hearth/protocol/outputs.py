"""Jupyter IOPub messages → Hearth's execution events and nbformat v4 outputs (pure).

An ``ExecutionEvent`` is a JSON object: each output as ``{"type": <output_type>, ...its
fields}``, and last ``{"type": "done", "status", "execution_count", "duration_ms", "restarted"}``.
The synchronous answer is the same events folded into nbformat outputs by :class:`Outputs`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ExecutionEvent", "Outputs", "dead_kernel_error", "done_event", "event_from_message"]

ExecutionEvent = dict[str, Any]

_OUTPUT_FIELDS: dict[str, tuple[str, ...]] = {
    "stream": ("name", "text"),
    "execute_result": ("data", "metadata", "execution_count"),
    "display_data": ("data", "metadata"),
    "error": ("ename", "evalue", "traceback"),
    "clear_output": ("wait",),
}


def event_from_message(msg_type: str, content: dict[str, Any]) -> ExecutionEvent | None:
    """The event for one IOPub message, or None for the ones callers don't see (status, ...)."""
    fields = _OUTPUT_FIELDS.get(msg_type)
    if fields is None:
        return None
    event: ExecutionEvent = {"type": msg_type}
    for name in fields:
        if name in content:
            event[name] = content[name]
    if msg_type in ("execute_result", "display_data"):
        event.setdefault("metadata", {})
    return event


def dead_kernel_error(why: str) -> ExecutionEvent:
    return {
        "type": "error",
        "ename": "DeadKernelError",
        "evalue": why,
        "traceback": [f"DeadKernelError: {why}"],
    }


def done_event(
    status: str, execution_count: int | None, duration_ms: float, restarted: bool
) -> ExecutionEvent:
    return {
        "type": "done",
        "status": status,
        "execution_count": execution_count,
        "duration_ms": round(duration_ms, 3),
        "restarted": restarted,
    }


class Outputs:
    """Folds events into nbformat outputs: consecutive stream text of one name is merged, and
    ``clear_output`` clears what came before (at once, or with ``wait`` at the next output)."""

    def __init__(self) -> None:
        self.outputs: list[dict[str, Any]] = []
        self.done: ExecutionEvent | None = None
        self._clear_pending = False

    def add(self, event: ExecutionEvent) -> None:
        kind = event["type"]
        if kind == "done":
            self.done = event
            return
        if kind == "clear_output":
            if event.get("wait"):
                self._clear_pending = True
            else:
                self.outputs.clear()
            return
        if self._clear_pending:
            self.outputs.clear()
            self._clear_pending = False
        fields = {k: v for k, v in event.items() if k != "type"}
        last = self.outputs[-1] if self.outputs else None
        if (
            kind == "stream"
            and last is not None
            and last["output_type"] == "stream"
            and last["name"] == fields.get("name")
        ):
            last["text"] += fields.get("text", "")
            return
        self.outputs.append({"output_type": kind, **fields})

    def result(self) -> dict[str, Any]:
        if self.done is None:
            raise RuntimeError("Cannot build an execution result before its 'done' event.")
        return {
            "status": self.done["status"],
            "outputs": self.outputs,
            "execution_count": self.done["execution_count"],
            "duration_ms": self.done["duration_ms"],
            "restarted": self.done["restarted"],
        }
