"""``/etc/passwd`` and ``/etc/group`` as a session sees them: the system's, plus the session's own
uid, so that ``id``, ``whoami``, bash's prompt, ssh and git know who it is ("I have no name!"
otherwise). Written once per uid under the data dir and bound read-only over the system's."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Account", "AccountFiles", "with_account"]


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    uid: int
    home: str
    shell: str


def with_account(system: str, line: str) -> str:
    """``system`` (a passwd or group file's text) with ``line`` appended (pure)."""
    if system and not system.endswith("\n"):
        system += "\n"
    return system + line + "\n"


def _safe(name: str) -> str:
    """A passwd field can't hold ``:`` or a newline; Hearth user names are free text."""
    return "".join(c if c.isprintable() and c != ":" else "_" for c in name) or "user"


class AccountFiles:
    def __init__(self, folder: Path, etc: Path = Path("/etc")) -> None:
        self.folder = folder
        self.etc = etc
        self._written: dict[Account, tuple[Path, Path]] = {}  # the system's files rarely change

    def files(self, account: Account) -> tuple[Path, Path]:
        """(passwd, group) that show ``account``; written once per account and server run."""
        if account not in self._written:
            self._written[account] = self._files(account)
        return self._written[account]

    def _files(self, account: Account) -> tuple[Path, Path]:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o755)
        name = _safe(account.name)
        passwd = f"{name}:x:{account.uid}:{account.uid}:Hearth:{account.home}:{account.shell}"
        group = f"{name}:x:{account.uid}:"
        return (
            self._write(f"passwd-{account.uid}", with_account(self._read("passwd"), passwd)),
            self._write(f"group-{account.uid}", with_account(self._read("group"), group)),
        )

    def _read(self, name: str) -> str:
        try:
            return (self.etc / name).read_text()
        except OSError:
            return ""

    def _write(self, name: str, text: str) -> Path:
        path = self.folder / name
        try:
            if path.read_text() == text:
                return path
        except OSError:
            pass
        temp = path.with_suffix(".new")
        temp.write_text(text)
        os.chmod(temp, 0o644)
        os.replace(temp, path)  # a sandbox starting meanwhile binds the old file or the new one
        return path
