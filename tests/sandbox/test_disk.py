"""Disk (SPEC §7.1): a user at ``session_disk_limit`` stops nobody else, and a disk that is full
anyway is a 507 that leaves nothing half-made. Real btrfs quota groups in a real image, on a real
small file system for the data directory."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from hearth.config import Settings
from hearth.sandbox import SandboxUnavailable, open_sandbox
from tests.client.helpers import poll
from tests.conftest import ALICE, RunningServer, pids_of
from tests.sandbox.test_attacks import H_ALICE, H_BOB, execute, terminal_output


def _free_bytes() -> int:
    stat = os.statvfs(tempfile.gettempdir())
    return stat.f_bavail * stat.f_frsize


pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0 or not shutil.which("mkfs.btrfs") or not Path("/usr/bin/bwrap").exists(),
        reason="needs root, btrfs-progs and bubblewrap (apt-get install btrfs-progs bubblewrap)",
    ),
    # each test's image, beside the file system's reserve: where there is no room for them, the
    # servers rightly enforce no limit, and these tests would only say so
    pytest.mark.skipif(
        _free_bytes() < 4 << 30, reason="needs 4 GiB free in the temporary directory"
    ),
]

MiB = 1 << 20


def shell(server: RunningServer, headers: dict[str, str], id: str, script: str) -> str:
    """Run ``script`` in a new terminal of the user; its whole output once it printed DONE."""
    r = httpx.post(
        f"{server.url}/api/v1/terminal/sessions",
        json={"id": id, "command": ["/bin/sh", "-c", script + "; echo DONE; exec cat"]},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    return poll(
        lambda: (o := terminal_output(server, headers, id)) and "DONE" in o and o,
        what=f"the script of {id}",
    )


def test_a_user_at_the_disk_limit_stops_nobody_else(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(session_disk_limit=48 * MiB)
    assert httpx.get(f"{server.url}/healthz").json()["disk_limit"] == "qgroup"
    r = httpx.post(f"{server.url}/api/v1/sessions", json={"session_id": "ak"}, headers=H_ALICE)
    assert r.status_code == 201, r.text

    # alice's home and her kernel's working directory share her limit
    said = shell(server, H_ALICE, "fill", "head -c 40M /dev/zero > ~/fill; echo rc=$?")
    assert "rc=0" in said, said
    written = execute(
        server,
        H_ALICE,
        "ak",
        "import errno\ntry:\n    open('more', 'wb').write(bytes(32 << 20))\n"
        "except OSError as e:\n    print(errno.errorcode[e.errno])\nelse:\n    print('written')",
    )
    assert written.strip() == errno.errorcode[errno.EDQUOT], written

    # bob writes, creates and uploads as if alice were not there
    said = shell(server, H_BOB, "bw", "head -c 40M /dev/zero > ~/big; echo rc=$?")
    assert "rc=0" in said, said
    r = httpx.post(f"{server.url}/api/v1/sessions", json={"session_id": "bk"}, headers=H_BOB)
    assert r.status_code == 201, r.text
    r = httpx.put(
        f"{server.url}/api/v1/sessions/bk/files/up.bin", content=bytes(4 * MiB), headers=H_BOB
    )
    assert r.status_code in (200, 201), r.text

    # alice frees room and can write again
    said = shell(server, H_ALICE, "free", "rm ~/fill && head -c 8M /dev/zero > ~/small; echo rc=$?")
    assert "rc=0" in said, said


def test_a_recycled_kernels_writes_count_for_its_next_user_only(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(session_disk_limit=24 * MiB, session_pool_size=1)
    poll(
        lambda: httpx.get(f"{server.url}/api/v1/pool", headers=H_ALICE).json()["ready"] >= 1,
        timeout=60,
        what="a pooled kernel",
    )
    r = httpx.post(f"{server.url}/api/v1/sessions", json={"session_id": "ak"}, headers=H_ALICE)
    assert r.status_code == 201, r.text
    assert r.json()["from_pool"], r.json()
    code = "open('w', 'wb').write(bytes(16 << 20)); print('ok')"
    assert execute(server, H_ALICE, "ak", code).strip() == "ok"
    httpx.delete(f"{server.url}/api/v1/sessions/ak", headers=H_ALICE).raise_for_status()
    # bob's 16 MiB don't count against alice's 24, nor hers against his
    r = httpx.post(f"{server.url}/api/v1/sessions", json={"session_id": "bk"}, headers=H_BOB)
    assert r.status_code == 201, r.text
    assert execute(server, H_BOB, "bk", code).strip() == "ok"
    r = httpx.post(f"{server.url}/api/v1/sessions", json={"session_id": "ak2"}, headers=H_ALICE)
    assert r.status_code == 201, r.text
    assert execute(server, H_ALICE, "ak2", code).strip() == "ok"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 768 MiB ext4 file system of its own, loop-mounted: the data directory's disk."""
    image, mount = tmp_path / "disk.img", tmp_path / "disk"
    with open(image, "wb") as f:
        f.truncate(768 * MiB)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True)
    mount.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=False)


