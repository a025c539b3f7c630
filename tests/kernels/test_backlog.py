"""The overflow policy of a kernel's output to a reader (``hearth.kernels.backlog``), pure."""

from __future__ import annotations

from hearth.kernels.backlog import Backlog, droppable, notice_text, size_of


def notice(text: str) -> str:
    return f"NOTICE {text}"


def drain(backlog: Backlog[str]) -> list[str]:
    return [backlog.take() for _ in range(len(backlog))]


def test_a_reader_that_keeps_up_gets_everything_in_order() -> None:
    backlog: Backlog[str] = Backlog(notice, limit=10)
    taken = []
    for i in range(100):
        assert backlog.put(f"out{i}", 4, can_drop=True)
        taken.append(backlog.take())
    assert taken == [f"out{i}" for i in range(100)] and backlog.held == 0


def test_output_past_the_bound_is_dropped_and_one_notice_stands_for_it() -> None:
    backlog: Backlog[str] = Backlog(notice, limit=10)
    kept = [backlog.put(f"out{i}", 4, can_drop=True) for i in range(6)]
    assert kept == [True, True, True, False, False, False]
    assert backlog.held == 12
    assert backlog.put("reply", 4, can_drop=False)  # never dropped, past the bound too
    assert drain(backlog) == ["out0", "out1", "out2", f"NOTICE {notice_text(3, 12)}", "reply"]


def test_dropping_goes_on_until_the_reader_took_the_backlog_down_to_half() -> None:
    backlog: Backlog[str] = Backlog(notice, limit=10)
    for i in range(4):
        backlog.put(f"out{i}", 4, can_drop=True)  # out3 dropped
    backlog.take()
    assert not backlog.put("out4", 4, can_drop=True)  # 8 held: more than half
    backlog.take()
    assert backlog.put("out5", 4, can_drop=True)  # 4 held: room again, after the notice
    assert drain(backlog) == ["out2", f"NOTICE {notice_text(2, 8)}", "out5"]


def test_what_ends_a_request_is_never_dropped() -> None:
    for kind in ("status", "execute_input", "execute_result", "error", "done", "execute_reply"):
        assert not droppable(kind), kind
    for kind in ("stream", "display_data", "update_display_data", "clear_output", "comm_msg"):
        assert droppable(kind), kind


def test_sizes_count_the_strings_of_a_message() -> None:
    assert size_of({"type": "stream", "text": "x" * 1000}) > 1000
    assert size_of({"data": {"image/png": "y" * 5000}, "metadata": {}}) > 5000
    assert "3 output messages (12 bytes)" in notice_text(3, 12)
    assert "(1.5 MiB)" in notice_text(1, 3 << 19)


def test_only_as_many_results_and_replies_as_a_request_has_are_kept_past_the_bound() -> None:
    """Code in the kernel can publish execute_result or error messages (or statuses) of its own
    in a loop: beyond what a request has, they are output, and the backlog stays bounded."""
    backlog: Backlog[str] = Backlog(notice, limit=10)
    for i in range(1000):
        backlog.put_message(f"result{i}", 4, "execute_result")
    assert backlog.held <= 10 + 4
    for kind in ("status", "status", "execute_reply", "done"):  # what the request itself ends with
        assert backlog.put_message(kind, 4, kind)
    assert not backlog.put_message("status", 4, "status")  # a third: not the request's
    taken = drain(backlog)
    assert taken[0] == "result0" and taken[-4:] == ["status", "status", "execute_reply", "done"]
