"""Attacks from inside sessions (SPEC §7): alice's shell and kernel try to reach the server, bob's
sessions and the data directory. Every attempt reports what it got; the test fails if one works.

The test server runs inside this test process, so "the server's pid" is ``os.getpid()``.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.client.helpers import poll
from tests.conftest import ALICE, BOB, RunningServer

pytestmark = pytest.mark.skipif(
    not Path("/usr/bin/bwrap").exists() and os.environ.get("CI") != "true",
    reason="needs bubblewrap (apt-get install bubblewrap)",
)

H_ALICE = {"Authorization": f"Bearer {ALICE}"}
H_BOB = {"Authorization": f"Bearer {BOB}"}

# Each attempt is one line: a name, then a shell command whose success means the attack worked.
SHELL_ATTEMPTS = """\
read-store        cat {data}/hearth.sqlite3
read-token        cat {data}/token
read-conn-key     cat {data}/connections.key
connect-handover  python3 -c "import socket; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).connect('{data}/handover.sock')"
read-host-log     cat {data}/host.log
connect-host      python3 -c "import socket; socket.socket(socket.AF_UNIX).connect('{data}/host.sock')"
list-data-dir     ls {data}/homes/bob {data}/sessions/bob {data}/kernels/runtime/{bob_runtime}
read-bob-home     cat {data}/homes/bob/secret.txt
read-bob-workdir  cat {data}/sessions/bob/bk/secret.txt
read-bob-kernel   cat {data}/kernels/runtime/{bob_runtime}/kernel.json
dotdot-escape     cat {home}/../bob/secret.txt
proc-root-escape  cat /proc/self/root{data}/homes/bob/secret.txt
proc-1-root       cat /proc/1/root{data}/hearth.sqlite3
server-environ    cat /proc/{server}/environ
server-cmdline    cat /proc/{server}/cmdline
bob-kernel-proc   cat /proc/{bob_kernel}/environ
signal-server     kill -0 {server}
signal-bob-kernel kill -0 {bob_kernel}
write-system      touch /usr/pwned
write-etc         touch /etc/pwned
write-data-dir    touch {data}/pwned
see-server-env    env | grep -q HEARTH_
is-root           test "$(id -u)" = 0
unshare-user      unshare -U true
unshare-user-root unshare -Ur true
userns-mount      unshare -Urm mount -t tmpfs none /tmp
mount-tmpfs       mount -t tmpfs none /tmp
tiocsti           python3 -c "import fcntl, termios; fcntl.ioctl(0, termios.TIOCSTI, b'x')"
unfiltered        ! grep -q '^Seccomp:[[:space:]]*2' /proc/self/status
"""


def attempts_script(attempts: str, **where: Any) -> str:
    lines = []
    for line in attempts.format(**where).splitlines():
        name, command = line.split(maxsplit=1)
        lines.append(
            f"if ({command}) >/dev/null 2>&1; then echo 'ATTACK {name} worked'; "
            f"else echo 'ATTACK {name} blocked'; fi"
        )
    return "\n".join(lines) + "\necho ATTACKS-DONE\n"


def terminal_output(server: RunningServer, headers: dict[str, str], id: str) -> str:
    r = httpx.get(f"{server.url}/api/v1/terminal/sessions/{id}/history", headers=headers)
    r.raise_for_status()
    return "".join(e["data"] for e in r.json() if e["type"] == "output")


def execute(server: RunningServer, headers: dict[str, str], sid: str, code: str) -> str:
    r = httpx.post(
        f"{server.url}/api/v1/sessions/{sid}/execute",
        json={"code": code},
        headers=headers,
        timeout=60,
    )
    r.raise_for_status()
    answer = r.json()
    assert answer["status"] == "ok", answer
    return "".join(o.get("text", "") for o in answer["outputs"] if o["output_type"] == "stream")


@pytest.fixture
def victim(server: RunningServer) -> dict[str, Any]:
    """Bob's things: a file in his home, a kernel with an uploaded file, a running shell."""
    data = server.settings.data_dir.resolve()
    r = httpx.post(
        f"{server.url}/api/v1/terminal/sessions",
        json={"id": "bt", "command": ["/bin/sh", "-c", "echo bob-secret > ~/secret.txt; exec cat"]},
        headers=H_BOB,
    )
    assert r.status_code == 201, r.text
    poll(lambda: (data / "homes/bob/secret.txt").exists(), what="bob's file")
    r = httpx.post(
        f"{server.url}/api/v1/sessions", json={"session_id": "bk"}, headers=H_BOB, timeout=60
    )
    assert r.status_code == 201, r.text
    httpx.put(
        f"{server.url}/api/v1/sessions/bk/files/secret.txt", content=b"bob-secret", headers=H_BOB
    ).raise_for_status()
    bob_kernel = int(execute(server, H_BOB, "bk", "import os; print(os.getpid())").strip())
    del bob_kernel  # the pid inside bob's sandbox; the server's view is what an attacker needs
    runtimes = list((data / "kernels/runtime").iterdir())
    assert len(runtimes) == 1
    pids = server.call(lambda: [s._kernel.pid for s in _kernels(server)])
    return {"data": data, "bob_runtime": runtimes[0].name, "bob_kernel": pids[0]}


