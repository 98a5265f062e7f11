"""Each activation's int8 range, chosen by quantization error over every calibration input.

For every float tensor a model computes, over all calibration inputs: the pair of clip points
(each end at the tensor's extreme or at one of `CLIP_FRACTIONS` of its values) with the least
mean squared int8 round-trip error (`least_error_range`). A long thin tail costs every other
value its resolution under the extremes' range; clipping it costs only the tail.

Both INT8 formats use it (converters/onnx_int8.py, converters/tflite_int8.py); each reads its
model's tensors its own way. Measured on EfficientPose I's ONNX INT8, all int8 but the heads
(issue 14): onnxruntime's min/max ranges read PCK@0.05 0.945 on the gate people (robustness 0.902),
these 0.976 (0.943). Order does not matter: an input's values are drawn with a seed of its own
bytes, so the ranges of a set of inputs are the same in any order.
"""
from __future__ import annotations

import zlib
from typing import Iterable

import numpy as np

CLIP_FRACTIONS = (1e-5, 1e-4, 1e-3, 1e-2)  # of a tensor's values a range may clip at either end
VALUES_PER_INPUT = 2048  # of each tensor's values per calibration input, drawn to choose its range
DESCRIPTION = ("mse: per-tensor ranges by least int8 round-trip error over all calibration inputs (each end at the "
               f"extreme or clipping {', '.join(f'{f:g}' for f in CLIP_FRACTIONS)} of the values)")


def least_error_ranges(runs: Iterable[tuple[np.ndarray, dict[str, np.ndarray]]]) -> dict[str, tuple[float, float]]:
    """{tensor name: (min, max)} from `runs`: per calibration input, (the input, {tensor name: its
    float values on that input})."""
    drawn: dict[str, list[np.ndarray]] = {}
    extremes: dict[str, tuple[float, float]] = {}
    for feed, tensors in runs:
        rng = np.random.default_rng(zlib.crc32(np.ascontiguousarray(feed).tobytes()))
        for name in tensors:
            values = np.asarray(tensors[name], np.float32).ravel()
            if not values.size:
                continue
            low, high = extremes.get(name, (np.inf, -np.inf))
            extremes[name] = min(low, float(values.min())), max(high, float(values.max()))
            drawn.setdefault(name, []).append(values if values.size <= VALUES_PER_INPUT
                                              else values[rng.integers(0, values.size, VALUES_PER_INPUT)])
    return {name: least_error_range(np.concatenate(drawn[name]), *extremes[name]) for name in extremes}


def least_error_range(values: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """The (min, max) of an int8 range over `values` (extremes `low`, `high`) with the least mean
    squared round-trip error: each end at its extreme or clipping CLIP_FRACTIONS of the values;
    the range always holds 0, as an int8 zero point needs."""
    lows = [min(float(v), 0.0) for v in (low, *np.quantile(values, CLIP_FRACTIONS))]
    highs = [max(float(v), 0.0) for v in (high, *np.quantile(values, [1 - f for f in CLIP_FRACTIONS]))]
    return min(((a, b) for a in lows for b in highs), key=lambda ab: _int8_error(values, *ab))


def _int8_error(values: np.ndarray, low: float, high: float) -> float:
    scale = (high - low) / 255 or 1.0
    zero = np.round(-low / scale)
    restored = (np.clip(np.round(values / scale) + zero, 0, 255) - zero) * scale
    return float(np.mean((restored - values) ** 2))
