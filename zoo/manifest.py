"""manifest.json: read, validate, update in place and write atomically.

`posezoo` refuses to write or read a manifest that does not validate against
`manifest.schema.json` (shipped next to this module and published with every build).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import jsonschema

from zoo.errors import PosezooError
from zoo.runtime import RUNTIMES

SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")
SCHEMA = json.loads(SCHEMA_PATH.read_text())


class ManifestError(PosezooError):
    pass


def validate(manifest: dict, where: str = "manifest") -> None:
    try:
        jsonschema.validate(manifest, SCHEMA)
    except jsonschema.ValidationError as e:
        path = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise ManifestError(f"{where}: invalid at {path}: {e.message}") from None


def empty_manifest(version: str) -> dict:
    return {"schema_version": 1, "generator": {"name": "posezoo", "version": version}, "models": []}


def read_manifest(path: Path) -> dict:
    path = Path(path)
    try:
        manifest = json.loads(path.read_text())
        validate(manifest, str(path))
    except FileNotFoundError:
        raise ManifestError(f"{path} does not exist; build one with `posezoo build NAME --out DIR`.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path} is not valid JSON ({e}); rebuild it with `posezoo build`.") from None
    except RecursionError:  # from json or jsonschema: nothing a posezoo build writes is nested that deep
        raise ManifestError(f"{path} is nested too deeply to be a manifest; rebuild it with `posezoo build`.") from None
    return manifest


def upsert_model(manifest: dict, model: dict) -> dict:
    """Update the entry with the same id in place, or append it.

    Artifacts (and rejections) of a (format, precision) the new entry does not cover are kept,
    so building `--formats onnx` after a full build leaves the TFLite entries as they were.
    """
    def key(a):
        return a["format"], a["precision"]

    old = next((m for m in manifest["models"] if m["id"] == model["id"]), None)
    if old is not None:
        built = {key(a) for a in model["artifacts"] + model.get("rejected", [])}
        model = {**model,
                 "artifacts": sorted([a for a in old["artifacts"] if key(a) not in built] + model["artifacts"],
                                     key=_artifact_order),
                 "rejected": sorted([a for a in old.get("rejected", []) if key(a) not in built]
                                    + model.get("rejected", []), key=_artifact_order)}
    models = [model if m["id"] == model["id"] else m for m in manifest["models"]]
    if old is None:
        models.append(model)
    return {**manifest, "models": models}


def _artifact_order(a: dict) -> tuple[int, int]:
    """Formats in the order they were registered (onnx, tflite, ...), then fp32, fp16, int8."""
    formats = list(RUNTIMES)
    return (formats.index(a["format"]) if a["format"] in formats else len(formats),
            ["fp32", "fp16", "int8"].index(a["precision"]))


def write_manifest(path: Path, manifest: dict) -> None:
    """Validate, then replace `path` and the schema beside it atomically (a reader sees the old
    file or the new one, never part of one)."""
    validate(manifest, str(path))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    _write_atomically(path.parent / SCHEMA_PATH.name, SCHEMA_PATH.read_text())


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a published manifest is world-readable
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
