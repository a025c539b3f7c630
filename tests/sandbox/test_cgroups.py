"""Where session cgroups go and what they write (pure)."""

from __future__ import annotations

from hearth.sandbox.cgroups import CgroupLayout, limit_files, oom_kills, plan
from hearth.sandbox.launch import Limits

V1_MOUNTS = """\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""
V1_SELF = "8:pids:/\n4:memory:/process_api/abc\n1:cpu:/\n0::/\n"
V2_MOUNTS = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec 0 0\n"
V2_SELF = "0::/system.slice/hearth.service\n"


def test_a_v1_machine_with_a_v2_mount_without_controllers_uses_v1() -> None:
    layout = plan(V1_SELF, V1_MOUNTS, v2_controllers="hugetlb", tag="t1")
    assert layout == CgroupLayout(
        "cgroup1",
        {
            "memory": "/sys/fs/cgroup/memory/process_api/abc/hearth-t1",
            "pids": "/sys/fs/cgroup/pids/hearth-t1",
            "cpu": "/sys/fs/cgroup/cpu/hearth-t1",
        },
    )


def test_a_v2_machine_puts_sessions_under_the_servers_own_cgroup() -> None:
    layout = plan(V2_SELF, V2_MOUNTS, v2_controllers="cpuset cpu io memory pids", tag="t2")
    assert layout == CgroupLayout(
        "cgroup2", {"": "/sys/fs/cgroup/system.slice/hearth.service/hearth-t2"}
    )


def test_no_memory_or_pids_controller_anywhere_means_no_cgroups() -> None:
    assert plan(V2_SELF, V2_MOUNTS, v2_controllers="cpu io", tag="t") is None
    assert plan("0::/\n", "", v2_controllers="", tag="t") is None


def test_v2_limit_files() -> None:
    layout = CgroupLayout("cgroup2", {"": "/x"})
    writes = limit_files(layout, Limits(memory=512 << 20, pids=100, cpu=0.5))
    assert dict(writes[""]) == {
        "memory.max": str(512 << 20),
        "memory.swap.max": "0",
        "memory.oom.group": "0",
        "pids.max": "100",
        "cpu.weight": "100",
        "cpu.max": "50000 100000",
    }


def test_v1_limit_files_per_controller_and_only_what_is_limited() -> None:
    layout = CgroupLayout("cgroup1", {"memory": "/m", "pids": "/p", "cpu": "/c"})
    writes = limit_files(layout, Limits(memory=1 << 30, pids=0, cpu=2))
    assert writes == {
        "memory": [
            ("memory.limit_in_bytes", str(1 << 30)),
            ("memory.memsw.limit_in_bytes", str(1 << 30)),
        ],
        "cpu": [
            ("cpu.shares", "1024"),
            ("cpu.cfs_period_us", "100000"),
            ("cpu.cfs_quota_us", "200000"),
        ],
    }


def test_every_session_gets_an_equal_cpu_weight_even_without_a_cpu_limit() -> None:
    v1 = CgroupLayout("cgroup1", {"memory": "/m", "cpu": "/c"})
    assert limit_files(v1, Limits(memory=1 << 30))["cpu"] == [("cpu.shares", "1024")]
    v2 = CgroupLayout("cgroup2", {"": "/x"})
    assert ("cpu.weight", "100") in limit_files(v2, Limits(pids=10))[""]


def test_oom_kill_counts_are_read_from_either_version() -> None:
    assert oom_kills("low 0\nhigh 0\nmax 3\noom 2\noom_kill 1\n") == 1
    assert oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 4\n") == 4
    assert oom_kills("oom_kill_disable 0\n") == 0
