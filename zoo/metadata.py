"""Self-describing artifacts: read the manifest's essentials a build embedded in a file
(converters/metadata.py writes them).

ONNX: `metadata_props` entries `posezoo.<key>` (JSON values). TFLite: a model metadata entry
named `posezoo` whose buffer holds the same JSON object.
"""
from __future__ import annotations

import json
from pathlib import Path

from posezoo.errors import UsageError

TFLITE_METADATA_NAME = "posezoo"


def read_embedded(path: Path) -> dict:
    """The essentials embedded in an .onnx or .tflite file ({} where there are none)."""
    path = Path(path)
    if path.suffix not in READERS:
        raise UsageError(f"{path}: posezoo embeds its metadata in {', '.join(READERS)} files only")
    return READERS[path.suffix](path)


def _read_onnx(path: Path) -> dict:
    import onnx

    props = onnx.load(str(path), load_external_data=False).metadata_props
    return {p.key[len("posezoo."):]: json.loads(p.value) for p in props if p.key.startswith("posezoo.")}


def _read_tflite(path: Path) -> dict:
    from ai_edge_litert import schema_py_generated as fb

    model = fb.Model.GetRootAsModel(path.read_bytes(), 0)
    for i in range(model.MetadataLength()):
        meta = model.Metadata(i)
        if meta.Name().decode() == TFLITE_METADATA_NAME:
            return json.loads(model.Buffers(meta.Buffer()).DataAsNumpy().tobytes())
    return {}


READERS = {".onnx": _read_onnx, ".tflite": _read_tflite}
