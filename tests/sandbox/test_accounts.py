"""A session's uid has a name inside: ``id``, ``whoami`` and bash's prompt know who it is."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from hearth.sandbox.accounts import Account, AccountFiles, with_account
from tests.client.helpers import poll
from tests.conftest import RunningServer
from tests.sandbox.test_attacks import H_ALICE, execute, terminal_output


def test_the_account_is_added_to_the_systems_files_and_names_are_made_safe(
    tmp_path: Path,
) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash")  # no final newline
    (etc / "group").write_text("root:x:0:\n")
    files = AccountFiles(tmp_path / "out", etc)
    passwd, group = files.files(Account("ev:il\nname", 200001, "/data/homes/x", "/bin/bash"))
    assert passwd.read_text().splitlines() == [
        "root:x:0:0:root:/root:/bin/bash",
        "ev_il_name:x:200001:200001:Hearth:/data/homes/x:/bin/bash",
    ]
    assert group.read_text().splitlines() == ["root:x:0:", "ev_il_name:x:200001:"]
    assert oct(passwd.stat().st_mode & 0o777) == "0o644"
    assert with_account("", "a:x:1:1::/:/bin/sh") == "a:x:1:1::/:/bin/sh\n"


@pytest.mark.skipif(
    os.geteuid() != 0 or (not Path("/usr/bin/bwrap").exists() and os.environ.get("CI") != "true"),
    reason="a uid of its own per session: a root server with bubblewrap",
)
def test_a_shell_and_a_kernel_know_their_names(server: RunningServer) -> None:
    r = httpx.post(
        f"{server.url}/api/v1/terminal/sessions",
        json={"id": "who", "command": ["/bin/sh", "-c", "echo NAME=$(id -un) GROUP=$(id -gn)"]},
        headers=H_ALICE,
    )
    assert r.status_code == 201, r.text
    output = poll(
        lambda: (o := terminal_output(server, H_ALICE, "who")) and "NAME=" in o and o,
        what="the shell's answer",
    )
    assert "NAME=alice GROUP=alice" in output
    r = httpx.post(
        f"{server.url}/api/v1/sessions", json={"session_id": "k"}, headers=H_ALICE, timeout=60
    )
    assert r.status_code == 201, r.text
    code = "import getpass, pwd, os; print(pwd.getpwuid(os.getuid()).pw_name, getpass.getuser())"
    assert execute(server, H_ALICE, "k", code).split() == ["kernel", "kernel"]
