"""What a session sees of the system (pure)."""

from __future__ import annotations

from pathlib import Path

from hearth.sandbox.launch import Bind
from hearth.sandbox.sandbox import hidden_under, system_view


def test_symlinked_system_dirs_are_symlinks_inside_and_python_is_added_once() -> None:
    binds, links = system_view(
        ["/usr", "/bin", "/lib", "/opt", "/etc"],
        ["/usr", "/srv/venv", "/srv/venv/lib"],
        {"/usr": "", "/bin": "usr/bin", "/lib": "usr/lib", "/opt": None, "/etc": ""},
    )
    assert binds == [Bind("/usr"), Bind("/etc"), Bind("/srv/venv")]
    assert links == {"/bin": "usr/bin", "/lib": "usr/lib"}


def test_a_data_dir_or_config_under_a_system_path_is_hidden() -> None:
    binds = [Bind("/usr"), Bind("/opt"), Bind("/etc")]
    private = [Path("/opt/hearth"), Path("/etc/hearth/config.toml"), Path("/home/me/data")]
    assert hidden_under(binds, private) == ["/opt/hearth", "/etc/hearth/config.toml"]
