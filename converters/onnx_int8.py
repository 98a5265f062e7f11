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
