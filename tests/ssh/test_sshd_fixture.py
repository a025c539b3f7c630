"""The test sshd does what the SSH client's tests will need of it, seen from asyncssh: key and
password logins, a PTY, a pinned host key that changes, and a server killed mid-session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import asyncssh
import pytest

from tests.ssh.processes import alive
from tests.ssh.sshd import Sshd

TIMEOUT = 10.0


@asynccontextmanager
async def connected(sshd: Sshd, **given: Any) -> AsyncIterator[asyncssh.SSHClientConnection]:
    """A connection with only what the test gives: nothing of the machine's ~/.ssh, agent or
    ssh_config."""
    async with asyncssh.connect(
        sshd.host, sshd.port, config=[], agent_path=None, connect_timeout=TIMEOUT, **given
    ) as conn:
        yield conn


def pinned(
    host_key: str,
) -> tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey], list[asyncssh.SSHKey]]:
    """known_hosts trusting ``host_key`` only (trusted keys, CA keys, revoked keys)."""
    return [asyncssh.import_public_key(host_key)], [], []


def with_key(
    sshd: Sshd, host_key: str | None = None
) -> AbstractAsyncContextManager[asyncssh.SSHClientConnection]:
    return connected(
        sshd,
        username=sshd.key_user,
        client_keys=[asyncssh.import_private_key(sshd.private_key)],
        known_hosts=pinned(host_key or sshd.host_key),
    )


def with_password(
    sshd: Sshd, password: str
) -> AbstractAsyncContextManager[asyncssh.SSHClientConnection]:
    return connected(
        sshd, username=sshd.password_user, password=password, client_keys=None, known_hosts=None
    )


async def test_the_key_user_runs_a_command_on_the_pinned_host(sshd: Sshd) -> None:
    async with with_key(sshd) as conn:
        result = await conn.run("echo $((6*7))", check=True)
    assert result.stdout == "42\n"


async def test_the_session_gets_the_hearth_test_environment(sshd: Sshd) -> None:
    async with with_key(sshd) as conn:
        result = await conn.run("echo $HEARTH_TEST_WORD", env={"HEARTH_TEST_WORD": "hi"})
    assert result.stdout == "hi\n"


def test_the_host_key_fingerprint_is_the_keys(sshd: Sshd) -> None:
    key = asyncssh.import_public_key(sshd.host_key)
    assert sshd.host_key.startswith("ssh-ed25519 AAAA")
    assert key.get_fingerprint("sha256") == sshd.host_key_fingerprint


async def test_the_password_user_gets_a_pty_of_the_size_asked(sshd: Sshd) -> None:
    async with with_password(sshd, sshd.password) as conn:
        result = await conn.run(
            "stty size", term_type="xterm-256color", term_size=(80, 24), check=True
        )
    assert result.stdout == "24 80\r\n"  # the PTY turns \n into \r\n


async def test_a_wrong_password_is_refused(sshd: Sshd) -> None:
    with pytest.raises(asyncssh.PermissionDenied):
        async with with_password(sshd, sshd.password + "x"):
            pass


async def test_a_new_host_key_fails_the_old_pin(sshd: Sshd) -> None:
    old_key, old_fingerprint = sshd.host_key, sshd.host_key_fingerprint
    port = sshd.port
    sshd.restart_with_new_host_key()
    assert sshd.port == port
    assert sshd.host_key != old_key
    assert sshd.host_key_fingerprint != old_fingerprint

    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        async with with_key(sshd, host_key=old_key):
            pass
    async with with_key(sshd) as conn:
        assert (await conn.run("echo new", check=True)).stdout == "new\n"


async def test_after_kill_a_session_goes_on_and_restart_serves_again(sshd: Sshd) -> None:
    async with with_key(sshd) as conn:
        sshd.kill()
        assert (await conn.run("echo still", check=True)).stdout == "still\n"
        with pytest.raises(OSError):
            async with with_key(sshd):
                pass

    sshd.restart()
    async with with_key(sshd) as conn:
        assert (await conn.run("echo back", check=True)).stdout == "back\n"


async def test_kill_all_ends_an_open_session(sshd: Sshd) -> None:
    async with with_key(sshd) as conn:
        process = await conn.create_process("cat", term_type="xterm", term_size=(80, 24))
        process.stdin.write("ping\n")
        assert await asyncio.wait_for(process.stdout.readline(), TIMEOUT) == "ping\r\n"
        left = sshd.connection_processes()
        assert left  # sshd's two processes of the connection, and cat

        sshd.kill_all()

        await asyncio.wait_for(process.wait_closed(), TIMEOUT)
        await asyncio.wait_for(conn.wait_closed(), TIMEOUT)
    assert not sshd.running
    assert not [p for p in left if alive(p)]
