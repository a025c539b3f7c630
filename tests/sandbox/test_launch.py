"""The launch description and its command line (pure)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hearth.sandbox.launch import HELPER_ENV, SECCOMP_FD, Bind, Launch, Limits, command


def launch(**changes: object) -> Launch:
    values: dict[str, object] = {
        "argv": ["/bin/bash", "-l"],
        "env": {"HOME": "/data/homes/alice"},
        "cwd": "/data/homes/alice",
        "system": [Bind("/usr"), Bind("/opt/py/3.11")],
        "links": {"/bin": "usr/bin"},
        "binds": [Bind("/data/homes/alice", writable=True)],
    }
    values.update(changes)
    return Launch(**values)  # type: ignore[arg-type]


def pairs(argv: list[str], flag: str) -> list[tuple[str, ...]]:
    """Every occurrence of ``flag`` with its operands (bwrap's flags take 1 or 2)."""
    width = {"--bind": 2, "--ro-bind": 2, "--ro-bind-try": 2, "--symlink": 2}.get(flag, 1)
    return [tuple(argv[i + 1 : i + 1 + width]) for i, a in enumerate(argv) if a == flag]


def test_the_session_program_runs_last_after_bwrap_with_its_namespaces() -> None:
    argv = command(launch())
    assert argv[0] == "bwrap"
    assert argv[-2:] == ["/bin/bash", "-l"]
    for flag in ("--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent"):
        assert flag in argv
    assert "--unshare-net" not in argv and "--unshare-user" not in argv
    assert pairs(argv, "--chdir") == [("/data/homes/alice",)]


def test_system_paths_are_read_only_and_only_the_own_directory_is_writable() -> None:
    argv = command(launch())
    assert set(pairs(argv, "--ro-bind-try")) == {("/usr", "/usr"), ("/opt/py/3.11", "/opt/py/3.11")}
    assert pairs(argv, "--bind") == [("/data/homes/alice", "/data/homes/alice")]
    assert pairs(argv, "--symlink") == [("usr/bin", "/bin")]
    assert ("1777",) in pairs(argv, "--perms")  # /tmp: private, writable by the session


def test_dev_shm_is_the_sandboxs_own_and_open_to_its_uid() -> None:
    # POSIX semaphores (multiprocessing's locks) live there: bwrap's --dev makes it root's, 0755
    argv = command(launch(uid=200001))
    shm = argv.index("/dev/shm")
    assert argv[shm - 3 : shm] == ["--perms", "1777", "--tmpfs"]
    assert argv.index("--dev") < shm


def test_missing_parents_are_made_traversable_but_not_inside_system_paths() -> None:
    argv = command(launch(binds=[Bind("/tmp/x/data/homes/alice", writable=True)]))
    made = [d for (d,) in pairs(argv, "--dir")]
    # /opt exists (a parent of a system bind is made before it), /tmp is a mount point
    assert made == ["/opt", "/opt/py", "/tmp/x", "/tmp/x/data", "/tmp/x/data/homes"]
    assert argv.index("--tmpfs") < argv.index("/tmp/x")


def test_a_hidden_data_dir_is_covered_before_the_session_binds_go_in() -> None:
    argv = command(
        launch(
            system=[Bind("/opt")],
            hide=["/opt/hearth"],
            mask=["/etc/hearth.toml"],
            binds=[Bind("/opt/hearth/homes/alice", writable=True)],
        )
    )
    tmpfs = argv.index("/opt/hearth")
    assert argv[tmpfs - 1] == "--tmpfs"
    assert tmpfs < argv.index("--bind")
    assert ("/dev/null", "/etc/hearth.toml") in pairs(argv, "--ro-bind")


def test_root_drops_to_the_session_uid_inside_with_no_capabilities() -> None:
    argv = command(launch(uid=200001, terminal=True))
    inside = argv[argv.index("--", argv.index("--chdir")) + 1 :]
    assert inside[:2] == ["setsid", "--ctty"]
    assert inside[2] == "setpriv"
    assert "--reuid=200001" in inside and "--regid=200001" in inside
    assert "--bounding-set=-all" in inside and "--no-new-privs" in inside
    assert inside[-2:] == ["/bin/bash", "-l"]


def test_a_plain_user_gets_a_user_namespace_and_network_none_its_own_loopback() -> None:
    argv = command(launch(user_namespace=True, network="none"))
    assert "--unshare-user" in argv and "--unshare-net" in argv
    assert "setpriv" not in argv


def test_the_cgroups_are_entered_before_bwrap_starts_anything() -> None:
    procs = ["/cg/memory/hearth-x/t-a/cgroup.procs", "/cg/pids/hearth-x/t-a/cgroup.procs"]
    argv = command(launch(cgroup_procs=procs))
    assert argv[:2] == ["/bin/sh", "-c"]
    assert argv[4:7] == [*procs, "--"]
    assert argv[7] == "bwrap"


FILTER = "/data/sandbox/seccomp.bpf"


def test_the_seccomp_filter_is_opened_for_bwrap_before_it_starts() -> None:
    argv = command(launch(seccomp=FILTER))
    assert argv[:2] == ["/bin/sh", "-c"]
    assert argv[2].startswith(f'exec {SECCOMP_FD}<"$1" ')
    assert argv[3:7] == ["sh", FILTER, "--", "bwrap"]
    assert pairs(argv, "--seccomp") == [(str(SECCOMP_FD),)]
    assert argv.index("--seccomp") < argv.index("--chdir")
    # with cgroups, the same sh opens the filter and enters them
    procs = ["/cg/memory/hearth-x/t-a/cgroup.procs", "/cg/pids/hearth-x/t-a/cgroup.procs"]
    argv = command(launch(seccomp=FILTER, cgroup_procs=procs))
    assert argv[3:9] == ["sh", FILTER, *procs, "--", "bwrap"]
    # without bwrap nothing would load it
    assert command(launch(seccomp=FILTER, bubblewrap=False)) == ["/bin/bash", "-l"]


def test_bwrap_gets_the_filters_file_on_its_descriptor(tmp_path: Path) -> None:
    bpf = tmp_path / "seccomp.bpf"
    bpf.write_bytes(b"\0" * 8)
    fake = tmp_path / "bwrap"  # says what it was given, and where descriptor 9 leads
    fake.write_text(f'#!/bin/sh\nreadlink /proc/self/fd/{SECCOMP_FD}\necho "$@"\n')
    fake.chmod(0o755)
    argv = command(launch(seccomp=str(bpf)), bwrap=str(fake))
    done = subprocess.run(argv, env=HELPER_ENV, capture_output=True, text=True, check=True)
    where, args = done.stdout.splitlines()
    assert where == str(bpf)
    assert args.startswith("--die-with-parent --unshare-pid") and f"--seccomp {SECCOMP_FD}" in args


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        (Limits(memory=1 << 30, pids=64), ["prlimit", "--as=1073741824", "--nproc=64", "--"]),
        (Limits(cpu=1.5), []),  # no rlimit can cap a rate
    ],
)
def test_rlimits_where_no_cgroup_holds_the_limits(limits: Limits, expected: list[str]) -> None:
    argv = command(launch(rlimits=limits))
    assert argv[0] == "bwrap"
    # inside the namespaces: a process count limit set before bwrap would cap every sandbox
    # of the same uid together
    inside = argv[argv.index("--") + 1 :]
    assert inside[: len(expected)] == expected
    assert inside[len(expected)] in ("setsid", "env")


