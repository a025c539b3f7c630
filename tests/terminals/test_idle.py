from __future__ import annotations

import pytest

from hearth.terminals.idle import expired


@pytest.mark.parametrize(
    ("now", "last_activity", "viewers", "result"),
    [
        (1000.0, 1000.0, 0, False),
        (1099.9, 1000.0, 0, False),
        (1100.0, 1000.0, 0, True),  # exactly the timeout: done
        (5000.0, 1000.0, 0, True),
        (5000.0, 1000.0, 1, False),  # a watched session never times out
        (5000.0, 1000.0, 3, False),
        (900.0, 1000.0, 0, False),  # activity stamped after "now" (clock skew): not expired
    ],
)
def test_expired(now: float, last_activity: float, viewers: int, result: bool) -> None:
    assert expired(now, last_activity, viewers, timeout=100.0) is result
