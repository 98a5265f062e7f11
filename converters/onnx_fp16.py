"""ONNX FP32 -> FP16 weights and activations, float32 inputs/outputs kept unless asked otherwise."""
from __future__ import annotations

from pathlib import Path

from .fileio import atomic_path


def onnx_to_fp16(onnx_in: Path, onnx_out: Path, keep_io_types: bool = True) -> Path:
    import onnx
    from onnxconverter_common import float16

    model = float16.convert_float_to_float16(onnx.load(str(onnx_in)), keep_io_types=keep_io_types,
                                             disable_shape_infer=False)
    with atomic_path(onnx_out) as tmp:
        onnx.save(model, tmp)
    return onnx_out
