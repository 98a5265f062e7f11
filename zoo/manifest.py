"""manifest.json: read, validate, update in place and write atomically.

`posezoo` refuses to write or read a manifest that does not validate against
`manifest.schema.json` (shipped next to this module and published with every build).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from posezoo import schema
from posezoo.errors import PosezooError
from posezoo.runtime import RUNTIMES

SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")
SCHEMA = json.loads(SCHEMA_PATH.read_text())


class ManifestError(PosezooError):
    pass


def validate(manifest, where: str = "manifest", error: type[PosezooError] = ManifestError) -> None:
    """Refuse a manifest that breaks the schema with an `error` naming the key (and where a
    manifest's keys must agree with each other, naming both)."""
    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if version not in (None, 1):
        raise error(f"{where} has schema_version {version!r}; this posezoo reads version 1: upgrade posezoo or rebuild")
    try:
        schema.validate(manifest, SCHEMA)
    except schema.SchemaError as e:
        path = "/".join(str(p) for p in e.path) or "(top level)"
        raise error(f"{where}: invalid at {path}: {e.message}; rebuild it with `posezoo build`") from None
    except RecursionError:  # nothing a posezoo build writes is nested that deep
        raise error(f"{where} is nested too deeply to be a manifest; rebuild it with `posezoo build`") from None
    for key, problem in _inconsistencies(manifest):
        raise error(f"{where}: invalid at {key}: {problem}; rebuild it with `posezoo build`")


def _inconsistencies(manifest: dict):
    ids = [model["id"] for model in manifest["models"]]
    for i, model in enumerate(manifest["models"]):
        if ids.index(model["id"]) != i:
            yield f"models/{i}/id", f"{model['id']!r} is the id of models/{ids.index(model['id'])} too"
        for key, problem in model_inconsistencies(model):
            yield f"models/{i}/{key}", problem


def model_inconsistencies(model: dict):
    """(key, problem) where the model's entry names an output or keypoint it does not have."""
    outputs = {o["name"] for o in model["outputs"]}
    decoder = model["decoder"]
    named = {"output": decoder["output"], "offsets": decoder.get("offsets"),
             **{f"multi_pose/{k}": decoder.get("multi_pose", {}).get(k) for k in ("displacements_fwd", "displacements_bwd")}}
    for key, name in named.items():
        if name is not None and name not in outputs:
            yield f"decoder/{key}", f"{name!r} is not one of the model's outputs {sorted(outputs)}"
    names = model["keypoints"]["names"]
    for where, crop in (("input/crop", model["input"]["crop"]), ("calibration_crop", model.get("calibration_crop"))):
        for key in ("center_keypoints", "up_keypoints"):
            unknown = [n for n in (crop or {}).get(key, []) if n not in names]
            if unknown:
                yield f"{where}/{key}", f"{unknown} are not among the model's keypoints/names"


def empty_manifest(version: str) -> dict:
    return {"schema_version": 1, "generator": {"name": "posezoo", "version": version}, "models": []}


def read_manifest(path, error: type[PosezooError] = ManifestError) -> dict:
    """The manifest at `path`, validated; anything else is an `error` naming the file and what to do."""
    path = Path(path)
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"manifest {path} does not exist: pass the manifest.json of a posezoo build folder "
                    "(`posezoo build NAME --out DIR` makes one)") from None
    except OSError as e:
        raise error(f"manifest {path} cannot be read ({e.strerror})") from None
    except ValueError as e:  # not JSON or not UTF-8
        raise error(f"manifest {path} is not valid JSON ({e}); rebuild it with `posezoo build`") from None
    except RecursionError:  # nested deeper than the parser goes
        raise error(f"manifest {path} is nested too deeply to be a manifest; rebuild it with `posezoo build`") from None
    if not isinstance(manifest, dict):
        raise error(f"manifest {path} is not a JSON object; rebuild it with `posezoo build`")
    validate(manifest, f"manifest {path}", error)
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
