"""Hearth run as a plain user (SPEC §7): sessions get a user namespace instead of a uid of their
own, limits fall back to rlimits (a plain user can't write cgroups here) and say so, and the
attacks from a shell still fail: the store, the server's process, another user's home.

The server is a real ``hearth serve`` started through ``setpriv`` as ``nobody`` (uid 65534),
so this needs root to start it; as a plain user the whole suite already runs this way.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import PIPE
from typing import Any

import httpx
import pytest

from tests.client.helpers import poll
from tests.conftest import ALICE, BOB, TOKENS
from tests.sandbox.test_attacks import attempts_script

NOBODY = 65534
LOW_NOFILE = 512

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="starts the server as another user: needs root"),
    pytest.mark.skipif(
        not Path("/usr/bin/bwrap").exists() and os.environ.get("CI") != "true",
        reason="needs bubblewrap (apt-get install bubblewrap)",
    ),
]

ATTEMPTS = """\
read-store        cat {data}/hearth.sqlite3
read-conn-key     cat {data}/connections.key
connect-handover  python3 -c "import socket; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).connect('{data}/handover.sock')"
list-bob-home     ls {data}/homes/bob
read-bob-home     cat {data}/homes/bob/secret.txt
dotdot-escape     cat ~/../bob/secret.txt
proc-root-escape  cat /proc/self/root{data}/homes/bob/secret.txt
server-environ    cat /proc/{server}/environ
signal-server     kill -0 {server}
write-system      touch /usr/pwned
see-server-env    env | grep -q HEARTH_
nested-userns     unshare -Ur true
unfiltered        ! grep -q '^Seccomp:[[:space:]]*2' /proc/self/status
"""
# Writing at the data dir's path succeeds in a user namespace: bwrap made that directory in the
# sandbox's own root (owned by the session's mapped uid); the real data dir is checked instead.
WRITE = "touch {data}/pwned {data}/homes/bob/pwned 2>/dev/null; "


class Plain:
    """A ``hearth serve`` of uid 65534 on 127.0.0.1."""

    def __init__(self, root: Path, port: int, proc: subprocess.Popen[bytes]) -> None:
        self.data = root / "data"
        self.url = f"http://127.0.0.1:{port}"
        self.proc = proc
        self.log = root / "server.log"

    def post(self, path: str, token: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(
            self.url + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def output(self, token: str, id: str) -> str:
        r = httpx.get(
            f"{self.url}/api/v1/terminal/sessions/{id}/history",
            headers={"Authorization": f"Bearer {token}"},
        )
        r.raise_for_status()
        return "".join(e["data"] for e in r.json() if e["type"] == "output")


def _nobody_can_run_hearth(hearth: Path) -> bool:
    """Whether uid 65534 can read this checkout and its Python (a clone under a 0700 home or
    `mktemp -d` can't be: then the server can't start as that user at all)."""
    argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    # twice: the server starts its session host with the same Python, and a capability that
    # let setpriv's own exec through a 0700 directory is gone by the second
    again = f"import subprocess, sys; sys.exit(subprocess.call([{sys.executable!r}, '-c', 'import hearth']))"
    probe = subprocess.run([*argv, sys.executable, "-c", again], capture_output=True, check=False)
    return probe.returncode == 0 and os.access(hearth, os.R_OK)


@dataclass
class Place:
    """Where a plain user's server runs: a directory others can read, its data directory
    owned by uid 65534, and how to start ``hearth`` there as that user."""

    root: Path
    hearth: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.data),
            "HEARTH_TOKENS": json.dumps(TOKENS),
            "HEARTH_SESSION_POOL_SIZE": "0",
            "HEARTH_SESSION_PIDS_LIMIT": "64",
            **extra,
        }

    def argv(self, *args: str) -> list[str]:
        setpriv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        return [*setpriv, str(self.hearth), *args]


@pytest.fixture
def place() -> Iterator[Place]:
    hearth = Path(sys.executable).with_name("hearth")
    if not _nobody_can_run_hearth(hearth):
        why = (
            "uid 65534 can't read this checkout or its Python: clone it where others can read "
            "it (not under a 0700 directory), with a Python others can read, to run the "
            "plain-user tests"
        )
        if os.environ.get("CI") == "true":  # .ci/run sees to it: a skip there would hide them
            pytest.fail(why)
        pytest.skip(why)
    root = Path(tempfile.mkdtemp(prefix="hearth-plain-"))  # pytest's tmp is root's, 0700
    root.chmod(0o755)
    (root / "data").mkdir()
    os.chown(root / "data", NOBODY, NOBODY)
    try:
        yield Place(root, hearth)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def plain(place: Place) -> Iterator[Plain]:
    with plain_server(place, pool=0) as server:
        yield server


@contextlib.contextmanager
def plain_server(place: Place, pool: int) -> Iterator[Plain]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # several users and only rlimits here (no delegated cgroup): accepted, as it must be said
    env = place.env(HEARTH_SESSION_LIMITS="rlimit", HEARTH_SESSION_POOL_SIZE=str(pool))
    serve = place.argv("serve", "--host", "127.0.0.1", "--port", str(port))
    serve += ["--data-dir", str(place.data)]
    # under a desktop's usual soft limit of open files, which the server raises for itself
    low = ["prlimit", f"--nofile={LOW_NOFILE}:", "--"]
    with open(place.root / "server.log", "wb") as log:
        proc = subprocess.Popen([*low, *serve], env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Plain(place.root, port, proc)

    def healthy() -> bool:
        assert proc.poll() is None, server.log.read_text()
        try:
            return httpx.get(server.url + "/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        poll(healthy, timeout=30, what="the plain user's server")
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        # the session host it started outlives it: end it, and its sessions, as its user
        shutdown = place.argv("shutdown", "--data-dir", str(place.data))
        subprocess.run(shutdown, env=env, capture_output=True, timeout=90, check=False)


def test_several_users_with_only_rlimits_refuse_to_start_naming_the_fixes(place: Place) -> None:
    """SPEC §7.1: a plain user's server for several users, with no delegated cgroup, would hold
    their sessions to per-process rlimits only; it refuses to start unless told to accept it."""
    serve = place.argv("serve", "--port", "0", "--data-dir", str(place.data))
    try:
        with subprocess.Popen(serve, env=place.env(), stdout=PIPE, stderr=PIPE, text=True) as proc:
            assert proc.stdout is not None
            said = proc.stdout.readline()  # its URL once it serves; nothing once it has exited
            if "serving" in said:
                proc.kill()
            _, err = proc.communicate(timeout=60)
    finally:  # a host it started, if it did
        shutdown = place.argv("shutdown", "--data-dir", str(place.data))
        subprocess.run(shutdown, env=place.env(), capture_output=True, timeout=90, check=False)
    assert "serving" not in said, f"it started: {said}"
    assert proc.returncode != 0, err
    assert "Delegate=yes" in err, err  # a delegated cgroup v2,
    assert "as root" in err, err  # root,
    assert 'session_limits = "rlimit"' in err, err  # or accept the rlimits
    assert "HEARTH_SESSION_LIMITS=rlimit" in err, err
    assert "Traceback" not in err


def test_a_plain_users_server_sandboxes_in_a_user_namespace_with_rlimits(plain: Plain) -> None:
    health = httpx.get(plain.url + "/healthz").json()
    assert health.pop("disk") in ("ok", "low", "full")  # the machine's, not the server's
    assert health == {
        "status": "ok",
        "sandbox": "bubblewrap",
        "limits": "rlimit",
        "seccomp": "on",
        # no btrfs with quotas, and only root may mount one: no disk limit (said in the log)
        "disk_limit": "none",
    }
    assert "rlimit" in plain.log.read_text()  # said at start-up, with the reason
    assert "no disk limit" in plain.log.read_text()

    r = plain.post(
        "/api/v1/terminal/sessions",
        BOB,
        {"id": "bt", "command": ["/bin/sh", "-c", "echo bob-secret > ~/secret.txt; exec cat"]},
    )
    assert r.status_code == 201, r.text
    poll(lambda: (plain.data / "homes/bob/secret.txt").exists(), what="bob's file")

    script = WRITE.format(data=plain.data)
    script += attempts_script(ATTEMPTS, data=plain.data, server=plain.proc.pid)
    script += "echo NPROC $(awk '/Max processes/ {print $3}' /proc/self/limits)\n"
    script += "echo NOFILE $(awk '/Max open files/ {print $4, $5}' /proc/self/limits)\n"
    r = plain.post(
        "/api/v1/terminal/sessions", ALICE, {"id": "at", "command": ["/bin/sh", "-c", script]}
    )
    assert r.status_code == 201, r.text
    output = poll(
        lambda: (o := plain.output(ALICE, "at")) and "ATTACKS-DONE" in o and o,
        what="the attempts",
    )
    assert [line for line in output.splitlines() if line.endswith("worked")] == [], output
    assert output.count("blocked") == len(ATTEMPTS.splitlines())
    assert not (plain.data / "pwned").exists()
    assert not (plain.data / "homes/bob/pwned").exists()
    poll(lambda: "NPROC" in plain.output(ALICE, "at"), what="the limits seen inside")
    assert "NPROC 64" in plain.output(ALICE, "at")  # the rlimit is in force inside
    # the server raised its own open-files limit; the session has session_nofile_limit's
    assert "NOFILE 4096 4096\r" in plain.output(ALICE, "at")
    limits = Path(f"/proc/{plain.proc.pid}/limits").read_text().splitlines()
    assert next(int(line.split()[3]) for line in limits if "open files" in line) > LOW_NOFILE
    # the screen model runs too, in a user namespace of its own (SPEC §9)
    screen = httpx.get(
        f"{plain.url}/api/v1/terminal/sessions/at/screen",
        headers={"Authorization": f"Bearer {ALICE}"},
    )
    assert screen.status_code == 200, screen.text
    assert any("NPROC" in line for line in screen.json()["lines"])

    # bob's session lived through all of it
    r = httpx.get(
        f"{plain.url}/api/v1/terminal/sessions/bt", headers={"Authorization": f"Bearer {BOB}"}
    )
    assert r.status_code == 200 and r.json()["alive"] is True


def test_a_fork_bomb_under_rlimits_stops_at_its_limit_and_others_still_start(plain: Plain) -> None:
    # The subshell dies at its first failed fork; its sleeps stay, and so does the session. Only
    # builtins after that: a fork would fail too.
    bomb = (
        "(i=0; while [ $i -lt 200 ]; do sleep 60 & i=$((i+1)); echo $i > ~/n; done) 2>/dev/null;"
        " read n < ~/n; echo BOMBED $n; exec sleep 60"
    )
    r = plain.post(
        "/api/v1/terminal/sessions", ALICE, {"id": "fb", "command": ["/bin/sh", "-c", bomb]}
    )
    assert r.status_code == 201, r.text
    output = poll(
        lambda: (o := plain.output(ALICE, "fb")) and "BOMBED" in o and o,
        what="the bomb to hit its limit",
    )
    started = int(output.split("BOMBED")[1].split()[0])
    assert 0 < started < 64  # session_pids_limit, counted in this sandbox's user namespace

    # Bob's shell starts: the limit was set inside alice's namespaces, so her processes count
    # against her sandbox only (set before bwrap, every sandbox of the server's uid shared it).
    r = plain.post(
        "/api/v1/terminal/sessions",
        BOB,
        {"id": "be", "command": ["/bin/sh", "-c", "echo BOB-OK; exec cat"]},
    )
    assert r.status_code == 201, r.text
    poll(lambda: "BOB-OK" in plain.output(BOB, "be"), what="bob's new shell")


def test_a_jupyter_client_of_a_plain_users_server_runs_sandboxed(plain: Plain) -> None:
    """The Jupyter kernel API (SPEC §10) as a plain user serves it: a kernel from
    ``POST /api/kernels``, driven over its channels websocket, runs under the rlimits, and its
    code can read neither the store nor another user's home."""
    from jupyter_client.session import Session
    from jupyter_server.services.kernels.connection.base import (
        deserialize_msg_from_ws_v1,
        serialize_msg_to_ws_v1,
    )
    from websockets.sync.client import connect

    r = plain.post("/api/v1/terminal/sessions", BOB, {"id": "bk", "command": ["/bin/cat"]})
    assert r.status_code == 201, r.text
    started = plain.post("/api/kernels", ALICE, {"name": "python3"})
    assert started.status_code == 201, started.text
    kid = started.json()["id"]
    code = (
        "import resource\n"
        "print('NPROC', resource.getrlimit(resource.RLIMIT_NPROC)[0])\n"
        f"for path in ({str(plain.data / 'hearth.sqlite3')!r}, {str(plain.data / 'homes/bob')!r}):\n"
        "    try:\n"
        "        open(path, 'rb').read(1) if path.endswith('3') else __import__('os').listdir(path)\n"
        "        print(path, 'worked')\n"
        "    except OSError:\n"
        "        print(path, 'blocked')\n"
    )
    session = Session()
    msg = session.msg(
        "execute_request",
        {"code": code, "silent": False, "store_history": False, "user_expressions": {}},
    )
    ws_url = plain.url.replace("http://", "ws://")
    url = f"{ws_url}/api/kernels/{kid}/channels?token={ALICE}"
    text = []
    with connect(url, subprotocols=["v1.kernel.websocket.jupyter.org"]) as ws:  # type: ignore[list-item]
        ws.send(serialize_msg_to_ws_v1(msg, "shell", session.pack))
        while True:
            _, parts = deserialize_msg_from_ws_v1(ws.recv(timeout=60))
            header, parent, content = (json.loads(parts[i]) for i in (0, 1, 3))
            if parent.get("msg_id") != msg["header"]["msg_id"]:
                continue
            if header["msg_type"] == "stream":
                text.append(content["text"])
            if header["msg_type"] == "status" and content["execution_state"] == "idle":
                break  # IOPub is in order: its output is all in
    output = "".join(text)
    assert "NPROC 64" in output, output  # the session's rlimit, inside the kernel
    assert output.count("blocked") == 2 and "worked" not in output, output


