"""docs/manifest.md, generated from zoo/manifest.schema.json: the runtime contract as a port
(Kotlin, Swift, C++, JavaScript) reads it. `python -m posezoo.scripts.manifest_docs` rewrites the file;
tests/test_schema.py fails when it is out of date."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from posezoo.manifest import SCHEMA

DOC = Path(__file__).resolve().parents[1] / "docs" / "manifest.md"

HEADER = """# manifest.json: the runtime contract

Generated from `zoo/manifest.schema.json` by `python -m posezoo.scripts.manifest_docs`; do not edit.
Every build folder carries the schema next to its `manifest.json`. A runtime validates the
manifest against it before use (the Python loader does: `zoo/schema.py`), resolves each
artifact's `path` inside the manifest's folder, checks the file's `sha256` and `bytes`, then
cuts the input (`input.crop`), feeds it (`input`, the artifact's `io.inputs`, `input_layout`) and
decodes the outputs (`decoder`) exactly as below. A key marked optional with a default behaves as
that default when absent.
"""


def _type(schema: dict) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name})"
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    if "oneOf" in schema:
        return " or ".join(_type(s) for s in schema["oneOf"])
    kind = schema.get("type", "any")
    kind = " \\| ".join(kind) if isinstance(kind, list) else kind
    if kind == "array" and "items" in schema:
        size = ""
        if schema.get("minItems") is not None and schema.get("minItems") == schema.get("maxItems"):
            size = f"{schema['minItems']} x "
        return f"array of {size}{_type(schema['items'])}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"object of {_type(schema['additionalProperties'])}"
    return kind


def _bounds(schema: dict) -> str:
    parts = []
    for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<=")):
        if key in schema:
            parts.append(f"{sign} {schema[key]}")
    if "pattern" in schema:
        parts.append(f"matches `{schema['pattern']}`")
    return ", ".join(parts)


def _table(schema: dict) -> list[str]:
    required = schema.get("required", [])
    rows = ["| key | type | | description |", "|---|---|---|---|"]
    for key, sub in schema.get("properties", {}).items():
        need = "required" if key in required else (f"default `{json.dumps(sub['default'])}`" if "default" in sub
                                                   else "optional")
        text = "; ".join(filter(None, [sub.get("description", ""), _bounds(sub)])).replace("|", "\\|")
        rows.append(f"| `{key}` | {_type(sub)} | {need} | {text} |")
    for key, needs in schema.get("dependentRequired", {}).items():
        rows.append(f"| | | | with `{key}`, also required: {', '.join(f'`{n}`' for n in needs)} |")
    if schema.get("additionalProperties") is False:
        rows.append("| | | | no other keys |")
    return rows


def _section(name: str, schema: dict) -> list[str]:
    lines = [f"## {name}", ""]
    if schema.get("description"):
        lines += [schema["description"], ""]
    if "oneOf" in schema:
        for branch in schema["oneOf"]:
            if "$ref" in branch:
                lines.append(f"- {_type(branch)}")
            else:
                kind = next((f"`{k}: {json.dumps(v['const'])}`" for k, v in branch.get("properties", {}).items()
                             if "const" in v), "one form")
                lines += ["", f"### {name} with {kind}", "", branch.get("description", ""), "", *_table(branch)]
        lines.append("")
    elif "properties" in schema:
        lines += [*_table(schema), ""]
    elif schema.get("type") == "array" and isinstance(schema.get("items"), dict) and "properties" in schema["items"]:
        lines += ["An array; each item:", "", *_table(schema["items"]), ""]
    else:
        lines += [f"Type: {_type(schema)} {_bounds(schema)}".rstrip(), ""]
    return lines


def render(schema: dict = SCHEMA) -> str:
    lines = [HEADER, "## manifest (top level)", "", schema.get("title", ""), "", *_table(schema), ""]
    for name, sub in schema["$defs"].items():
        lines += _section(name, sub)
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    DOC.write_text(render())
    print(f"wrote {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