def _kernels(server: RunningServer) -> list[Any]:
    pool = server.core.kernels.pool
    return [s for s in pool._sessions.values() if s._kernel is not None]


def test_attacks_from_a_shell_fail(server: RunningServer, victim: dict[str, Any]) -> None:
    home = victim["data"] / "homes" / "alice"
    script = attempts_script(SHELL_ATTEMPTS, server=os.getpid(), home=home, **victim)
    r = httpx.post(
        f"{server.url}/api/v1/terminal/sessions",
        json={"id": "at", "command": ["/bin/sh", "-c", script]},
        headers=H_ALICE,
    )
    assert r.status_code == 201, r.text
    output = poll(
        lambda: (o := terminal_output(server, H_ALICE, "at")) and "ATTACKS-DONE" in o and o,
        what="the attempts",
    )
    worked = [line for line in output.splitlines() if line.endswith("worked")]
    assert worked == []
    assert output.count("blocked") == len(SHELL_ATTEMPTS.splitlines())


KERNEL_ATTEMPTS = """
import json, os, signal
data, server, bob_kernel = "{data}", {server}, {bob_kernel}
got = {{}}
def attempt(name, fn):
    try:
        fn()
        got[name] = "worked"
    except Exception as exc:
        got[name] = type(exc).__name__
attempt("read-store", lambda: open(data + "/hearth.sqlite3", "rb").read())
attempt("read-bob-workdir", lambda: open(data + "/sessions/bob/bk/secret.txt").read())
attempt("read-bob-home", lambda: open(data + "/homes/bob/secret.txt").read())
attempt("read-bob-kernel", lambda: open(data + "/kernels/runtime/{bob_runtime}/kernel.json").read())
attempt("dotdot", lambda: open(os.getcwd() + "/../../sessions/bob/bk/secret.txt").read())
attempt("proc-self-root", lambda: open("/proc/self/root" + data + "/hearth.sqlite3", "rb").read())
attempt("server-environ", lambda: open(f"/proc/{{server}}/environ", "rb").read())
attempt("signal-server", lambda: os.kill(server, 0))
attempt("signal-bob-kernel", lambda: os.kill(bob_kernel, 0))
attempt("write-usr", lambda: open("/usr/pwned", "w"))
def foreign():
    seen = []
    for folder, dirs, files in os.walk(data):
        seen += [os.path.join(folder, n) for n in files + dirs]
    bad = [p for p in seen if "bob" in p or p.endswith(".sqlite3") or p.endswith("/token")]
    if bad:
        return
    raise PermissionError("nothing foreign")
attempt("walk-data-dir", foreign)
attempt("hearth-env", lambda: [k for k in os.environ if k.startswith("HEARTH_")][0])
attempt("root", lambda: 1 / (os.getuid() == 0))
print(json.dumps(got))
"""


def test_attacks_from_a_kernel_fail(server: RunningServer, victim: dict[str, Any]) -> None:
    r = httpx.post(
        f"{server.url}/api/v1/sessions", json={"session_id": "ak"}, headers=H_ALICE, timeout=60
    )
    assert r.status_code == 201, r.text
    code = KERNEL_ATTEMPTS.format(server=os.getpid(), **victim)
    got = json.loads(execute(server, H_ALICE, "ak", code))
    assert {name: how for name, how in got.items() if how == "worked"} == {}
    assert len(got) == 13


def test_a_symlink_out_of_a_working_dir_is_not_followed_by_the_files_api(
    server: RunningServer, victim: dict[str, Any]
) -> None:
    httpx.post(
        f"{server.url}/api/v1/sessions", json={"session_id": "ak"}, headers=H_ALICE, timeout=60
    ).raise_for_status()
    target = victim["data"] / "sessions/bob/bk/secret.txt"
    execute(server, H_ALICE, "ak", f"import os; os.symlink({str(target)!r}, 'link')")
    r = httpx.get(f"{server.url}/api/v1/sessions/ak/files/link", headers=H_ALICE)
    assert r.status_code == 400, r.text
    assert b"bob-secret" not in r.content


