"""The sessions' seccomp filter (SPEC §7.1): its rules (pure), the program libseccomp makes of
them, bwrap loading it, and, from inside a real kernel session, the calls it refuses and the
work it must leave alone (a compiler, pip, threads, multiprocessing, asyncio subprocesses, Node.js
and git)."""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.config import Settings
from hearth.sandbox.sandbox import Sandbox, open_sandbox
from hearth.sandbox.seccomp import (
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWTIME,
    CLONE_NEWUSER,
    FS_IOC_FSSETXATTR,
    LOW32,
    PERSONALITIES,
    TIOCLINUX,
    TIOCSTI,
    compile_filter,
    rules,
)
from tests.conftest import ALICE, RunningServer
from tests.sandbox.test_attacks import H_ALICE, H_BOB, execute

needs_bwrap = pytest.mark.skipif(
    not Path("/usr/bin/bwrap").exists() and os.environ.get("CI") != "true",
    reason="needs bubblewrap (apt-get install bubblewrap)",
)

RULES = rules()


def refused(syscall: str, *args: int) -> int | None:
    """The errno the rules answer ``syscall(*args)`` with; None: allowed."""
    padded = [*args, *[0] * (6 - len(args))]
    for rule in RULES:
        if rule.syscall == syscall and all(padded[i] & m == v for i, m, v in rule.when):
            return rule.error
    return None


# -- the rules (pure) ---------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_personality_takes_only_dockers_values_whatever_the_high_bits(value: int) -> None:
    # the kernel reads the personality as 32 bits: only those count, either way
    expected = None if value & LOW32 in PERSONALITIES else errno.EPERM
    assert refused("personality", value) == expected


@pytest.mark.parametrize("value", [*PERSONALITIES, 0x0040000, 0x0400000, 0x0100000, 0x8000_0000])
def test_personality_values_that_matter(value: int) -> None:
    assert (refused("personality", value) is None) == (value in PERSONALITIES)


def test_namespace_flags_are_refused_in_clone_and_unshare_and_clone3_is_not_implemented() -> None:
    thread = 0x3D0F00  # glibc's pthread_create: CLONE_VM|CLONE_FS|…|CLONE_THREAD|CLONE_SETTLS…
    fork = 0x1200011  # glibc's fork: CLONE_CHILD_SETTID|CLONE_CHILD_CLEARTID|SIGCHLD
    vfork = 0x4111  # posix_spawn's fallback: CLONE_VM|CLONE_VFORK|SIGCHLD
    assert [refused("clone", f) for f in (thread, fork, vfork)] == [None, None, None]
    for flag in (CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET):
        assert refused("clone", flag | 17) == errno.EPERM
        assert refused("unshare", flag) == errno.EPERM
    assert refused("unshare", CLONE_NEWTIME) == errno.EPERM
    assert refused("clone", CLONE_NEWTIME | 17) is None  # in clone that is the exit signal
    assert refused("unshare", 0x400) is None  # CLONE_FILES: no namespace
    assert refused("clone3") == errno.ENOSYS  # glibc then falls back to clone


def test_terminal_injection_and_project_ids_are_refused_whatever_the_high_bits() -> None:
    for request in (TIOCSTI, TIOCLINUX, FS_IOC_FSSETXATTR):
        assert refused("ioctl", 0, request) == errno.EPERM
        assert refused("ioctl", 0, request | 1 << 32) == errno.EPERM
    for request in (0x5413, 0x801C581F, 0x5401):  # TIOCGWINSZ, FS_IOC_FSGETXATTR, TCGETS
        assert refused("ioctl", 0, request) is None


def test_every_rule_names_a_call_libseccomp_knows() -> None:
    import pyseccomp

    unknown = {r.syscall for r in RULES if pyseccomp.resolve_syscall(0, r.syscall) == -1}
    assert unknown == set()


def test_the_filter_compiles_to_a_bpf_program() -> None:
    bpf = compile_filter(RULES)
    assert len(bpf) % 8 == 0 and 100 < len(bpf) // 8 < 4096  # sock_filter entries; the limit


# -- the filter in force ------------------------------------------------------------------------


def settings(tmp_path: Path) -> Settings:
    no_limits = {"session_memory_limit": 0, "session_pids_limit": 0, "session_disk_limit": 0}
    return Settings(data_dir=tmp_path / "data", tokens={ALICE: "alice"}, **no_limits)