def fill(path: Path) -> None:
    """Everything left on ``path``'s file system taken, as another program would."""
    stat = os.statvfs(path.parent)
    with open(path, "wb") as f, contextlib.suppress(OSError):
        os.posix_fallocate(f.fileno(), 0, stat.f_bavail * stat.f_frsize)
    with open(path, "ab") as f, contextlib.suppress(OSError):
        while True:
            f.write(bytes(64 << 10))
            f.flush()


def test_a_full_disk_is_a_507_that_leaves_nothing_half_made(
    make_server: Callable[..., RunningServer], small_disk: Path
) -> None:
    server = make_server(data_dir=small_disk / "data")
    health = httpx.get(f"{server.url}/healthz").json()
    assert (health["disk"], health["disk_limit"]) == ("ok", "qgroup"), health
    r = httpx.post(f"{server.url}/api/v1/sessions", json={"session_id": "ak"}, headers=H_ALICE)
    assert r.status_code == 201, r.text
    shell(server, H_ALICE, "at", "true")

    filler = small_disk / "filler"
    fill(filler)
    assert httpx.get(f"{server.url}/healthz").json()["disk"] == "full"
    marker = "half-made-marker"
    r = httpx.post(
        f"{server.url}/api/v1/terminal/sessions",
        json={"id": "bt", "command": ["/bin/sh", "-c", f"exec sleep 3600 # {marker}"]},
        headers=H_BOB,
    )
    assert r.status_code == 507, r.text
    assert "disk is full" in r.json()["detail"]
    poll(
        lambda: (
            not pids_of(f"/bin/sh\0-c\0exec sleep 3600 # {marker}\0".encode())
            and not pids_of(b"sleep\x003600\x00")
        ),
        what="no shell left without its record",
    )
    listed = httpx.get(f"{server.url}/api/v1/terminal/sessions", headers=H_BOB).json()
    assert [s["id"] for s in listed] == []

    r = httpx.post(f"{server.url}/api/v1/sessions", json={"session_id": "bk"}, headers=H_BOB)
    assert r.status_code == 507, r.text
    assert httpx.get(f"{server.url}/api/v1/sessions", headers=H_BOB).json() == []
    r = httpx.patch(
        f"{server.url}/api/v1/terminal/sessions/at", json={"name": "renamed"}, headers=H_ALICE
    )
    assert r.status_code == 507, r.text
    at = httpx.get(f"{server.url}/api/v1/terminal/sessions/at", headers=H_ALICE).json()
    assert at["name"] != "renamed" and at["alive"], at

    filler.unlink()
    assert httpx.get(f"{server.url}/healthz").json()["disk"] == "ok"
    r = httpx.post(f"{server.url}/api/v1/sessions", json={"session_id": "bk"}, headers=H_BOB)
    assert r.status_code == 201, r.text
    assert execute(server, H_ALICE, "ak", "print(6 * 7)").strip() == "42"


