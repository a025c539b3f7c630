"""Each user's sandbox uid (hearth.sandbox.uids): stable across restarts, never shared, in the
sandbox's range."""

from __future__ import annotations

from pathlib import Path

from hearth.config import Settings
from hearth.sandbox import Sandbox
from hearth.sandbox.uids import UserUids
from hearth.store import SqliteStore


def test_a_users_uid_is_kept_across_restarts_and_never_given_to_another(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, tokens={"tok-uids-1": "alice"})
    sandbox = Sandbox.unconfined(settings)
    base = settings.sandbox_uid_base
    store = SqliteStore(tmp_path / "store.sqlite3")
    try:
        uids = UserUids(sandbox, store)
        assert [uids("alice"), uids("bob"), uids("alice")] == [base + 1, base + 2, base + 1]
    finally:
        store.close()
    store = SqliteStore(tmp_path / "store.sqlite3")
    try:
        again = UserUids(sandbox, store)  # the next run
        assert [again("carol"), again("bob"), again("alice")] == [base + 3, base + 2, base + 1]
    finally:
        store.close()


def test_without_a_store_uids_last_as_long_as_the_process(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, tokens={"tok-uids-1": "alice"})
    uids = UserUids(Sandbox.unconfined(settings), None)
    assert uids("bob") == uids("bob") != uids("alice")
