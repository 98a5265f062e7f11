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


DECODERS = {"regression": decode_regression}


def decode(spec: dict, outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    try:
        fn = DECODERS[spec["type"]]
    except KeyError:
        raise ValueError(f"unknown decoder type {spec.get('type')!r} (known: {sorted(DECODERS)})") from None
    return fn(spec, outputs)
