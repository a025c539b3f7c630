"""Settings: one validated object, built once at start-up and passed down.

Precedence: explicit values (CLI flags) > ``HEARTH_*`` environment variables > the TOML config
file > defaults. Lists and mappings in environment variables are JSON.
"""

from __future__ import annotations

import os
import socket
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from hearth.contract.connections import OperatorConnection

__all__ = ["SECRET_SETTINGS", "Settings", "default_data_dir", "load_settings"]

# settings that hold secrets: never shown, logged, echoed by the host or compared with it
SECRET_SETTINGS = frozenset({"tokens", "connection_key", "connections", "cluster_secret"})


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "hearth"


class Settings(BaseSettings):
    """Every setting of Hearth, by the names of the contract (SPEC §4.3)."""

    model_config = SettingsConfigDict(
        env_prefix="HEARTH_",
        extra="forbid",
        frozen=True,
        validate_default=True,
        # A validation error would echo the input, and the input of ``tokens`` is secrets.
        hide_input_in_errors=True,
    )

    # Server
    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    data_dir: Path = Field(default_factory=default_data_dir)
    tokens: dict[str, str] = Field(default_factory=dict)
    allowed_origins: list[str] = Field(default_factory=list)
    log_level: str = "warning"

    # Terminal sessions
    session_timeout: float = Field(3600, gt=0)
    cleanup_interval: float = Field(300, gt=0)
    heartbeat_interval: float = Field(30, gt=0)
    # hand terminal websockets to the session host, which serves them (False: relay them)
    websocket_handover: bool = True
    max_buffer_size: int = Field(1000, ge=1)
    max_buffer_bytes: int = Field(1_048_576, ge=1024)
    max_total_buffer_bytes: int = Field(268_435_456, ge=1024)
    max_terminals: int = Field(256, ge=1)
    max_terminals_per_user: int = Field(32, ge=1)
    terminal_kill_grace: float = Field(2.0, ge=0)
    max_input_bytes: int = Field(1_048_576, ge=1)
    # The screen model (SPEC §9): a headless xterm.js per terminal, in one Node.js process
    screen_model: bool = True
    node_binary: str = "node"
    # seconds untouched after which a terminal's screen is kept as its redraw, not an emulator
    screen_model_idle_time: float = Field(60, gt=0)

    # Kernel sessions
    session_pool_size: int = Field(3, ge=0)
    session_pool_max_idle_time: float = Field(600, gt=0)
    session_pool_refill_interval: float = Field(30, gt=0)
    max_kernels: int = Field(32, ge=1)
    kernel_cleanup_interval: float = Field(60, gt=0)
    default_kernel_name: str = "python3"
    max_download_bytes: int = Field(104_857_600, ge=1)
    download_timeout: float = Field(60, gt=0)
    max_concurrent_kernel_starts: int = Field(2, ge=1)

    # Isolation and limits (SPEC §7)
    sandbox: Literal["auto", "bubblewrap", "none"] = "auto"
    session_network: Literal["host", "none"] = "host"
    sandbox_uid_base: int = Field(200_000, ge=1000, le=2**31 - 300_000)
    session_memory_limit: int = Field(2_147_483_648, ge=0)
    session_pids_limit: int = Field(512, ge=0)
    session_cpu_limit: float = Field(0.0, ge=0)
    # bytes per user, across their home and their kernels' directories (SPEC §7.1)
    session_disk_limit: int = Field(10 * 2**30, ge=0)
    # "rlimit": accept per-process rlimits where several users have no cgroup to hold the limits
    session_limits: Literal["auto", "rlimit"] = "auto"
    session_nofile_limit: int = Field(4096, ge=0)  # open files per session; 0: the server's

    # Saved connections (SPEC §11): the key that seals their secrets (32 bytes, base64); unset,
    # it is <data-dir>/connections.key, made on first use. Never shown, logged or compared.
    connection_key: str | None = None
    # where saved connections may go: host name patterns (fnmatch), matched before connecting
    connection_allowed_hosts: list[str] = Field(default_factory=lambda: ["*"])
    # seconds between an SSH connection's keepalives; three unanswered end its sessions
    connection_keepalive_interval: float = Field(15, gt=0)
    # the operator's connections, for the users each names ([[connections]] in the file)
    connections: list[OperatorConnection] = Field(default_factory=list)

    # Many nodes (SPEC §12): unset, this is the only node and nothing below is used
    cluster_redis_url: str | None = None
    node_name: str = Field(default_factory=socket.gethostname, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # how the other nodes reach this node's web server; unset: http://<host>:<port>
    advertise_url: str | None = None
    # shared by the nodes: signs node-to-node calls (a user's token goes no further)
    cluster_secret: str | None = None
    node_lease_s: float = Field(10, gt=0)  # a node not renewing its lease for this long is down
    node_lost_timeout: float = Field(600, gt=0)  # …and its sessions closed ("node_lost") after this

    @model_validator(mode="after")
    def _cluster_is_whole(self) -> Settings:
        if self.cluster_redis_url and not self.cluster_secret:
            raise ValueError(
                "cluster_redis_url needs cluster_secret: the same secret on every node, which "
                "signs their calls to each other (e.g. `python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'`)"
            )
        if self.cluster_secret is not None and len(self.cluster_secret) < 16:
            raise ValueError("cluster_secret must be at least 16 characters long")
        return self

    @field_validator("tokens")
    @classmethod
    def _tokens_are_usable(cls, tokens: dict[str, str]) -> dict[str, str]:
        for token, user in tokens.items():
            if len(token) < 8:
                raise ValueError("every token must be at least 8 characters long")
            if not user or not user.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"user names are letters, digits, '-' and '_', got {user!r}")
        return tokens

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _EnvSource(settings_cls), _TomlSource(settings_cls))

    def __repr__(self) -> str:
        shown = self.model_dump(exclude=set(SECRET_SETTINGS))
        shown["connections"] = [c.id for c in self.connections]
        shown["tokens"] = f"<{len(self.tokens)} configured>"
        shown["connection_key"] = "<set>" if self.connection_key else None
        shown["cluster_secret"] = "<set>" if self.cluster_secret else None
        if self.cluster_redis_url and "@" in self.cluster_redis_url:  # redis://:password@host
            scheme, _, rest = self.cluster_redis_url.partition("://")
            shown["cluster_redis_url"] = f"{scheme}://<credentials>@{rest.rsplit('@', 1)[1]}"
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    __str__ = __repr__


# pydantic-settings deep-merges mappings across sources; for ``tokens`` that would keep a token of
# the file alive after ``HEARTH_TOKENS`` dropped it. Here a higher layer replaces a setting whole.


def _not_given(values: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in given}


class _EnvSource(EnvSettingsSource):
    def __call__(self) -> dict[str, Any]:
        return _not_given(super().__call__(), self.current_state)


class _TomlSource(TomlConfigSettingsSource):
    def __call__(self) -> dict[str, Any]:
        return _not_given(super().__call__(), self.current_state)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings: ``overrides`` (flags) win over env, env over the TOML file.

    ``None`` values in ``overrides`` are ignored, so absent CLI flags don't mask lower layers.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    if config_file is None:
        return Settings(**given)
    if not config_file.is_file():
        raise FileNotFoundError(
            f"config file {config_file} does not exist; pass an existing TOML file"
        )

    class _FromFile(Settings):
        model_config = SettingsConfigDict(toml_file=config_file, title="Settings")

    try:
        return _FromFile(**given)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config file {config_file} is not valid TOML: {exc}") from None
