"""Where a terminal starts (hearth.terminals.workdir): inside its user's home when sandboxed, and
an existing directory in any case."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.errors import BadRequest
from hearth.terminals.workdir import inside_home, working_dir


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "homes" / "alice" / "src" / "app").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    return tmp_path / "homes" / "alice"


def test_a_sandboxed_terminal_starts_in_its_home_or_below(home: Path) -> None:
    assert working_dir(home, None, jailed=True) == home
    assert working_dir(home, "", jailed=True) == home
    assert working_dir(home, "src/app", jailed=True) == home / "src" / "app"
    assert working_dir(home, str(home / "src"), jailed=True) == home / "src"
    assert working_dir(home, "src/../src/app/.", jailed=True) == home / "src" / "app"


def test_a_way_out_of_the_home_is_refused(home: Path) -> None:
    (home / "out").symlink_to(home.parent.parent / "elsewhere")
    for escape in ("..", "../../elsewhere", "/", str(home.parent.parent / "elsewhere"), "out"):
        with pytest.raises(BadRequest, match="outside your home"):
            inside_home(home, escape)
    with pytest.raises(BadRequest, match="does not exist in your home"):
        inside_home(home, "src/missing")
    (home / "file").write_text("")
    with pytest.raises(BadRequest, match="does not exist in your home"):
        inside_home(home, "file")


def test_the_path_stays_under_the_home_as_named_when_the_home_is_a_link(tmp_path: Path) -> None:
    """The data dir's homes/ may lead into its disk image: the session is told the path under
    its home, not where that resolves to."""
    (tmp_path / "image" / "alice" / "work").mkdir(parents=True)
    (tmp_path / "homes").symlink_to(tmp_path / "image")
    home = tmp_path / "homes" / "alice"
    assert inside_home(home, "work") == home / "work"
    assert inside_home(home, str(tmp_path / "image" / "alice" / "work")) == home / "work"


def test_an_unsandboxed_terminal_starts_anywhere_that_exists(home: Path) -> None:
    elsewhere = home.parent.parent / "elsewhere"
    assert working_dir(home, str(elsewhere), jailed=False) == elsewhere
    assert working_dir(home, None, jailed=False) == Path.home()
    assert working_dir(home, "~", jailed=False) == Path.home()
    with pytest.raises(BadRequest, match="does not exist; give an existing one"):
        working_dir(home, str(elsewhere / "missing"), jailed=False)
