"""A real OpenSSH server on 127.0.0.1 for the SSH client's tests: the system's sshd run with a
config, a host key and client credentials generated per run, for two local users made once per
machine (one logs in with a key, the other with a password)."""

from __future__ import annotations

import functools
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.served import free_port
from tests.ssh.processes import Proc, descendants, kill_trees, proc

SSHD = "/usr/sbin/sshd"  # absolute: sshd re-executes itself for each connection
# sshd chroots its unprivileged half there and won't start without it (made at boot by systemd's
# tmpfiles or by the init script, neither of which runs here)
PRIVSEP_DIR = Path("/run/sshd")
PASSWORD_FILE = Path("/run/hearth-ssh-test-password")  # tmpfs: gone at reboot
KEY_USER = "hearth-ssh-key"
PASSWORD_USER = "hearth-ssh-pass"
START_TIMEOUT = 10.0


def _run(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(args, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _keygen(path: Path, comment: str) -> None:
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".pub").unlink(missing_ok=True)
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path))


def _exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def _ensure_user(user: str) -> None:
    if _exists(user):
        return
    done = subprocess.run(
        ["useradd", "-m", "-s", "/bin/bash", user], capture_output=True, text=True
    )
    if done.returncode != 0 and not _exists(user):  # another run may have just made it
        raise RuntimeError(f"useradd {user} failed: {done.stderr.strip()}")


@functools.cache
def _openssh_version() -> tuple[int, int]:
    done = subprocess.run([SSHD, "-V"], capture_output=True, text=True)
    found = re.search(r"OpenSSH_(\d+)\.(\d+)", done.stdout + done.stderr)
    return (int(found[1]), int(found[2])) if found else (0, 0)


