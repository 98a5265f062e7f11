"""Parameter count and FLOPs (multiply-accumulates) of an ONNX graph."""
from __future__ import annotations

from pathlib import Path

import numpy as np

FLOPS_CONVENTION = ("multiply-accumulates of Conv/ConvTranspose/MatMul/Gemm, each node once (mmcv's get_flops also "
                    "counts BatchNorm x2, activations, pooling, upsampling and biases)")


def complexity(onnx_path: Path) -> dict:
    import onnx
    from onnx import numpy_helper, shape_inference

    model = shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:  # the TorchScript exporter shares equal constants through Identity nodes
        if node.op_type == "Identity" and node.input[0] in inits:
            inits[node.output[0]] = inits[node.input[0]]
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(graph.value_info) + list(graph.output) + list(graph.input)}
    consumed_as_weight = set()
    flops = 0
    for node in graph.node:
        if node.op_type in ("Conv", "ConvTranspose") and node.input[1] in inits:
            w = inits[node.input[1]]
            out = shapes.get(node.output[0], [])
            counted = out if node.op_type == "Conv" else shapes.get(node.input[0], [])
            if not counted or 0 in counted:
                raise ValueError(f"{onnx_path}: the shape around {node.name or node.op_type} is unknown after shape "
                                 "inference; simplify the graph first (posezoo.converters.simplify) so every shape is static")
            if node.op_type == "Conv":
                flops += int(np.prod(out)) * int(np.prod(w.shape[1:]))
            else:  # each input element is scattered over Cout/group x kh x kw outputs
                flops += int(np.prod(shapes.get(node.input[0], []))) * int(np.prod(w.shape[1:]))
            consumed_as_weight.update(node.input[1:])
        elif node.op_type in ("MatMul", "Gemm") and any(i in inits for i in node.input[:2]):
            a, b = (shapes.get(node.input[0]) or list(inits[node.input[0]].shape)), \
                   (shapes.get(node.input[1]) or list(inits[node.input[1]].shape))
            flops += int(np.prod(a)) * int(b[-1] if node.op_type == "MatMul" or not _attr(node, "transB") else b[0])
            consumed_as_weight.update(i for i in node.input if i in inits)
        elif node.op_type in ("BatchNormalization", "PRelu", "Mul", "Add"):
            consumed_as_weight.update(i for i in node.input[1:] if i in inits and inits[i].size > 1)
    params = sum(int(inits[n].size) for n in consumed_as_weight if inits[n].dtype.kind == "f")
    return {"params": params, "flops": flops, "flops_convention": FLOPS_CONVENTION}


def _attr(node, name):
    return next((a.i for a in node.attribute if a.name == name), 0)


def _share(weights) -> float:
    """Share of the weight bytes (constant tensors of 2+ dimensions: kernels, not biases or shapes)
    stored as 8-bit integers, from (dtype, shape) pairs. A file whose float layers hold most
    weight bytes is barely INT8, whatever share of its ops are integer."""
    counts = {"int8": 0, "other": 0}
    for dtype, shape in weights:
        if len(shape) >= 2:
            size = np.dtype(dtype).itemsize
            counts["int8" if size == 1 else "other"] += int(np.prod(shape)) * size
    total = counts["int8"] + counts["other"]
    return round(counts["int8"] / total, 4) if total else 0.0


def onnx_int8_weight_share(path: Path) -> float:
    import onnx
    from onnx import helper

    return _share((helper.tensor_dtype_to_np_dtype(init.data_type), list(init.dims))
                  for init in onnx.load(str(path)).graph.initializer)


def tflite_int8_weight_share(path: Path) -> float:
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    types = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 7: np.int16, 9: np.int8}
    return _share((types[t.type], list(t.shape)) for t in model.subgraphs[0].tensors
                  if model.buffers[t.buffer].data is not None and len(model.buffers[t.buffer].data)
                  and t.type in types)
