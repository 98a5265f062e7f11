"""ONNX FP32 -> FP16 weights and activations, float32 inputs/outputs kept unless asked otherwise.

Two gaps of onnxconverter-common are closed around it:
- it retypes every float tensor to float16 but leaves the `to` of the graph's own Cast-to-float
  nodes at float32 (MoveNet casts its int32 pixels and argmax indices to float), so their outputs
  would contradict their declared float16 type: we point those casts at float16;
- a constant shared by a node it keeps in float32 (its op block list: Min, Max, TopK, Range, ...)
  and a node it converts stays float32 for both, and the converted node then mixes float16 and
  float32 (MoveNet MultiPose: the 1.0 of `1 - x` is also a Min's bound): each consumer gets its
  own copy of a small shared constant first.
"""
from __future__ import annotations

from pathlib import Path

from .fileio import atomic_path

SHARED_CONSTANT_MAX_ELEMENTS = 1024  # copies of scalars and short vectors only; weights are not shared


def onnx_to_fp16(onnx_in: Path, onnx_out: Path, keep_io_types: bool = True) -> Path:
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(onnx_in))
    _unshare_small_float_constants(model)
    model = float16.convert_float_to_float16(model, keep_io_types=keep_io_types, disable_shape_infer=False)
    half = {v.name for v in model.graph.value_info if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16}
    for node in model.graph.node:
        if node.op_type == "Cast" and node.output[0] in half:
            for attribute in node.attribute:
                if attribute.name == "to" and attribute.i == onnx.TensorProto.FLOAT:
                    attribute.i = onnx.TensorProto.FLOAT16
    with atomic_path(onnx_out) as tmp:
        onnx.save(model, tmp)
    return onnx_out


def _unshare_small_float_constants(model) -> None:
    """Give every node after the first that reads a small float32 initializer its own copy."""
    import numpy as np
    import onnx

    small = {i.name: i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT
             and int(np.prod(i.dims)) <= SHARED_CONSTANT_MAX_ELEMENTS}
    readers: dict[str, int] = {}
    for node in model.graph.node:
        for k, name in enumerate(node.input):
            if name not in small:
                continue
            readers[name] = readers.get(name, 0) + 1
            if readers[name] > 1:
                copy = onnx.TensorProto()
                copy.CopyFrom(small[name])
                copy.name = f"{name}_copy{readers[name] - 1}"
                model.graph.initializer.append(copy)
                node.input[k] = copy.name