def test_a_plain_users_sessions_share_its_uids_inotify_instances(plain: Plain) -> None:
    """What the README's security model says of a plain user's server, shown: the kernel counts
    inotify instances per uid, charged up through every user namespace to the machine's own, so
    a user namespace per sandbox does not separate them: one session that takes them all leaves
    none to another user's session (fs.inotify.max_user_instances is the machine's setting)."""
    most = int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    if most > 1024:
        pytest.skip(f"max_user_instances is {most} here: not taking them all")
    inotify = "import ctypes, os, sys; libc = ctypes.CDLL(None, use_errno=True)\n"
    take = inotify + (
        "n = 0\n"
        "while libc.inotify_init() >= 0: n += 1\n"
        "print('HELD', n, os.strerror(ctypes.get_errno()), flush=True); sys.stdin.read()\n"
    )
    one = inotify + (
        "fd = libc.inotify_init()\n"
        "print('BOB', 'got one' if fd >= 0 else os.strerror(ctypes.get_errno()), flush=True)\n"
        "sys.stdin.read()\n"
    )
    for token, id, code in ((ALICE, "takes", take), (BOB, "one", one)):
        r = plain.post(
            "/api/v1/terminal/sessions",
            token,
            {"id": id, "command": ["/usr/bin/python3", "-c", code]},
        )
        assert r.status_code == 201, r.text
        said = poll(lambda t=token, i=id: (o := plain.output(t, i)) and "\n" in o and o, what=id)
    held = plain.output(ALICE, "takes")
    assert "HELD" in held and "Too many open files" in held, held
    assert "BOB Too many open files" in said, said  # alice's session took bob's share too
    headers = {"Authorization": f"Bearer {ALICE}"}
    httpx.delete(f"{plain.url}/api/v1/terminal/sessions/takes", headers=headers).raise_for_status()


