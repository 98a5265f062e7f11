"""ONNX FP32 -> INT8 static QDQ (per-channel INT8 weights, INT8 activations) with onnxruntime.

Calibrated on real preprocessed inputs. `float_nodes` names nodes kept in float (the mixed
precision the sensitivity search chose); both the node and the tensors only it touches then
stay float.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .fileio import atomic_path

METHODS = ("minmax", "percentile", "entropy")


PASS_THROUGH = {"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Sigmoid", "Relu", "Clip"}


def output_head_nodes(onnx_path: Path) -> list[str]:
    """Nodes that compute the graph outputs: each output's producer chain back through reshapes
    and activations, up to and including the first computing node (the head's Conv/Gemm).

    A regression head's output often packs values of very different ranges in one tensor
    (BlazePose: x, y in pixels next to visibility logits), and one per-tensor INT8 scale for
    all of them ruins the coordinates: on BlazePose Heavy, quantizing that single Conv alone
    drops PCK@0.05 from 1.0 to 0.64. These nodes stay float."""
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    producer = {out: node for node in graph.node for out in node.output}
    heads: list[str] = []
    for output in graph.output:
        node = producer.get(output.name)
        while node is not None:
            if node.name not in heads:
                heads.append(node.name)
            if node.op_type not in PASS_THROUGH:
                break
            node = producer.get(node.input[0])
    return heads


def all_node_names(onnx_path: Path) -> list[str]:
    import onnx

    return [n.name for n in onnx.load(str(onnx_path)).graph.node]


def onnx_to_int8(onnx_in: Path, onnx_out: Path, calibration: list[dict[str, np.ndarray]],
                 method: str = "minmax", float_nodes: list[str] = ()) -> Path:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r} (known: {METHODS})")
    if not calibration:
        raise ValueError("INT8 quantization needs at least one calibration input")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(calibration)

        def get_next(self):
            return next(self._it, None)

    calib_method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                    "entropy": CalibrationMethod.Entropy}[method]
    with atomic_path(onnx_out) as tmp:
        quantize_static(str(onnx_in), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=calib_method, nodes_to_exclude=list(float_nodes),
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True,
                                       "CalibPercentile": 99.999, "CalibTensorRangeSymmetric": False})
    return onnx_out
