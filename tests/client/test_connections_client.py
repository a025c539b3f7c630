"""Saved connections (SPEC §11) through ``hearth.Client`` and the command line, on a real server
and a real sshd: their secrets never come back, and a terminal opened on one runs there."""

from __future__ import annotations

import fcntl
import json
import os
import struct
import subprocess
import sys
import termios
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.utils import CryptographyDeprecationWarning

import hearth
from hearth.cli import _encrypted
from hearth.client import ConnectionInfo
from hearth.errors import BadGateway, Conflict, NotFound
from tests.client.helpers import poll
from tests.client.test_attach import Tty
from tests.client.test_cli import run
from tests.conftest import ALICE, BOB, RunningServer
from tests.ssh.sshd import Sshd, start_sshd

with warnings.catch_warnings():
    # the session host of the tests runs in this process and imports asyncssh, which names
    # cryptography's deprecated DSA types at import (an error under the suite's filterwarnings)
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    import asyncssh  # noqa: F401

# secrets of the connections that never reach an sshd
PASSWORD = "pw-Never-Shown-7"
PASSPHRASE = "pp-Never-Shown-8"
# a real key (the server reads a key when it is saved), encrypted as ssh-keygen does (aes256-ctr)
FAKE_KEY = (
    Ed25519PrivateKey.generate()
    .private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.BestAvailableEncryption(PASSPHRASE.encode()),
    )
    .decode()
)
KEY_BODY = FAKE_KEY.splitlines()[1]
REMOTE = b"echo remote-$((6*7)) $(whoami)\r"  # its output is not its echo


@pytest.fixture(scope="module")
def sshd_server() -> Iterator[Sshd]:
    """This module's sshd, stopped when the module ends (tests/ssh has its own)."""
    server = start_sshd()
    yield server
    server.close()


@pytest.fixture
def sshd(sshd_server: Sshd) -> Sshd:
    if not sshd_server.running:
        sshd_server.restart()
    return sshd_server