def test_a_pooled_kernel_of_a_plain_users_server_works_in_its_working_dir(place: Place) -> None:
    """As a plain user, a kernel's sandbox is in user namespaces: its working dir is moved to
    the session's path in there too (the capabilities of the namespace that owns its mounts),
    and its channels are Unix sockets that another session can't reach."""
    with plain_server(place, pool=1) as server:
        poll(
            lambda: (
                httpx.get(
                    f"{server.url}/api/v1/pool", headers={"Authorization": f"Bearer {ALICE}"}
                ).json()["ready"]
                >= 1
            ),
            timeout=60,
            what="a pooled kernel",
        )
        info = server.post("/api/v1/sessions", ALICE, {"session_id": "pk"}).json()
        assert info["from_pool"] is True, info
        r = server.post(
            "/api/v1/sessions/pk/execute",
            ALICE,
            {"code": "import os\nopen('mine.txt', 'w').write('x')\nprint(os.getcwd())"},
        )
        assert r.json()["status"] == "ok", r.text
        assert r.json()["outputs"][0]["text"].strip() == info["working_dir"]
        files = httpx.get(
            f"{server.url}/api/v1/sessions/pk/files", headers={"Authorization": f"Bearer {ALICE}"}
        ).json()
        assert [f["path"] for f in files] == ["mine.txt"]
        assert "restarting the kernel" not in server.log.read_text()  # moved, not restarted
