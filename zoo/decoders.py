"""Keypoint decoders described entirely by the manifest's `decoder` entry (numpy only).

The same functions serve the runtime loader and the build's task-level parity, so the decoding
a runtime performs is the decoding that was verified.
"""
from __future__ import annotations

import numpy as np


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80, 80)))


def decode_regression(spec: dict, outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints regressed directly as a flat vector of `values_per_keypoint` numbers each.

    Returns (K x 2 keypoints in input pixels, K scores).
    """
    flat = np.asarray(outputs[spec["output"]], dtype=np.float32).reshape(-1)
    rows = flat.reshape(-1, spec["values_per_keypoint"])[: spec["num_keypoints"]]
    xy = rows[:, [spec["x_index"], spec["y_index"]]] * spec.get("coordinate_scale", 1.0)
    if "score_index" in spec:
        scores = rows[:, spec["score_index"]]
        if spec.get("score_activation") == "sigmoid":
            scores = _sigmoid(scores)
    else:
        scores = np.ones(len(rows), np.float32)
    return xy, scores


def _hwc(spec: dict, x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)[0]
    return x.transpose(1, 2, 0) if spec.get("layout", "NHWC") == "NCHW" else x


def decode_heatmap(spec: dict, outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """One heatmap per keypoint: the argmax cell, optionally moved a quarter cell towards the
    higher neighbour (`refine: quarter_offset`, the SimpleBaseline/mmpose convention), plus
    `pixel_offset` (0.5 puts the point at the cell's centre), times `stride` input pixels per cell.
    `offsets` (PoseNet): an output of 2K channels read at the argmax cell, the first K the keypoints'
    y offsets, the next K their x offsets, in input pixels, added to that position.
    `score_activation: sigmoid` for heatmaps of logits.

    Returns (K x 2 keypoints in input pixels, K scores = the heatmap maxima)."""
    maps = _hwc(spec, outputs[spec["output"]])
    height, width, channels = maps.shape
    flat = maps.reshape(-1, channels)
    index = flat.argmax(0)
    scores = flat.max(0)
    y, x = (index // width).astype(np.float32), (index % width).astype(np.float32)
    if spec.get("refine", "none") == "quarter_offset":
        k = np.arange(channels)
        xi, yi = (index % width), (index // width)
        inner = (xi > 1) & (xi < width - 1) & (yi > 1) & (yi < height - 1)  # as mmpose: 1 < p < size - 1
        dx = maps[yi, np.minimum(xi + 1, width - 1), k] - maps[yi, np.maximum(xi - 1, 0), k]
        dy = maps[np.minimum(yi + 1, height - 1), xi, k] - maps[np.maximum(yi - 1, 0), xi, k]
        x += np.where(inner, 0.25 * np.sign(dx), 0.0)
        y += np.where(inner, 0.25 * np.sign(dy), 0.0)
    offset, stride = spec.get("pixel_offset", 0.0), spec.get("stride", 1.0)
    xy = np.stack([(x + offset) * stride, (y + offset) * stride], axis=1)
    if "offsets" in spec:
        vectors = _hwc(spec, outputs[spec["offsets"]])
        yi, xi, k = index // width, index % width, np.arange(channels)
        xy = xy + np.stack([vectors[yi, xi, k + channels], vectors[yi, xi, k]], axis=1)
    if spec.get("score_activation") == "sigmoid":
        scores = _sigmoid(scores)
    return xy[: spec.get("num_keypoints", channels)], scores[: spec.get("num_keypoints", channels)]


DECODERS = {"regression": decode_regression, "heatmap": decode_heatmap}


def decode(spec: dict, outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    try:
        fn = DECODERS[spec["type"]]
    except KeyError:
        raise ValueError(f"unknown decoder type {spec.get('type')!r} (known: {sorted(DECODERS)})") from None
    return fn(spec, outputs)
