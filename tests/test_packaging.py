"""A wheel is the server and its web workspace: building one builds the front end (or says what
is missing), even in a tree where ``make web`` never ran."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _cannot(why: str) -> None:
    """Skip where the set-up is missing, but fail in CI, which has it (a skip there hides)."""
    if os.environ.get("CI") == "true":
        pytest.fail(why)
    pytest.skip(why)


def checkout(into: Path) -> Path:
    """The repository's files but the ignored ones, as a fresh clone has them: no
    src/hearth/static. The front end's npm packages come along (timestamps kept), as `npm ci`
    would install them."""
    if not (ROOT / ".git").exists():
        _cannot("needs the git checkout of the repository")
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    tree = into / "hearth"
    for name in filter(None, tracked):
        path = Path(os.fsdecode(name))
        if (ROOT / path).is_file():
            (tree / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / path, tree / path)
    assert not (tree / "src" / "hearth" / "static").exists()
    modules = ROOT / "web" / "node_modules"
    if not (modules / ".installed").is_file():
        _cannot("the web workspace's npm packages are not installed (make web)")
    shutil.copytree(modules, tree / "web" / "node_modules", symlinks=True)
    return tree


def build_wheel(tree: Path, out: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(tree)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_a_wheel_built_without_make_web_has_the_front_end(tmp_path: Path) -> None:
    tree = checkout(tmp_path)
    built = build_wheel(tree, tmp_path / "dist", dict(os.environ))
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = (tmp_path / "dist").glob("hearth-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "hearth/static/index.html" in names
    assert "hearth/terminals/screen-model.mjs" in names  # the screen model (SPEC §9)
    assert any(n.startswith("hearth/static/assets/") and n.endswith(".js") for n in names)


def test_without_npm_the_build_fails_saying_what_to_do(tmp_path: Path) -> None:
    tree = checkout(tmp_path)
    bin_dir = tmp_path / "bin"  # a PATH with Python and git, without npm
    bin_dir.mkdir()
    for tool in (sys.executable, shutil.which("git")):
        assert tool is not None
        (bin_dir / Path(tool).name).symlink_to(tool)
    built = build_wheel(tree, tmp_path / "dist", {**os.environ, "PATH": str(bin_dir)})
    assert built.returncode != 0
    assert "needs npm" in built.stderr and "make web" in built.stderr, built.stderr[-3000:]
    assert not list((tmp_path / "dist").glob("*.whl"))
