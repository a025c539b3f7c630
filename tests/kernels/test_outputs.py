"""IOPub messages to events, and events folded into nbformat outputs."""

from __future__ import annotations

import pytest

from hearth.protocol.outputs import Outputs, dead_kernel_error, done_event, event_from_message


def test_output_messages_become_events_with_their_fields() -> None:
    assert event_from_message("stream", {"name": "stdout", "text": "hi"}) == {
        "type": "stream",
        "name": "stdout",
        "text": "hi",
    }
    png = {"image/png": "iVBOR...", "text/plain": "<Figure>"}
    assert event_from_message("display_data", {"data": png, "transient": {}}) == {
        "type": "display_data",
        "data": png,
        "metadata": {},
    }
    error = {"ename": "E", "evalue": "v", "traceback": ["t"], "engine_info": {}}
    assert event_from_message("error", error) == {
        "type": "error",
        "ename": "E",
        "evalue": "v",
        "traceback": ["t"],
    }


@pytest.mark.parametrize("kind", ["status", "execute_input", "comm_open", "iopub_welcome"])
def test_bookkeeping_messages_are_not_events(kind: str) -> None:
    assert event_from_message(kind, {}) is None


def test_outputs_merge_streams_and_keep_order() -> None:
    outputs = Outputs()
    for event in [
        {"type": "stream", "name": "stdout", "text": "a"},
        {"type": "stream", "name": "stdout", "text": "b"},
        {"type": "stream", "name": "stderr", "text": "!"},
        {
            "type": "execute_result",
            "data": {"text/plain": "2"},
            "metadata": {},
            "execution_count": 3,
        },
        done_event("ok", 3, 1.23456, False),
    ]:
        outputs.add(event)
    assert outputs.result() == {
        "status": "ok",
        "outputs": [
            {"output_type": "stream", "name": "stdout", "text": "ab"},
            {"output_type": "stream", "name": "stderr", "text": "!"},
            {
                "output_type": "execute_result",
                "data": {"text/plain": "2"},
                "metadata": {},
                "execution_count": 3,
            },
        ],
        "execution_count": 3,
        "duration_ms": 1.235,
        "restarted": False,
    }


def test_clear_output_clears_now_or_at_the_next_output() -> None:
    outputs = Outputs()
    outputs.add({"type": "stream", "name": "stdout", "text": "1"})
    outputs.add({"type": "clear_output", "wait": True})
    assert len(outputs.outputs) == 1
    outputs.add({"type": "stream", "name": "stdout", "text": "2"})
    assert outputs.outputs == [{"output_type": "stream", "name": "stdout", "text": "2"}]
    outputs.add({"type": "clear_output", "wait": False})
    assert outputs.outputs == []


def test_a_result_needs_its_done_event() -> None:
    with pytest.raises(RuntimeError, match="before its 'done' event"):
        Outputs().result()


def test_dead_kernel_error_is_an_nbformat_error() -> None:
    event = dead_kernel_error("it exited")
    assert event["type"] == "error" and event["ename"] == "DeadKernelError"
    assert event["traceback"]
