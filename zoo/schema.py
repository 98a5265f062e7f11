"""Validation against manifest.schema.json with the standard library alone.

The runtime side (loader, decoders, manifest reader) promises numpy and a runtime as its only
dependencies, so it cannot use the jsonschema package. This checks the keywords of JSON Schema
2020-12 that manifest.schema.json uses (`KEYWORDS`; a schema using any other is refused, so a
keyword is never silently ignored), with the same results as jsonschema (tests/test_schema.py
compares the two on a manifest entry per recipe variant, each key deleted or spoiled). Where a `oneOf`
fails, the error comes from the branch the data meant (the one whose `const` matches, e.g. the
decoder `type`), so it names the missing key rather than "valid under none".
"""
from __future__ import annotations

import re

from posezoo.errors import PosezooError

KEYWORDS = {"$schema", "$id", "$defs", "$ref", "title", "description", "default", "type", "enum", "const",
            "properties", "required", "additionalProperties", "dependentRequired", "items", "minItems",
            "maxItems", "minLength", "pattern", "minimum", "maximum", "exclusiveMinimum", "oneOf"}

TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


class SchemaError(PosezooError):
    """`path`: where in the document (keys and indices), `message`: what is wrong there."""

    def __init__(self, path: tuple, message: str):
        self.path, self.message = path, message
        super().__init__(f"{'/'.join(map(str, path)) or '(top level)'}: {message}")


def check_keywords(schema) -> None:
    """Refuse a schema that uses a keyword this module does not implement."""
    if isinstance(schema, dict):
        unknown = set(schema) - KEYWORDS
        if unknown:
            raise ValueError(f"schema keywords {sorted(unknown)} are not implemented by zoo/schema.py")
        for key, value in schema.items():
            if key in ("properties", "$defs"):
                for sub in value.values():
                    check_keywords(sub)
            elif key in ("items", "additionalProperties", "oneOf"):
                check_keywords(value)
    elif isinstance(schema, list):
        for sub in schema:
            check_keywords(sub)


def validate(document, schema: dict) -> None:
    """Raise SchemaError at the first place `document` breaks `schema` (the root schema, whose
    `#/$defs/...` references are resolved)."""
    check_keywords(schema)
    errors = _errors(document, schema, schema, ())
    if errors:
        raise errors[0]


def _is_type(value, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool) or isinstance(value, float) and value.is_integer()
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, TYPES[name]) and not (name != "boolean" and isinstance(value, bool))


def _equal(a, b) -> bool:
    """JSON equality: 1 == 1.0, but True is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def _errors(value, schema: dict, root: dict, path: tuple) -> list[SchemaError]:
    if "$ref" in schema:
        errors = _errors(value, _resolve(schema["$ref"], root), root, path)
        if errors:
            return errors
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, n) for n in names):
            return [SchemaError(path, f"{value!r} is not of type {' or '.join(map(repr, names))}")]
    if "const" in schema and not _equal(value, schema["const"]):
        return [SchemaError(path, f"{schema['const']!r} was expected, not {value!r}")]
    if "enum" in schema and not any(_equal(value, e) for e in schema["enum"]):
        return [SchemaError(path, f"{value!r} is not one of {schema['enum']!r}")]
    if "oneOf" in schema:
        errors = _one_of(value, schema["oneOf"], root, path)
        if errors:
            return errors
    if isinstance(value, dict):
        return _object_errors(value, schema, root, path)
    if isinstance(value, list):
        return _array_errors(value, schema, root, path)
    if isinstance(value, str):
        return _string_errors(value, schema, path)
    if _is_type(value, "number"):
        return _number_errors(value, schema, path)
    return []


def _one_of(value, branches: list, root: dict, path: tuple) -> list[SchemaError]:
    results = [_errors(value, branch, root, path) for branch in branches]
    passing = [i for i, errors in enumerate(results) if not errors]
    if len(passing) == 1:
        return []
    if passing:
        return [SchemaError(path, f"{value!r} is valid under {len(passing)} of the alternatives, not exactly one")]
    # The branch the data meant, by its discriminating `const` (a crop's `kind`, a decoder's
    # `type`): its error names what is missing or wrong.
    discriminators = [_consts(branch, root) for branch in branches]
    for consts, errors in zip(discriminators, results):
        if consts and isinstance(value, dict) and all(k in value and _equal(value[k], c) for k, c in consts.items()):
            return errors
    keys = {key for consts in discriminators for key in consts}
    if isinstance(value, dict) and len(keys) == 1:
        (key,) = keys
        allowed = [consts[key] for consts in discriminators if key in consts]
        if key not in value:
            return [SchemaError(path, f"{key!r} is a required property (one of {allowed!r})")]
        return [SchemaError(path + (key,), f"{value[key]!r} is not one of {allowed!r}")]
    return [SchemaError(path, f"{value!r} is not valid under any of the given schemas")]


def _consts(branch: dict, root: dict) -> dict:
    """The `const` properties of `branch` (a schema or a `#/$defs/...` reference): what tells
    its data from the other branches'."""
    while "$ref" in branch:
        branch = _resolve(branch["$ref"], root)
    return {key: sub["const"] for key, sub in branch.get("properties", {}).items() if "const" in sub}


def _resolve(reference: str, root: dict) -> dict:
    target = root
    for part in reference.removeprefix("#/").split("/"):
        target = target[part]
    return target


def _object_errors(value: dict, schema: dict, root: dict, path: tuple) -> list[SchemaError]:
    for key in schema.get("required", []):
        if key not in value:
            return [SchemaError(path, f"{key!r} is a required property")]
    for key, needs in schema.get("dependentRequired", {}).items():
        missing = [n for n in needs if key in value and n not in value]
        if missing:
            return [SchemaError(path, f"{missing[0]!r} is a dependency of {key!r}")]
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if key in properties:
            errors = _errors(item, properties[key], root, path + (key,))
        elif extra is False:
            errors = [SchemaError(path, f"additional property {key!r} is not allowed "
                                        f"(allowed: {', '.join(properties)})")]
        elif isinstance(extra, dict):
            errors = _errors(item, extra, root, path + (key,))
        else:
            errors = []
        if errors:
            return errors
    return []


def _array_errors(value: list, schema: dict, root: dict, path: tuple) -> list[SchemaError]:
    if len(value) < schema.get("minItems", 0):
        return [SchemaError(path, f"{value!r} should have at least {schema['minItems']} items")]
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        return [SchemaError(path, f"{value!r} should have at most {schema['maxItems']} items")]
    if "items" in schema:
        for i, item in enumerate(value):
            errors = _errors(item, schema["items"], root, path + (i,))
            if errors:
                return errors
    return []


def _string_errors(value: str, schema: dict, path: tuple) -> list[SchemaError]:
    if len(value) < schema.get("minLength", 0):
        return [SchemaError(path, f"{value!r} should have at least {schema['minLength']} characters")]
    if "pattern" in schema and not re.search(schema["pattern"], value):
        why = f": {schema['description']}" if "description" in schema else ""
        return [SchemaError(path, f"{value!r} does not match {schema['pattern']!r}{why}")]
    return []


def _number_errors(value, schema: dict, path: tuple) -> list[SchemaError]:
    if "minimum" in schema and value < schema["minimum"]:
        return [SchemaError(path, f"{value!r} is less than the minimum of {schema['minimum']!r}")]
    if "maximum" in schema and value > schema["maximum"]:
        return [SchemaError(path, f"{value!r} is greater than the maximum of {schema['maximum']!r}")]
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        return [SchemaError(path, f"{value!r} is less than or equal to the minimum of {schema['exclusiveMinimum']!r}")]
    return []