class Recorded(httpx.HTTPTransport):
    """The real transport, keeping every answer's body to look for secrets in."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[bytes] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.bodies.append(response.read())
        return response


class AsyncRecorded(httpx.AsyncHTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[bytes] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        self.bodies.append(await response.aread())
        return response


def assert_no_secret(bodies: list[bytes], *secrets: str) -> None:
    assert bodies
    for body in bodies:
        for secret in secrets:
            assert secret.encode() not in body, body


def test_connections_round_trip_and_their_secrets_never_come_back(server: RunningServer) -> None:
    answers = Recorded()
    with hearth.Client(server.url, ALICE, transport=answers) as client:
        pw = client.connections.create("db.example.com", "deploy", password=PASSWORD, id="pw")
        assert isinstance(pw, ConnectionInfo)
        assert (pw.id, pw.name, pw.protocol, pw.port, pw.auth, pw.host_key) == (
            "pw",
            "deploy@db.example.com",
            "ssh",
            22,
            "password",
            None,
        )
        key = client.connections.create(
            "10.0.0.7",
            "ops",
            port=2222,
            private_key=FAKE_KEY,
            passphrase=PASSPHRASE,
            host_key="SHA256:" + "A" * 43,
            name="build box",
        )
        assert key.id and key.name == "build box" and key.auth == "private_key"
        assert [c.id for c in client.connections.list()] == ["pw", key.id]  # oldest first
        assert client.connections.get(key.id) == key

        # only the fields given change; None for host_key clears it, left out it stays
        renamed = client.connections.change(key.id, name="builder")
        assert renamed.name == "builder" and renamed.host_key == key.host_key
        assert (renamed.host, renamed.port, renamed.auth) == ("10.0.0.7", 2222, "private_key")
        assert renamed.updated_at >= key.updated_at and renamed.created_at == key.created_at
        assert client.connections.change(key.id, host_key=None).host_key is None
        swapped = client.connections.change(key.id, password=PASSWORD, host_key="SHA256:xyz")
        assert (swapped.auth, swapped.host_key, swapped.name) == (
            "password",
            "SHA256:xyz",
            "builder",
        )
        moved = client.connections.change(key.id, port=2200)  # another machine: its key unpinned
        assert (moved.port, moved.host_key) == (2200, None)
        sent = len(answers.bodies)
        with pytest.raises(ValueError, match="name can't be None"):
            client.connections.change("pw", name=None)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="private key"):
            client.connections.change("pw", passphrase=PASSPHRASE)
        assert len(answers.bodies) == sent  # refused before anything was sent

        with pytest.raises(Conflict):
            client.connections.create("db.example.com", "deploy", password=PASSWORD, id="pw")
        with hearth.Client(server.url, BOB) as bob:
            assert bob.connections.list() == []
            with pytest.raises(NotFound):
                bob.connections.get("pw")
            with pytest.raises(NotFound):
                bob.terminals.create(connection_id="pw")
        client.connections.delete("pw")
        with pytest.raises(NotFound):
            client.connections.get("pw")
        with pytest.raises(NotFound):
            client.connections.delete("pw")
        assert [c.id for c in client.connections.list()] == [key.id]
    assert_no_secret(answers.bodies, PASSWORD, PASSPHRASE, KEY_BODY)


async def test_the_async_client_has_the_same_connections(server: RunningServer) -> None:
    answers = AsyncRecorded()
    async with hearth.AsyncClient(server.url, ALICE, transport=answers) as client:
        made = await client.connections.create(
            "db.example.com", "deploy", password=PASSWORD, host_key="SHA256:abc", id="a"
        )
        assert made.auth == "password" and made.host_key == "SHA256:abc"
        assert [c.id for c in await client.connections.list()] == ["a"]
        assert (await client.connections.get("a")).host == "db.example.com"
        changed = await client.connections.change("a", host_key=None, username="root")
        assert (changed.host_key, changed.username) == (None, "root")
        await client.connections.delete("a")
        assert await client.connections.list() == []
    assert_no_secret(answers.bodies, PASSWORD)


def history_text(client: hearth.Client, id: str) -> str:
    return "".join(e.data for e in client.terminals.history(id))


def test_a_terminal_on_a_connection_runs_on_that_machine(server: RunningServer, sshd: Sshd) -> None:
    with hearth.Client(server.url, ALICE) as client:
        client.connections.create(
            sshd.host,
            sshd.key_user,
            port=sshd.port,
            private_key=sshd.private_key,
            host_key=sshd.host_key_fingerprint,
            id="box",
        )
        tested = client.connections.test("box")
        assert (tested.fingerprint, tested.host_key_matches) == (sshd.host_key_fingerprint, True)
        assert tested.authenticated is True and tested.detail is None
        t = client.terminals.create(
            connection_id="box", command=["sh", "-c", "echo remote-$((6*7)) $(whoami)"]
        )
        assert (t.protocol, t.connection_id, t.name) == ("ssh", "box", f"{sshd.key_user}@127.0.0.1")
        poll(
            lambda: f"remote-42 {sshd.key_user}" in history_text(client, t.id),
            what="the remote command's output",
        )
        poll(lambda: not client.terminals.get(t.id).alive, what="the remote command's end")
        assert client.terminals.get(t.id).exit_code == 0

        # a shell there outlives the connection's deletion: it holds its own SSH connection
        shell = client.terminals.create(connection_id="box", id="remote-shell")
        client.connections.delete("box")
        assert client.terminals.get(shell.id).alive
        client.terminals.close(shell.id)

        # a step that fails on the way there is a BadGateway naming it, and leaves no session
        client.connections.create(
            sshd.host, sshd.password_user, port=sshd.port, password="not-it", id="wrong"
        )
        with pytest.raises(BadGateway) as caught:
            client.terminals.create(connection_id="wrong", id="never")
        assert "Authentication failed" in caught.value.message
        with pytest.raises(NotFound):
            client.terminals.get("never")


# --- the command line -----------------------------------------------------------------------

# The command's PTY as its controlling terminal, as in a login: getpass prompts on /dev/tty.
CONTROLLING_TTY = (
    "import fcntl, os, sys, termios; os.setsid(); fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


class LoginTty(Tty):
    """``Tty`` whose PTY is the command's controlling terminal."""

    def __init__(self, server: RunningServer, data_home: Path, *args: str) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CONTROLLING_TTY, "-m", "hearth", *args, *self.server(server)],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**env, "XDG_DATA_HOME": str(data_home)},
        )
        os.close(slave)
        self.seen = b""

    @staticmethod
    def server(server: RunningServer) -> list[str]:
        return ["--url", server.url, "--token", ALICE]


