"""The sessions' seccomp filter (SPEC §7.1): its rules (pure), and the program libseccomp makes of
them."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
