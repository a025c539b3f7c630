from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from hearth.config import Settings, default_data_dir, load_settings

SECRET = "tok-very-secret-1234"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("HEARTH_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hearth.toml"
    path.write_text(text)
    return path


def test_defaults_are_the_contract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    s = load_settings()
    assert (s.host, s.port, s.data_dir) == ("127.0.0.1", 8765, tmp_path / "hearth")
    assert (s.tokens, s.allowed_origins) == ({}, [])
    assert (s.session_timeout, s.cleanup_interval, s.heartbeat_interval) == (3600, 300, 30)
    assert (s.max_buffer_size, s.max_buffer_bytes) == (1000, 1_048_576)
    assert s.max_total_buffer_bytes == 268_435_456
    assert (s.max_terminals, s.max_terminals_per_user) == (256, 32)
    assert (s.session_pool_size, s.session_pool_max_idle_time) == (3, 600)
    assert (s.session_pool_refill_interval, s.max_kernels, s.kernel_cleanup_interval) == (
        30,
        32,
        60,
    )
    assert s.default_kernel_name == "python3"
    assert (s.max_download_bytes, s.download_timeout) == (104_857_600, 60)
    assert (s.session_limits, s.session_nofile_limit) == ("auto", 4096)


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / ".local" / "share" / "hearth"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "hearth"


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HEARTH_PORT", "9001")
    monkeypatch.setenv("HEARTH_SESSION_TIMEOUT", "12.5")
    monkeypatch.setenv("HEARTH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HEARTH_TOKENS", '{"tok-alice-123":"alice","tok-bob-4567":"bob"}')
    monkeypatch.setenv("HEARTH_ALLOWED_ORIGINS", '["https://a.example", "http://b.example:8080"]')
    s = load_settings()
    assert s.port == 9001
    assert s.session_timeout == 12.5
    assert s.data_dir == tmp_path
    assert s.tokens == {"tok-alice-123": "alice", "tok-bob-4567": "bob"}
    assert s.allowed_origins == ["https://a.example", "http://b.example:8080"]


def test_environment_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("hearth_max_terminals", "7")
    assert load_settings().max_terminals == 7


def test_a_config_file_overrides_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'port = 9100\nmax_buffer_size = 50\nallowed_origins = ["https://x.example"]\n'
        '[tokens]\n"tok-carol-123" = "carol"\n',
    )
    s = load_settings(path)
    assert isinstance(s, Settings)
    assert (s.port, s.max_buffer_size) == (9100, 50)
    assert s.allowed_origins == ["https://x.example"]
    assert s.tokens == {"tok-carol-123": "carol"}
    assert s.host == "127.0.0.1"  # not in the file: default


def test_precedence_flag_over_env_over_file_over_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, 'port = 1111\nhost = "0.0.0.0"\nmax_kernels = 5\n')
    monkeypatch.setenv("HEARTH_PORT", "2222")
    monkeypatch.setenv("HEARTH_HOST", "::1")
    s = load_settings(path, port=3333, host=None, data_dir=None)
    assert s.port == 3333  # flag
    assert s.host == "::1"  # env (the absent flag doesn't mask it)
    assert s.max_kernels == 5  # file
    assert s.max_terminals == 256  # default
    assert load_settings(path).port == 2222
    monkeypatch.delenv("HEARTH_PORT")
    assert load_settings(path).port == 1111


def test_env_beats_file_for_mappings_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[tokens]\n"tok-file-1234" = "carol"\n')
    monkeypatch.setenv("HEARTH_TOKENS", '{"tok-env-12345":"dave"}')
    assert load_settings(path).tokens == {"tok-env-12345": "dave"}


def test_flags_without_a_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HEARTH_PORT", "2222")
    s = load_settings(None, port=4444, data_dir=tmp_path)
    assert (s.port, s.data_dir) == (4444, tmp_path)


def test_the_client_environment_does_not_disturb_the_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HEARTH_URL", "http://127.0.0.1:8765")
    monkeypatch.setenv("HEARTH_TOKEN", SECRET)
    assert load_settings().tokens == {}


def test_a_missing_config_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(FileNotFoundError, match=r"nope\.toml does not exist"):
        load_settings(missing)
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path)  # a directory is no config file


def test_an_unknown_setting_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="bogus"):
        load_settings(write(tmp_path, "bogus = 1\n"))
    with pytest.raises(ValidationError, match="bogus"):
        load_settings(bogus=1)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"hearth\.toml is not valid TOML"):
        load_settings(write(tmp_path, "port = \n"))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HEARTH_PORT", "70000"),
        ("HEARTH_PORT", "eighty"),
        ("HEARTH_SESSION_TIMEOUT", "0"),
        ("HEARTH_MAX_BUFFER_SIZE", "0"),
        ("HEARTH_MAX_BUFFER_BYTES", "10"),
        ("HEARTH_TOKENS", '{"short":"alice"}'),
        ("HEARTH_TOKENS", '{"tok-alice-123":"al ice"}'),
        ("HEARTH_TOKENS", '{"tok-alice-123":""}'),
        ("HEARTH_ALLOWED_ORIGINS", '"https://a.example"'),
        ("HEARTH_SESSION_LIMITS", "cgroup2"),
        ("HEARTH_SESSION_NOFILE_LIMIT", "-1"),
    ],
)
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError):  # a ValidationError, or a SettingsError for bad JSON
        load_settings()


def test_tokens_never_show_in_repr_or_str(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARTH_TOKENS", f'{{"{SECRET}":"alice"}}')
    s = load_settings()
    assert s.tokens == {SECRET: "alice"}
    assert SECRET not in repr(s)
    assert SECRET not in str(s)
    assert "tokens='<1 configured>'" in repr(s)
    assert repr(s).startswith("Settings(")


def test_tokens_never_show_in_validation_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`hearth serve` prints the error: a bad entry must not reveal the good ones."""
    monkeypatch.setenv("HEARTH_TOKENS", f'{{"{SECRET}":"alice","tok-bob-7654":"b o b"}}')
    with pytest.raises(ValidationError) as info:
        load_settings()
    assert SECRET not in str(info.value)
    assert "tok-bob-7654" not in str(info.value)
    monkeypatch.delenv("HEARTH_TOKENS")
    path = write(tmp_path, f'[tokens]\n"{SECRET}" = "alice"\n"short" = "bob"\n')
    with pytest.raises(ValidationError) as info:
        load_settings(path)
    assert SECRET not in str(info.value)
    assert "at least 8 characters" in str(info.value)


def test_settings_are_frozen() -> None:
    s = load_settings()
    with pytest.raises(ValidationError):
        s.port = 1  # type: ignore[misc]