def test_a_subvolume_of_ones_own_does_not_escape_the_limit(
    make_server: Callable[..., RunningServer],
) -> None:
    """A new btrfs subvolume would count in no user's quota group: sessions can't make one
    (nor a snapshot: every btrfs ioctl is refused by the seccomp filter)."""
    server = make_server(session_disk_limit=32 * MiB)
    said = shell(
        server,
        H_ALICE,
        "esc",
        "btrfs subvolume create ~/esc; echo made=$?;"
        " head -c 48M /dev/zero > ~/esc/f 2>/dev/null || head -c 48M /dev/zero > ~/f2;"
        " echo rc=$?",
    )
    assert "made=0" not in said, said
    assert "rc=0" not in said, said


def test_a_limit_lifted_keeps_every_users_files_and_lifts_it(
    make_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    data = tmp_path / "kept"
    server = make_server(data_dir=data, session_disk_limit=32 * MiB)
    said = shell(server, H_ALICE, "w", "head -c 24M /dev/zero > ~/kept; echo rc=$?")
    assert "rc=0" in said, said
    said = shell(server, H_ALICE, "x", "head -c 24M /dev/zero > ~/over; echo rc=$?")
    assert "rc=0" not in said, said
    server.stop()

    server = make_server(data_dir=data, session_disk_limit=0)
    assert httpx.get(f"{server.url}/healthz").json()["disk_limit"] == "none"
    said = shell(server, H_ALICE, "y", "ls -l ~/kept; head -c 48M /dev/zero > ~/more; echo rc=$?")
    assert "rc=0" in said and "25165824" in said, said


def test_a_data_directory_from_before_the_limit_is_moved_into_the_image(tmp_path: Path) -> None:
    """Homes of a data directory made without a limit are copied into the image as subvolumes
    (so the limit holds for them), owners and modes kept; the old places become links."""
    data = tmp_path / "data"
    home = data / "homes" / "alice"
    home.mkdir(parents=True)
    (home / "notes.txt").write_text("mine")
    os.chown(home / "notes.txt", 200001, 200001)
    settings = Settings(data_dir=data, tokens={ALICE: "alice"}, session_disk_limit=64 * MiB)
    sandbox = open_sandbox(settings)
    try:
        assert sandbox.status()["disk_limit"] == "qgroup"
        assert (data / "homes").is_symlink()
        assert (home / "notes.txt").read_text() == "mine"
        assert (home / "notes.txt").stat().st_uid == 200001
        assert home.stat().st_ino == 256  # the root of a subvolume: in a quota group when used
        assert not list(data.glob(".homes*")) and not list((data / "volume").glob(".homes*"))
    finally:
        sandbox.close()


def test_an_image_that_cant_be_mounted_stops_the_start_saying_why(tmp_path: Path) -> None:
    """Its users' files are in it: running on without it would lose sight of them."""
    data = tmp_path / "data"
    settings = Settings(data_dir=data, tokens={ALICE: "alice"}, session_disk_limit=64 * MiB)
    data.mkdir()
    open_sandbox(settings).close()
    with open(data / "volume.img", "r+b") as image:  # its superblock, gone
        image.seek(64 << 10)
        image.write(bytes(4096))
    with pytest.raises(SandboxUnavailable, match="disk image"):
        open_sandbox(settings)
    assert not os.path.ismount(data / "volume")


def test_a_home_made_as_a_plain_directory_still_gets_the_limit(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server(session_disk_limit=32 * MiB)
    home = server.settings.data_dir / "homes" / "alice"
    home.mkdir()  # by hand, or by a start before the limit: not a subvolume
    (home / "kept.txt").write_text("mine")
    said = shell(server, H_ALICE, "fill", "cat ~/kept.txt; head -c 48M /dev/zero > ~/f; echo rc=$?")
    assert "mine" in said and "rc=0" not in said, said
    assert home.stat().st_ino == 256