@dataclass
class Sshd:
    """A running sshd and how to log in to it. The host key fields change with
    :meth:`restart_with_new_host_key`; the rest stays for the whole run."""

    host: str
    port: int
    host_key: str  # "ssh-ed25519 AAAA…", as in known_hosts
    host_key_fingerprint: str  # "SHA256:…", as ssh and ssh-keygen print it
    key_user: str
    private_key: str  # OpenSSH format, no passphrase
    password_user: str
    password: str
    workdir: Path = field(repr=False)
    _listener: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _orphans: set[Proc] = field(default_factory=set, repr=False)

    @property
    def running(self) -> bool:
        return self._listener is not None and self._listener.poll() is None

    def connection_processes(self) -> set[Proc]:
        """Every process of the connections (sshd's per-connection ones and the users'),
        including those of a listener killed before."""
        return descendants(self._roots())

    def log(self) -> str:
        """What sshd wrote (it logs to stderr, -e), for a test's failure message."""
        return (self.workdir / "sshd.log").read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the listener only: open connections go on, as with a real sshd."""
        if self._listener is not None and self.running:
            self._orphans |= descendants(self._roots())
            self._listener.kill()
        self._reap()

    def kill_all(self) -> None:
        """SIGKILL the listener and every process of every connection: sessions end at once."""
        kill_trees(self._roots())
        self._orphans.clear()
        self._reap()

    def restart(self) -> None:
        """Stop the listener if it runs (connections go on) and start it again on the same port
        with the same host key."""
        self._stop_listener()
        self._start()

    def restart_with_new_host_key(self) -> None:
        """As :meth:`restart`, with a new host key: a client that pinned the old one must fail."""
        self._stop_listener()
        self._make_host_key()
        self._start()

    def close(self) -> None:
        self.kill_all()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _roots(self) -> set[Proc]:
        roots = set(self._orphans)
        if self._listener is not None and (listener := proc(self._listener.pid)) is not None:
            roots.add(listener)
        return roots

    def _reap(self) -> None:
        if self._listener is not None:
            self._listener.wait(START_TIMEOUT)
            self._listener = None

    def _stop_listener(self) -> None:
        if self._listener is not None and self.running:
            self._orphans |= descendants(self._roots())
            self._listener.send_signal(signal.SIGTERM)
        self._reap()

    def _make_host_key(self) -> None:
        path = self.workdir / "host_key"
        _keygen(path, "hearth-test-sshd")
        self.host_key = " ".join(Path(f"{path}.pub").read_text().split()[:2])
        self.host_key_fingerprint = _run("ssh-keygen", "-l", "-E", "sha256", "-f", str(path))
        self.host_key_fingerprint = self.host_key_fingerprint.split()[1]

    def _write_config(self) -> Path:
        lines = [
            f"Port {self.port}",
            f"ListenAddress {self.host}",
            f"HostKey {self.workdir / 'host_key'}",
            f"PidFile {self.workdir / 'sshd.pid'}",
            # sshd checks the password itself (shadow and crypt): no PAM stack, which would
            # want pam_loginuid (refused in many containers) and pam_systemd
            "UsePAM no",
            "PasswordAuthentication yes",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            f"AuthorizedKeysFile {self.workdir / 'authorized_keys' / '%u'}",
            "StrictModes no",
            "PermitRootLogin no",
            "AcceptEnv LANG LC_* HEARTH_TEST_*",
            # a shell's first output is its prompt
            "PrintMotd no",
            "PrintLastLog no",
            "LogLevel DEBUG1",  # says when a client forwards through it (a jump host's work)
        ]
        if _openssh_version() >= (9, 8):
            # every client is 127.0.0.1: no refusals after failed logins or killed sessions
            lines.append("PerSourcePenalties no")
        config = self.workdir / "sshd_config"
        config.write_text("\n".join(lines) + "\n")
        return config

    def _start(self) -> None:
        config = self._write_config()
        with (self.workdir / "sshd.log").open("ab") as log:
            self._listener = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            if self._listener.poll() is not None or time.monotonic() > deadline:
                self.kill_all()
                raise RuntimeError(f"sshd did not start on port {self.port}:\n{self.log()}")
            time.sleep(0.01)

    def _answers(self) -> bool:
        """Whether sshd accepts a connection and sends its version line."""
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as sock:
                return sock.recv(8).startswith(b"SSH-")
        except OSError:
            return False


def _machine_password() -> str:
    """The password user's password: random, made once per boot and kept root-only, so that
    runs at once on one machine (developers' worktrees) don't reset it under each other."""
    try:
        fd = os.open(PASSWORD_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return PASSWORD_FILE.read_text().strip()
    password = secrets.token_urlsafe(18)
    _run("chpasswd", stdin=f"{PASSWORD_USER}:{password}\n")
    with os.fdopen(fd, "w") as f:
        f.write(password)
    return password


def start_sshd() -> Sshd:
    """Make the users and credentials, and start sshd on a free port of 127.0.0.1."""
    if os.geteuid() != 0:
        pytest.skip("the SSH tests run as root: they start sshd and make local users")
    for tool in (SSHD, "ssh-keygen", "useradd", "usermod", "chpasswd"):
        if shutil.which(tool) is None:
            pytest.skip(f"no {tool}: the SSH tests need Debian's openssh-server and passwd")
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    for user in (KEY_USER, PASSWORD_USER):
        _ensure_user(user)
    # useradd leaves the password "!" (locked), and without PAM sshd refuses a locked account
    # even a key; "*" is no password without the lock
    _run("usermod", "-p", "*", KEY_USER)
    password = _machine_password()

    # sshd reads a user's authorized keys as that user: the directory must be theirs to cross,
    # which pytest's temporary directories (0700) are not
    workdir = Path(tempfile.mkdtemp(prefix="hearth-sshd-"))
    workdir.chmod(0o711)
    (workdir / "authorized_keys").mkdir(mode=0o755)
    _keygen(workdir / "client_key", KEY_USER)
    authorized = workdir / "authorized_keys" / KEY_USER
    authorized.write_text((workdir / "client_key.pub").read_text())
    authorized.chmod(0o644)

    try:
        return _start_on_a_free_port(workdir, password)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def _start_on_a_free_port(workdir: Path, password: str) -> Sshd:
    # another process may take the port between free_port() and sshd's bind: try another
    for _ in range(2):
        sshd = _new_sshd(workdir, password, port=free_port())
        try:
            sshd._start()
            return sshd
        except RuntimeError:
            pass
    sshd = _new_sshd(workdir, password, port=free_port())
    sshd._start()
    return sshd


def _new_sshd(workdir: Path, password: str, port: int) -> Sshd:
    sshd = Sshd(
        host="127.0.0.1",
        port=port,
        host_key="",
        host_key_fingerprint="",
        key_user=KEY_USER,
        private_key=(workdir / "client_key").read_text(),
        password_user=PASSWORD_USER,
        password=password,
        workdir=workdir,
    )
    sshd._make_host_key()
    return sshd


@pytest.fixture(scope="session")
def sshd_server() -> Iterator[Sshd]:
    """One sshd for the whole run (starting it makes users and keys)."""
    sshd = start_sshd()
    yield sshd
    sshd.close()


@pytest.fixture
def sshd(sshd_server: Sshd) -> Sshd:
    """The run's sshd, listening: started again if a test before killed it."""
    if not sshd_server.running:
        sshd_server.restart()
    return sshd_server