def test_pkill_from_a_shell_ends_only_its_own_sandbox(
    server: RunningServer, victim: dict[str, Any]
) -> None:
    script = "pkill -9 -f hearth; pkill -9 python; pkill -9 cat; pkill -9 -u 0; echo PKILLED"
    r = httpx.post(
        f"{server.url}/api/v1/terminal/sessions",
        json={"id": "pk", "command": ["/bin/sh", "-c", shlex.quote(script)[1:-1]]},
        headers=H_ALICE,
    )
    assert r.status_code == 201, r.text
    poll(
        lambda: (
            not httpx.get(f"{server.url}/api/v1/terminal/sessions/pk", headers=H_ALICE).json()[
                "alive"
            ]
        ),
        what="alice's shell to finish",
    )
    assert httpx.get(f"{server.url}/healthz").json()["status"] == "ok"
    assert execute(server, H_BOB, "bk", "print(6 * 7)").strip() == "42"
    bob = httpx.get(f"{server.url}/api/v1/terminal/sessions/bt", headers=H_BOB).json()
    assert bob["alive"], bob


def test_a_sessions_env_reaches_no_helper_that_runs_as_root(server: RunningServer) -> None:
    """PATH (or LD_PRELOAD) given at create is the session's: the sandbox's helpers, run as
    root before the uid is dropped, must not look up programs in it."""
    data = server.settings.data_dir.resolve()
    home = data / "homes" / "alice"
    r = httpx.post(
        f"{server.url}/api/v1/terminal/sessions",
        json={"id": "prep", "command": ["/bin/sh", "-c", "mkdir -p ~/bin; exec cat"]},
        headers=H_ALICE,
    )
    assert r.status_code == 201, r.text
    poll(lambda: (home / "bin").is_dir(), what="alice's bin")
    for helper in ("bwrap", "setsid", "setpriv", "prlimit", "env", "sh"):
        fake = home / "bin" / helper
        fake.write_text(f'#!/bin/sh\ntouch {data}/pwned-{helper}\nexec /usr/bin/{helper} "$@"\n')
        fake.chmod(0o755)
    r = httpx.post(
        f"{server.url}/api/v1/terminal/sessions",
        json={
            "id": "evil",
            "command": ["/bin/sh", "-c", "echo PATH=$PATH; echo DONE"],
            "env": {"PATH": f"{home}/bin:/usr/bin:/bin"},
        },
        headers=H_ALICE,
    )
    assert r.status_code == 201, r.text
    output = poll(
        lambda: (o := terminal_output(server, H_ALICE, "evil")) and "DONE" in o and o,
        what="the shell",
    )
    assert f"PATH={home}/bin:/usr/bin:/bin" in output  # the session has its PATH
    assert sorted(p.name for p in data.glob("pwned-*")) == []


EAVESDROP = """
import json, time, zmq
loopback = {"/proc/net/tcp": "0100007F", "/proc/net/tcp6": "00000000000000000000000001000000"}
ports = []
for table, address in loopback.items():
    for line in open(table).read().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if state == "0A" and local.split(":")[0] == address:  # listening
            host = "[::1]" if table.endswith("6") else "127.0.0.1"
            ports.append(f"tcp://{host}:{int(local.split(':')[1], 16)}")
context = zmq.Context()
poller = zmq.Poller()
for address in ports:
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.IPV6, 1)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(address)
    poller.register(sub, zmq.POLLIN)
heard = 0
end = time.monotonic() + 4
while time.monotonic() < end:
    for sub, _ in poller.poll(100):
        heard += b"".join(sub.recv_multipart()).count(marker)
context.destroy(linger=0)
print(json.dumps({"ports": len(ports), "heard": heard}))
"""


def test_a_kernel_hears_nothing_of_another_kernels_channels(server: RunningServer) -> None:
    """SPEC §7.1: alice's kernel subscribes to every loopback TCP port while bob's kernel prints;
    a kernel's channels are Unix sockets in its own runtime directory, so she hears nothing."""
    marker = f"BOB-MARKER-{secrets.token_hex(4)}"
    for headers, sid in ((H_BOB, "bk"), (H_ALICE, "ak")):
        r = httpx.post(
            f"{server.url}/api/v1/sessions", json={"session_id": sid}, headers=headers, timeout=60
        )
        assert r.status_code == 201, r.text
    talking = threading.Thread(
        target=execute,
        args=(
            server,
            H_BOB,
            "bk",
            f"import time\nfor i in range(300):\n"
            f"    print({marker!r}, i, flush=True); time.sleep(0.03)",
        ),
    )
    talking.start()
    try:
        poll(
            lambda: (
                httpx.get(f"{server.url}/api/v1/sessions/bk", headers=H_BOB).json()[
                    "execution_state"
                ]
                == "busy"
            ),
            what="bob's kernel to talk",
        )
        got = json.loads(
            execute(server, H_ALICE, "ak", f"marker = {marker.encode()!r}\n" + EAVESDROP)
        )
    finally:
        talking.join(timeout=60)
    assert got["ports"] >= 1  # the server's own port at least: the probe ran
    assert got["heard"] == 0, got
