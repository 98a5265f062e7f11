"""ONNX FP32 -> FP16 weights and activations, float32 inputs/outputs kept unless asked otherwise.

onnxconverter-common retypes every float tensor to float16 but leaves the `to` of the graph's own
Cast-to-float nodes at float32 (MoveNet casts its int32 pixels and argmax indices to float), so
their outputs would contradict their declared float16 type: we point those casts at float16."""
from __future__ import annotations

from pathlib import Path

from .fileio import atomic_path


def onnx_to_fp16(onnx_in: Path, onnx_out: Path, keep_io_types: bool = True) -> Path:
    import onnx
    from onnxconverter_common import float16

    model = float16.convert_float_to_float16(onnx.load(str(onnx_in)), keep_io_types=keep_io_types,
                                             disable_shape_infer=False)
    half = {v.name for v in model.graph.value_info if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16}
    for node in model.graph.node:
        if node.op_type == "Cast" and node.output[0] in half:
            for attribute in node.attribute:
                if attribute.name == "to" and attribute.i == onnx.TensorProto.FLOAT:
                    attribute.i = onnx.TensorProto.FLOAT16
    with atomic_path(onnx_out) as tmp:
        onnx.save(model, tmp)
    return onnx_out
