"""Moving a sandbox's bind mount from outside: the process inside finds its cwd at the new path,
with nothing run in it; the command a plain user's server runs is pure."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from hearth.sandbox.launch import Bind, Launch, command
from hearth.sandbox.mounts import MoveFailed, move_command, move_mount
from hearth.sandbox.sandbox import SYSTEM_PATHS, system_view

needs_bwrap = pytest.mark.skipif(
    not Path("/usr/bin/bwrap").exists() and os.environ.get("CI") != "true",
    reason="needs bubblewrap (apt-get install bubblewrap)",
)


def test_a_plain_users_move_enters_the_mounts_user_namespace_by_descriptor() -> None:
    assert move_command(7, 8, "/d/kernels/pool/k-1", "/d/sessions/alice/a1") == [
        "nsenter",
        "--mount=/proc/self/fd/7",
        "--user=/proc/self/fd/8",
        "--preserve-credentials",
        *("mount", "--no-mtab", "--move", "--", "/d/kernels/pool/k-1", "/d/sessions/alice/a1"),
    ]


def pooled_kernel_layout(tmp_path: Path) -> tuple[Launch, Path, Path]:
    """A shell sandboxed as a pooled kernel is: its directory bound at the pool's path (its cwd),
    a read-only view of ``sessions/`` holding the empty directory it will move to. It prints its
    cwd (``getcwd``) and what is there for each line it reads."""
    pool, sessions, view = tmp_path / "pool" / "k-1", tmp_path / "sessions", tmp_path / "view"
    (view / "alice" / "a1").mkdir(parents=True)
    pool.mkdir(parents=True)
    (pool / "mine.txt").write_text("x")
    found = {p: os.readlink(p) if os.path.islink(p) else "" for p in SYSTEM_PATHS}
    system, links = system_view(
        SYSTEM_PATHS, [], {p: v for p, v in found.items() if Path(p).exists()}
    )
    launch = Launch(
        argv=["/bin/sh", "-c", "while read -r _; do /usr/bin/pwd -P; ls; done"],
        env={"PATH": "/usr/bin:/bin"},
        cwd=str(pool),
        system=system,
        links=links,
        binds=[Bind(str(pool), writable=True), Bind(str(view), str(sessions))],
        user_namespace=os.geteuid() != 0,
    )
    return launch, pool, sessions / "alice" / "a1"


@needs_bwrap
async def test_a_moved_bind_mount_is_the_cwd_of_the_process_inside_at_its_new_path(
    tmp_path: Path,
) -> None:
    launch, pool, session = pooled_kernel_layout(tmp_path)
    shell = await asyncio.create_subprocess_exec(
        *command(launch, bwrap=shutil.which("bwrap") or "bwrap"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin"},
    )

    async def cwd() -> tuple[str, str]:
        assert shell.stdin is not None and shell.stdout is not None
        shell.stdin.write(b"\n")
        where, listing = await shell.stdout.readline(), await shell.stdout.readline()
        return where.decode().strip(), listing.decode().strip()

    try:
        assert await cwd() == (str(pool), "mine.txt")
        await move_mount(shell.pid, str(pool), str(session))
        assert await cwd() == (str(session), "mine.txt")
        with pytest.raises(MoveFailed, match="pool"):  # nothing is mounted there any more
            await move_mount(shell.pid, str(pool), str(session.parent))
    finally:
        shell.kill()
        await shell.wait()