def test_with_rlimits_a_sessions_tmpfs_is_no_bigger_than_its_memory_limit() -> None:
    """No cgroup charges what is written to ``/tmp`` or ``/dev/shm`` to the session's memory."""
    argv = command(launch(rlimits=Limits(memory=1 << 30)))
    sized = [argv[i + 1 : i + 4] for i, a in enumerate(argv) if a == "--size"]
    assert sized == [[str(1 << 30), "--tmpfs", "/dev/shm"], [str(1 << 30), "--tmpfs", "/tmp"]]
    assert "--size" not in command(launch())  # a cgroup charges them


def test_a_session_gets_back_the_open_files_limit_the_server_raised() -> None:
    argv = command(launch(open_files=1024, rlimits=Limits(pids=64)))
    inside = argv[argv.index("--") + 1 :]
    assert inside[:4] == ["prlimit", "--nproc=64", "--nofile=1024:", "--"]
    assert command(launch(bubblewrap=False, open_files=1024))[:3] == [
        "prlimit",
        "--nofile=1024:",
        "--",
    ]


def test_session_nofile_limit_is_both_the_soft_and_the_hard_limit() -> None:
    """A hard limit set inside the sandbox can't be raised again from inside it."""
    argv = command(launch(open_files=4096, open_files_hard=4096))
    inside = argv[argv.index("--") + 1 :]
    assert inside[:3] == ["prlimit", "--nofile=4096:4096", "--"]


def test_without_bubblewrap_only_the_limits_wrap_the_program() -> None:
    argv = command(launch(bubblewrap=False, rlimits=Limits(pids=10)))
    assert argv == ["prlimit", "--nproc=10", "--", "/bin/bash", "-l"]


def test_variables_the_spawner_adds_are_unset_inside() -> None:
    argv = command(launch(unset_env=["JPY_PARENT_PID"]))
    assert pairs(argv, "--unsetenv") == [("JPY_PARENT_PID",)]


def test_a_python_environment_under_tmp_is_bound_after_the_private_tmp() -> None:
    # CI clones under /tmp: a venv there was covered by the private /tmp (no python inside)
    argv = command(launch(system=[Bind("/usr"), Bind("/tmp/clone/.venv")]))
    assert argv.index("--tmpfs") < argv.index("/tmp/clone/.venv")
    assert next(d for (d,) in pairs(argv, "--dir")) == "/tmp/clone"


def test_the_sessions_environment_is_set_last_and_no_helper_sees_it() -> None:
    argv = command(
        launch(env={"PATH": "/home/evil/bin", "LD_PRELOAD": "/x.so"}, unset_env=["JPY_PARENT_PID"])
    )
    assert argv[argv.index("--clearenv") + 1 : argv.index("--clearenv") + 4] == [
        "--setenv",
        "PATH",
        HELPER_ENV["PATH"],
    ]
    tail = argv[argv.index("env") :]
    assert tail == ["env", "-i", "PATH=/home/evil/bin", "LD_PRELOAD=/x.so", "/bin/bash", "-l"]
    with pytest.raises(ValueError):  # env would take it for a variable
        command(launch(argv=["/opt/a=b/prog"]))
