"""The TypeScript types of the wire models the web workspace reads, generated from
``hearth.protocol`` (the one place they are written): ``python build_support/wire_types.py``
writes ``web/src/wire.ts``; a test fails when it is out of date."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from hearth.protocol import TerminalState
from hearth.protocol.kernels import KernelState, PoolState

MODELS: list[type[BaseModel]] = [TerminalState, KernelState, PoolState]
TARGET = Path(__file__).resolve().parent.parent / "web" / "src" / "wire.ts"

HEAD = """\
// Generated from hearth.protocol by build_support/wire_types.py: do not edit by hand.
// The shapes the server answers (SPEC §3.1, §4.2, §10); the Python models are the source.
"""


def typescript() -> str:
    """Every model, and the models they use, as TypeScript interfaces."""
    done: dict[str, str] = {}
    for model in MODELS:
        schema = model.model_json_schema(mode="serialization")
        for name, sub in schema.get("$defs", {}).items():
            done.setdefault(name, _interface(name, sub))
        done.setdefault(model.__name__, _interface(model.__name__, schema))
    return HEAD + "".join(f"\n{text}" for _, text in sorted(done.items()))


def _interface(name: str, schema: dict[str, Any]) -> str:
    required = set(schema.get("required", []))
    lines = [f"export interface {name} {{"]
    for field, sub in schema.get("properties", {}).items():
        optional = "" if field in required else "?"
        lines.append(f"  {field}{optional}: {_type(sub)};")
    return "\n".join([*lines, "}"]) + "\n"


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "const" in schema:
        return _literal(schema["const"])
    if "enum" in schema:
        return " | ".join(_literal(v) for v in schema["enum"])
    if "anyOf" in schema:
        return " | ".join(_type(s) for s in schema["anyOf"])
    kind = schema.get("type")
    if kind == "array":
        item = _type(schema.get("items", {}))
        return f"{item}[]" if item.isidentifier() else f"({item})[]"
    if kind == "object":
        return f"Record<string, {_type(schema.get('additionalProperties') or {})}>"
    return {
        "string": "string",
        "integer": "number",
        "number": "number",
        "boolean": "boolean",
        "null": "null",
    }.get(str(kind), "unknown")


def _literal(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value).lower()


if __name__ == "__main__":
    TARGET.write_text(typescript())
    sys.stdout.write(f"wrote {TARGET.relative_to(Path.cwd())}\n")