@needs_bwrap
def test_bwrap_loads_the_filter_and_leaves_no_descriptor_of_it(tmp_path: Path) -> None:
    sandbox = Sandbox(
        settings(tmp_path), bubblewrap=True, cgroups=None, seccomp=compile_filter(RULES)
    )
    assert sandbox.status()["seccomp"] == "on"
    bpf = tmp_path / "data" / "sandbox" / "seccomp.bpf"
    assert bpf.stat().st_mode & 0o077 == 0  # the server's alone
    # the screen model's launch: no cgroup, so the filter's sh stands alone before bwrap
    model = tmp_path / "model.mjs"
    model.write_text("")
    prepared = sandbox.screen_model(Path("/usr/bin/node"), model)
    script = "grep Seccomp: /proc/self/status; ls /proc/self/fd; unshare -U true || echo REFUSED"
    done = subprocess.run(
        prepared.command(["/bin/sh", "-c", script]),
        env=prepared.spawn_env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    assert lines[:2] == ["Seccomp:", "2"]
    assert lines[2:7] == ["0", "1", "2", "3", "REFUSED"]  # 3: ls's own directory


@needs_bwrap
def test_without_libseccomp_sessions_run_unfiltered_and_say_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "pyseccomp", None)  # import pyseccomp: ImportError
    with caplog.at_level(logging.WARNING, logger="hearth.sandbox"):
        sandbox = open_sandbox(settings(tmp_path))
    assert sandbox.bubblewrap
    assert sandbox.status()["seccomp"] == "off"
    said = [r for r in caplog.records if r.name == "hearth.sandbox"]
    assert [r.getMessage() for r in said] == ["no seccomp filter"]
    assert "libseccomp" in said[0].reason  # type: ignore[attr-defined]
    argv = sandbox.screen_model(Path("/usr/bin/node"), tmp_path).command(["true"])
    sandbox.close()
    assert "--seccomp" not in argv and argv[0] != "/bin/sh"


# -- from inside a kernel -----------------------------------------------------------------------

# name: (call, arguments). Without the filter most of these work, or fail for another reason
# (EFAULT, EBADF, EINVAL, ENOENT, ENOTTY: the kernel looked at the arguments); a few (a mount
# namespace, the new mount API, swap, the clock, the kernel log) fail with EPERM anyway, for want
# of a capability, which the filter answers first. User namespaces are tried in a child process
# (a process with threads, as a kernel, can't enter one anyway).
PROBES: dict[str, tuple[str, tuple[Any, ...]]] = {
    "unshare-mount": ("unshare", (CLONE_NEWNS,)),
    "clone3": ("clone3", (None, 0)),
    "setns": ("setns", (-1, 0)),
    "mount-tmpfs": ("mount", (b"none", b"/no-such-dir", b"tmpfs", 0, None)),
    "umount2": ("umount2", (b"/no-such-dir", 0)),
    "pivot_root": ("pivot_root", (b"/no-such-dir", b"/no-such-dir")),
    "open_tree": ("open_tree", (-100, b"/", 0)),
    "move_mount": ("move_mount", (-1, b"", -1, b"", 0)),
    "fsopen": ("fsopen", (b"tmpfs", 0)),
    "fsconfig": ("fsconfig", (-1, 0, None, None, 0)),
    "fsmount": ("fsmount", (-1, 0, 0)),
    "fspick": ("fspick", (-100, b"/", 0)),
    "mount_setattr": ("mount_setattr", (-1, b"", 0, None, 0)),
    "io_uring_setup": ("io_uring_setup", (1, None)),
    "io_uring_enter": ("io_uring_enter", (-1, 0, 0, 0, None, 0)),
    "io_uring_register": ("io_uring_register", (-1, 0, None, 0)),
    "add_key": ("add_key", (b"user", b"hearth-probe", b"x", 1, -2)),
    "keyctl": ("keyctl", (0, -3, 0)),  # KEYCTL_GET_KEYRING_ID of the session key ring
    "request_key": ("request_key", (b"user", b"hearth-probe", None, 0)),
    "perf_event_open": ("perf_event_open", (None, 0, -1, -1, 0)),
    "bpf": ("bpf", (0, None, 0)),
    "userfaultfd": ("userfaultfd", (1,)),  # UFFD_USER_MODE_ONLY: allowed to anyone without it
    "kexec_load": ("kexec_load", (0, 0, None, 0)),
    "init_module": ("init_module", (None, 0, b"")),
    "delete_module": ("delete_module", (b"hearth", 0)),
    "reboot": ("reboot", (0, 0, 0, None)),
    "swapoff": ("swapoff", (b"/no-such-file",)),
    "acct": ("acct", (None,)),
    "settimeofday": ("settimeofday", (None, None)),
    "clock_settime": ("clock_settime", (0, None)),
    "quotactl": ("quotactl", (0x800001, None, 0, None)),  # Q_SYNC
    "syslog": ("syslog", (10, None, 0)),  # the size of the kernel log
    "open_by_handle_at": ("open_by_handle_at", (-1, None, 0)),
    "name_to_handle_at": ("name_to_handle_at", (-100, b"/", None, None, 0)),
    "iopl": ("iopl", (3,)),
    "modify_ldt": ("modify_ldt", (0, None, 0)),
    "personality-no-aslr": ("personality", (0x0040000,)),
    "personality-high-bits": ("personality", (1 << 32 | 0x0400000,)),
    "socket-netlink-audit": ("socket", (16, 3, 9)),
}