@pytest.fixture
def ttys() -> Iterator[list[Tty]]:
    made: list[Tty] = []
    yield made
    for t in made:
        t.close()


def test_add_list_open_and_remove_connections_from_the_command_line(
    server: RunningServer, sshd: Sshd, tmp_path: Path, ttys: list[Tty]
) -> None:
    empty = run(server, "connections")
    assert empty.returncode == 0 and "No connections" in empty.stdout
    at = ["--host", sshd.host, "--port", str(sshd.port)]
    password = "pass word,with 'quotes' \\ and spaces "  # all of the line is the password
    added = run(
        server,
        "connections",
        "add",
        "box",
        *at,
        "--user",
        sshd.password_user,
        "--password-stdin",
        stdin=password + "\n",
    )
    assert added.returncode == 0, added.stderr
    id = added.stdout.strip()
    # the password kept is the line given. (Not logged in with: the password user's password
    # is the machine's, set by whichever test run started an sshd last.)
    _, auth = server.call(lambda: server.core.connections.credentials("alice", id))
    assert auth.password == password
    key = tmp_path / "id_ed25519"
    key.write_text(sshd.private_key)
    keyed = ["add", "keybox", *at, "--user", sshd.key_user, "--key", str(key), "--id", "kb"]
    assert run(server, "connections", *keyed).stdout == "kb\n"

    table = run(server, "connections")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "ADDRESS", "AUTH", "HOST", "KEY"]
    address = f"{sshd.host}:{sshd.port}"
    assert rows[0].split()[:4] == [id, "box", f"{sshd.password_user}@{address}", "password"]
    assert rows[1].split()[:4] == ["kb", "keybox", f"{sshd.key_user}@{address}", "private_key"]
    assert all("not pinned yet" in row for row in rows)
    listed = run(server, "connections", "--json")
    assert [(c["id"], c["auth"]) for c in json.loads(listed.stdout)] == [
        (id, "password"),
        ("kb", "private_key"),
    ]
    for shown in (added, table, listed):
        for secret in (password, *sshd.private_key.splitlines()[1:-1]):
            assert secret not in shown.stdout + shown.stderr

    # by its name, as the user knows it; the terminal is on that machine, and its key pinned
    t = LoginTty(server, tmp_path / "xdg", "new", "--connection", "keybox")
    ttys.append(t)
    t.type(REMOTE)
    t.read_until(f"remote-42 {sshd.key_user}".encode())
    t.type(b"exit 5\r")
    assert t.wait() == 5
    assert b"exited with status 5" in t.seen
    assert sshd.host_key_fingerprint in run(server, "connections").stdout.splitlines()[2]

    assert run(server, "connections", "rm", id).returncode == 0
    assert run(server, "connections", "rm", "keybox").returncode == 0
    assert "No connections" in run(server, "connections").stdout
    gone = run(server, "connections", "rm", "box")
    assert gone.returncode == 1 and "No connection 'box'" in gone.stderr
    assert len(gone.stderr.strip().splitlines()) == 1


