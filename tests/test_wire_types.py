"""The web workspace's types of the wire are generated from ``hearth.protocol``: the committed
``web/src/wire.ts`` is what the generator writes now (else: ``make wire``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_workspace_types_are_the_protocols() -> None:
    spec = importlib.util.spec_from_file_location(
        "wire_types", ROOT / "build_support" / "wire_types.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (ROOT / "web" / "src" / "wire.ts").read_text()
    assert committed == module.typescript(), "web/src/wire.ts is out of date: run `make wire`"
    assert "export interface KernelState {" in committed
    assert "  execution_state?: string;" in committed
