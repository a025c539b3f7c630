"""Hearth's build backend: setuptools', with the web workspace built first.

A wheel is the server and its front end: one without ``src/hearth/static`` would serve a page
that only says it is not built. So before setuptools packs a wheel or an sdist, the front end is
built from ``web/`` as ``make web`` does (``npm ci`` when ``web/node_modules`` is missing or
older than the lock file, then ``npm run build``), unless the build is newer than every source.
Without npm the build stops and says how to fix it. A build from an sdist uses the front end the
sdist carries; an editable install builds nothing here (``make web`` builds in place).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (every hook not overridden below)

WEB = Path("web")  # PEP 517: the hooks run in the project's root
BUILT = Path("src", "hearth", "static", "index.html")
SCREEN_MODEL = Path("src", "hearth", "terminals", "screen-model.mjs")  # SPEC §9, also from web/
SOURCES = ["src", "screen", "index.html", "package.json", "package-lock.json", "tsconfig.json"]


class FrontEndMissing(RuntimeError):
    """The wheel would have no web workspace."""


def _newest(paths: list[Path]) -> float:
    times = [p.stat().st_mtime for path in paths for p in [path, *path.rglob("*")] if p.exists()]
    return max(times, default=0.0)


def build_web() -> None:
    if not (WEB / "package.json").is_file():
        if BUILT.is_file():
            return  # an sdist: it carries the built front end
        raise FrontEndMissing(
            "Neither the web workspace's sources (web/) nor its build (src/hearth/static) are "
            "here: build from a checkout of the repository."
        )
    sources = [WEB / name for name in SOURCES] + list(WEB.glob("vite.config.*"))
    built = [BUILT, SCREEN_MODEL]
    if all(p.is_file() for p in built) and min(p.stat().st_mtime for p in built) >= _newest(
        sources
    ):
        return
    npm = shutil.which("npm")
    if npm is None:
        raise FrontEndMissing(
            "Building Hearth builds its web workspace, which needs npm: install Node.js 20+ "
            "with npm (Debian: apt-get install nodejs npm) and build again, or run `make web` "
            "where npm is and build from that tree."
        )
    installed = WEB / "node_modules" / ".installed"  # the stamp `make web` keeps too
    locks = [WEB / "package.json", WEB / "package-lock.json"]
    if not installed.is_file() or installed.stat().st_mtime < _newest(locks):
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True)
        installed.touch()
    subprocess.run([npm, "run", "build"], cwd=WEB, check=True)
    for path in built:
        if not path.is_file():
            raise FrontEndMissing(f"`npm run build` in web/ did not produce {path}.")


def build_wheel(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    build_web()
    name: str = _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)
    return name


def build_sdist(sdist_directory: str, config_settings: dict[str, Any] | None = None) -> str:
    build_web()
    name: str = _setuptools.build_sdist(sdist_directory, config_settings)
    return name