KERNEL_PROBES = """
import ctypes, errno, json, os, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
NR = {numbers}
def call(name, *args):
    ctypes.set_errno(0)
    args = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    result = libc.syscall(ctypes.c_long(NR[name]), *args)
    return "ok" if result >= 0 else errno.errorcode[ctypes.get_errno()]
got = {{}}
for name, (syscall, args) in {probes}.items():
    if NR.get(syscall, -1) >= 0:  # modify_ldt: x86 only
        got[name] = call(syscall, *args)
with open("probe.txt", "w") as f:
    for name, request, arg in (("tiocsti", {tiocsti}, b"x"), ("tioclinux", {tioclinux}, b"x"),
                               ("tiocsti-high-bits", {tiocsti} | 1 << 32, b"x"),
                               ("fssetxattr", {fssetxattr}, bytes(28))):
        got["ioctl-" + name] = call("ioctl", f.fileno(), request, arg)
# CLONE_NEWUSER, in a child without threads; clone's own child exits at once
child = '''
import ctypes, errno, json, os
libc = ctypes.CDLL(None, use_errno=True)
def outcome(result):
    return "ok" if result >= 0 else errno.errorcode[ctypes.get_errno()]
pid = libc.syscall(ctypes.c_long({clone}), ctypes.c_long(0x10000000 | 17), None, None, None, None)
if pid == 0:
    os._exit(0)
if pid > 0:
    os.waitpid(pid, 0)
got = {{"clone-user": outcome(pid)}}
got["unshare-user"] = outcome(libc.syscall(ctypes.c_long({unshare}), ctypes.c_long(0x10000000)))
print(json.dumps(got))
'''
got.update(json.loads(subprocess.run([sys.executable, "-c", child], capture_output=True,
                                     text=True).stdout))
got["ptrace-bob-kernel"] = call("ptrace", 16, {bob_kernel}, None, None)  # PTRACE_ATTACH
print(json.dumps(got))
"""


def syscall_numbers(names: set[str]) -> dict[str, int]:
    """This machine's numbers (negative: not a call of this architecture)."""
    import pyseccomp

    return {name: pyseccomp.resolve_syscall(0, name) for name in names}


def kernel_session(server: RunningServer, sid: str, headers: dict[str, str] = H_ALICE) -> None:
    r = httpx.post(
        f"{server.url}/api/v1/sessions", json={"session_id": sid}, headers=headers, timeout=60
    )
    assert r.status_code == 201, r.text


@needs_bwrap
def test_a_kernel_can_not_reach_the_kernels_attack_surface(server: RunningServer) -> None:
    assert httpx.get(f"{server.url}/healthz").json()["seccomp"] == "on"
    kernel_session(server, "bk", H_BOB)  # someone else's kernel, to try and trace
    sessions = server.core.kernels.pool._sessions
    bob = server.call(lambda: [s._kernel.pid for s in sessions.values() if s._kernel])
    kernel_session(server, "ak")
    calls = {call for call, _ in PROBES.values()} | {"ioctl", "clone", "ptrace"}
    code = KERNEL_PROBES.format(
        numbers=syscall_numbers(calls),
        probes=PROBES,
        tiocsti=TIOCSTI,
        tioclinux=TIOCLINUX,
        fssetxattr=FS_IOC_FSSETXATTR,
        clone=syscall_numbers({"clone"})["clone"],
        unshare=syscall_numbers({"unshare"})["unshare"],
        bob_kernel=bob[0],
    )
    got = json.loads(execute(server, H_ALICE, "ak", code).splitlines()[-1])
    ioctls = ["ioctl-tiocsti", "ioctl-tioclinux", "ioctl-tiocsti-high-bits", "ioctl-fssetxattr"]
    expected = {name: "EPERM" for name in [*PROBES, *ioctls, "clone-user", "unshare-user"]}
    expected["clone3"] = "ENOSYS"  # for glibc to fall back to clone
    # ptrace is allowed (as in Docker's profile): the PID namespace hides everything outside
    expected["ptrace-bob-kernel"] = "ESRCH"
    if "modify_ldt" not in got:  # x86 only
        del expected["modify_ldt"]
    assert got == expected


