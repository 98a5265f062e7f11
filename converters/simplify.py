"""onnxsim simplification, checked: the simplified graph must still be a valid model."""
from __future__ import annotations

from pathlib import Path

from .fileio import atomic_path
from .onnx_to_tflite import ConversionError


def simplify(onnx_in: Path, onnx_out: Path) -> Path:
    import onnx
    import onnxsim

    model, ok = onnxsim.simplify(onnx.load(str(onnx_in)))
    if not ok:
        raise ConversionError(f"onnxsim could not validate the simplified {onnx_in}")
    with atomic_path(onnx_out) as tmp:
        onnx.save(model, tmp)
    return onnx_out
