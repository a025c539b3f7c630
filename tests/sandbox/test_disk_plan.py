"""How big the disk image is, what /healthz says of the disk, and which errors are a full disk
(pure)."""

from __future__ import annotations

import errno
import sqlite3

from hearth.diskspace import disk_state
from hearth.errors import InsufficientStorage, storage_error
from hearth.sandbox.disk import MIN_IMAGE, image_size

GiB = 1 << 30


def test_the_image_holds_every_users_limit_when_there_is_room() -> None:
    assert image_size(users=3, limit=2 * GiB, free=100 * GiB, total=200 * GiB) == 6 * GiB


def test_the_image_never_takes_the_servers_reserve() -> None:
    # 5% of 200 GiB stays free for the store and the logs, whatever the limits ask
    assert image_size(users=10, limit=10 * GiB, free=50 * GiB, total=200 * GiB) == 40 * GiB
    # an image there already counts as room it can keep
    assert image_size(users=10, limit=10 * GiB, free=1 * GiB, total=200 * GiB, now=45 * GiB) == (
        45 * GiB
    )


def test_too_little_room_means_no_image_and_small_limits_a_minimal_one() -> None:
    assert image_size(users=1, limit=GiB, free=300 << 20, total=GiB) == 0
    assert image_size(users=2, limit=8 << 20, free=100 * GiB, total=200 * GiB) == MIN_IMAGE


def test_the_disk_state_for_healthz() -> None:
    assert disk_state(free=100 * GiB, total=200 * GiB) == "ok"
    assert disk_state(free=4 * GiB, total=200 * GiB) == "low"
    assert disk_state(free=1 << 20, total=200 * GiB) == "full"


def test_a_full_disk_or_quota_or_store_is_a_507_and_nothing_else_is() -> None:
    for code in (errno.ENOSPC, errno.EDQUOT):
        assert isinstance(storage_error(OSError(code, "full")), InsufficientStorage)
    assert storage_error(OSError(errno.EACCES, "no")) is None
    assert storage_error(ValueError("x")) is None
    full = sqlite3.connect(":memory:")
    full.execute("pragma max_page_count = 2")
    full.execute("create table t (x)")
    try:
        full.execute("insert into t values (zeroblob(100000))")
    except sqlite3.OperationalError as exc:
        error = storage_error(exc)
    assert error is not None and error.status_code == 507
    assert "free space" in error.message
