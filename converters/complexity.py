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
                                 "inference; simplify the graph first (converters.simplify) so every shape is static")
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