KERNEL_WORK = """
import asyncio, base64, concurrent.futures, ctypes, hashlib, json, multiprocessing, os
import subprocess, sys, zipfile
def run(*argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, check=True, **kw).stdout.strip()
got = {}
got["status"] = [l.strip() for l in open("/proc/self/status") if l.startswith("Seccomp:")]
# a C program, built and run
with open("hello.c", "w") as f:
    f.write('#include <stdio.h>\\nint main(void) { puts("cc ok"); return 0; }\\n')
run("cc", "-o", "hello", "hello.c")
got["cc"] = run("./hello")
# pip installs a wheel (made here: no network, no build backend)
files = {
    "hearthprobe/__init__.py": b"VALUE = 'pip ok'\\n",
    "hearthprobe-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\\nName: hearthprobe\\nVersion: 1.0\\n",
    "hearthprobe-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\\nGenerator: hand\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
}
def digest(data):
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
record = "".join(f"{name},sha256={digest(data)},{len(data)}\\n" for name, data in files.items())
files["hearthprobe-1.0.dist-info/RECORD"] = (record + "hearthprobe-1.0.dist-info/RECORD,,\\n").encode()
wheel = "hearthprobe-1.0-py3-none-any.whl"
with zipfile.ZipFile(wheel, "w") as z:
    for name, data in files.items():
        z.writestr(name, data)
run(sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
    "--disable-pip-version-check", "--target", "site", wheel)
got["pip"] = run(sys.executable, "-c", "import hearthprobe; print(hearthprobe.VALUE)",
                 env={**os.environ, "PYTHONPATH": "site"})
# threads, processes
with concurrent.futures.ThreadPoolExecutor(4) as pool:
    got["threads"] = sum(pool.map(abs, range(-10, 0)))
with multiprocessing.Pool(2) as pool:
    got["multiprocessing"] = sum(pool.map(abs, range(-10, 0)))
proc = await asyncio.create_subprocess_exec("echo", "asyncio ok", stdout=asyncio.subprocess.PIPE)
got["asyncio"] = (await proc.communicate())[0].decode().strip()
got["node"] = run("node", "-e", "require('fs').promises.readFile('hello.c').then(b => console.log(b.length ? 'node ok' : 'node read nothing'))")
run("git", "init", "-q", "repo")
run("git", "-C", "repo", "-c", "user.name=k", "-c", "user.email=k@h", "commit", "-q", "--allow-empty", "-m", "git ok")
got["git"] = run("git", "-C", "repo", "log", "--format=%s")
# what the filter lets through on purpose: the personality query, tracing one's own child
libc = ctypes.CDLL(None, use_errno=True)
got["personality"] = hex(libc.personality(ctypes.c_ulong(0xFFFFFFFF)))
child = subprocess.Popen(["sleep", "30"])
attached = libc.ptrace(ctypes.c_long(16), ctypes.c_long(child.pid), None, None)  # PTRACE_ATTACH
os.waitpid(child.pid, 0)
libc.ptrace(ctypes.c_long(17), ctypes.c_long(child.pid), None, None)  # PTRACE_DETACH
child.kill()
child.wait()
got["ptrace-own-child"] = attached
print(json.dumps(got))
"""


@needs_bwrap
def test_what_sessions_need_still_works_under_the_filter(server: RunningServer) -> None:
    kernel_session(server, "ak")
    got = json.loads(execute(server, H_ALICE, "ak", KERNEL_WORK).splitlines()[-1])
    assert got == {
        "status": ["Seccomp:\t2"],
        "cc": "cc ok",
        "pip": "pip ok",
        "threads": 55,
        "multiprocessing": 55,
        "asyncio": "asyncio ok",
        "node": "node ok",
        "git": "git ok",
        "personality": "0x0",
        "ptrace-own-child": 0,
    }


I386_PROBE = r"""
import subprocess
with open("i386.c", "w") as f:
    f.write('''
#include <stdio.h>
static long call32(long nr, long a, long b) {  /* the i386 system call ABI, from x86-64 */
    long ret;
    __asm__ volatile ("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b) : "memory");
    return ret;
}
int main(void) {
    printf("unshare %ld keyctl %ld\\n", call32(310, 0x10000000, 0), call32(288, 0, -3));
    return 0;
}
''')
subprocess.run(["cc", "-o", "i386", "i386.c"], check=True)
done = subprocess.run(["./i386"], capture_output=True, text=True)
print(done.returncode, done.stdout.strip())
"""


@needs_bwrap
@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the i386 ABI of x86-64")
def test_a_32_bit_call_is_refused_alike_not_killed(server: RunningServer) -> None:
    kernel_session(server, "ak")
    got = execute(server, H_ALICE, "ak", I386_PROBE).strip()
    assert got == f"0 unshare -{errno.EPERM} keyctl -{errno.EPERM}"
