"""The web tier's checks of a session host it finds already running: one started for fewer
users, or told to accept less, is not taken for several users without a word."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hearth.config import Settings
from hearth.sandbox import SandboxUnavailable
from hearth.server import host_starter as starter
from hearth.server.host_starter import HostStarter
from tests.conftest import TOKENS


def hello(sandbox: str, limits: str) -> dict[str, Any]:
    return {"sandbox": {"sandbox": sandbox, "limits": limits}, "settings": {}}


@pytest.fixture
def plain_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(starter.os, "geteuid", lambda: 1000)


@pytest.mark.usefixtures("plain_user")
def test_a_host_with_only_rlimits_is_refused_for_several_users(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, tokens=TOKENS, session_limits="auto")
    with pytest.raises(SandboxUnavailable, match=r"Delegate=yes.*'hearth shutdown' ends it"):
        HostStarter(settings)._check(hello("bubblewrap", "rlimit"))
    HostStarter(settings)._check(hello("bubblewrap", "cgroup2"))
    HostStarter(settings, users=1)._check(hello("bubblewrap", "rlimit"))
    accepted = settings.model_copy(update={"session_limits": "rlimit"})
    HostStarter(accepted)._check(hello("bubblewrap", "rlimit"))
