"""Self-describing artifacts: the manifest's essentials embedded in each file (zoo/metadata.py
reads them back).

ONNX: `metadata_props` entries `posezoo.<key>` (JSON values). TFLite: a model metadata entry
named `posezoo` whose buffer holds the same JSON object. Embedded before hashing, so the
manifest's sha256 covers it.
"""
from __future__ import annotations

import json
from pathlib import Path

from posezoo.metadata import TFLITE_METADATA_NAME

from .fileio import atomic_path


def essentials(model: dict, precision: str) -> dict:
    """What a lone file needs to be used: identity, input spec, decoder, keypoints, provenance."""
    return {"id": model["id"], "family": model["family"], "precision": precision, "task": model["task"],
            "license": model["license"], "source_sha256": model["source"]["sha256"],
            "input": model["input"], "decoder": model["decoder"], "keypoints": model["keypoints"]["names"]}


def embed_onnx(path: Path, info: dict) -> None:
    """Embed `info` into the .onnx file at `path` (rewritten atomically)."""
    with atomic_path(path) as tmp:
        _embed_onnx(Path(path), tmp, info)


def embed_tflite(path: Path, info: dict) -> None:
    """Embed `info` into the .tflite file at `path` (rewritten atomically)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(_embed_tflite(Path(path).read_bytes(), info))


def _embed_onnx(src: Path, dst: Path, info: dict) -> None:
    import onnx

    model = onnx.load(str(src))
    kept = [p for p in model.metadata_props if not p.key.startswith("posezoo.")]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in info.items():
        model.metadata_props.add(key=f"posezoo.{key}", value=json.dumps(value, sort_keys=True))
    onnx.save(model, str(dst))


def _embed_tflite(data: bytes, info: dict) -> bytes:
    import flatbuffers
    import numpy as np
    from ai_edge_litert import schema_py_generated as fb

    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(data, 0))
    payload = np.frombuffer(json.dumps(info, sort_keys=True).encode(), dtype=np.uint8)
    model.metadata = [m for m in (model.metadata or []) if m.name.decode() != TFLITE_METADATA_NAME]
    buffer = fb.BufferT()
    buffer.data = payload
    model.buffers.append(buffer)
    meta = fb.MetadataT()
    meta.name = TFLITE_METADATA_NAME
    meta.buffer = len(model.buffers) - 1
    model.metadata.append(meta)
    builder = flatbuffers.Builder(len(data) + len(payload) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
