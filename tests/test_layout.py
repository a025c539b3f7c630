"""The layout shows the processes: the web tier loads nothing of the session core, and the session
host nothing of the web tier (so a change to one can't quietly run in the other)."""

from __future__ import annotations

import json
import subprocess
import sys

SESSION_CORE = (
    "hearth.connections",
    "hearth.core",
    "hearth.host",
    "hearth.kernels",
    "hearth.sandbox",
    "hearth.store",
    "hearth.terminals",
)
WEB_TIER = ("hearth.server", "hearth.client")


def loaded_after_import(*modules: str) -> list[str]:
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('hearth'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return list(json.loads(out.stdout))


def of(packages: tuple[str, ...], modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)]


def test_the_web_tier_loads_nothing_of_the_session_core() -> None:
    loaded = loaded_after_import("hearth.server.app", "hearth.server.serve")
    assert "hearth.server.host_client" in loaded  # the check sees the seam's web side
    assert of(SESSION_CORE, loaded) == []


def test_the_session_host_loads_nothing_of_the_web_tier() -> None:
    loaded = loaded_after_import("hearth.host.process")
    assert "hearth.host.server" in loaded
    assert of(WEB_TIER, loaded) == []