def test_an_encrypted_key_is_asked_its_passphrase_at_the_terminal(
    server: RunningServer, sshd: Sshd, tmp_path: Path, ttys: list[Tty]
) -> None:
    # PKCS#8, which the server opens with cryptography alone (an encrypted OpenSSH key wants
    # bcrypt there: see test_keys_that_need_a_passphrase_are_told_apart)
    opened = serialization.load_ssh_private_key(sshd.private_key.encode(), None)
    key = tmp_path / "id_ed25519"
    key.write_bytes(
        opened.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSPHRASE.encode()),
        )
    )
    address = ["--host", sshd.host, "--port", str(sshd.port), "--user", sshd.key_user]
    pinned = ["--host-key", sshd.host_key]
    refused = run(server, "connections", "add", "k", *address, "--key", str(key), *pinned)
    assert refused.returncode == 1 and "--passphrase-stdin" in refused.stderr  # no terminal

    t = LoginTty(
        server,
        tmp_path / "xdg",
        "connections",
        "add",
        "k",
        *address,
        "--key",
        str(key),
        *pinned,
        "--id",
        "k",
    )
    ttys.append(t)
    t.read_until(b"Passphrase of")
    t.type(PASSPHRASE.encode() + b"\r")
    assert t.wait() == 0, t.seen
    assert PASSPHRASE.encode() not in t.seen  # not echoed

    made = run(server, "new", "-d", "--connection", "k")
    assert made.returncode == 0, made.stderr  # the key opened with the passphrase given
    with hearth.Client(server.url, ALICE) as client:
        session = client.terminals.get(made.stdout.strip())
        assert (session.protocol, session.connection_id) == ("ssh", "k")
        client.terminals.close(session.id)
        listed = client.connections.list()
    assert [c.host_key for c in listed] == [sshd.host_key]


def test_a_lost_connection_ends_the_attached_terminal_saying_why(
    server: RunningServer, sshd: Sshd, tmp_path: Path, ttys: list[Tty]
) -> None:
    with hearth.Client(server.url, ALICE) as client:
        client.connections.create(
            sshd.host, sshd.key_user, port=sshd.port, private_key=sshd.private_key, id="kb"
        )
        t = LoginTty(server, tmp_path / "xdg", "new", "--connection", "kb")
        ttys.append(t)
        t.type(REMOTE)
        t.read_until(b"remote-42")
        [session] = client.terminals.list()
        sshd.kill_all()
        assert t.wait() == 255  # as ssh's own exit status for a lost connection
        assert b"ended: connection lost" in t.seen
        poll(lambda: not client.terminals.get(session.id).alive, what="the session's end")
    ls = run(server, "ls")
    assert "on kb, exit code 255" in ls.stdout, ls.stdout


def test_keys_that_need_a_passphrase_are_told_apart(tmp_path: Path) -> None:
    """What ``connections add`` asks a passphrase for: ssh-keygen's own format names its
    cipher, PEM says ENCRYPTED in its header."""
    key = tmp_path / "key"
    made = ["ssh-keygen", "-q", "-t", "ed25519", "-C", "k", "-f", str(key)]
    subprocess.run([*made, "-N", ""], check=True, capture_output=True)
    assert not _encrypted(key.read_text())
    pem = serialization.load_ssh_private_key(key.read_bytes(), None)
    again = ["ssh-keygen", "-q", "-p", "-P", "", "-N", PASSPHRASE, "-f", str(key)]
    subprocess.run(again, check=True, capture_output=True)
    assert _encrypted(key.read_text())
    assert _encrypted(FAKE_KEY)  # aes256-ctr
    for encryption, encrypted in (
        (serialization.NoEncryption(), False),
        (serialization.BestAvailableEncryption(b"pp"), True),
    ):
        text = pem.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        ).decode()
        assert _encrypted(text) is encrypted
