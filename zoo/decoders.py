"""Keypoint decoders described entirely by the manifest's `decoder` entry (numpy only).

The same functions serve the runtime loader and the build's task-level parity, so the decoding
a runtime performs is the decoding that was verified.
"""
from __future__ import annotations

import numpy as np

from posezoo.errors import PosezooError


class DecoderError(PosezooError):
    """A manifest's decoder of a type this module does not know."""


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80, 80)))


def decode_regression(spec: dict, outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints regressed directly as a flat vector of `values_per_keypoint` numbers each.

    With `multi_pose` (MoveNet MultiPose: `instances` rows of `values_per_instance` numbers, the
    keypoints first, the instance's score at `instance_score_index`), the highest-scoring instance.
    Returns (K x 2 keypoints in input pixels, K scores).
    """
    flat = np.asarray(outputs[spec["output"]], dtype=np.float32).reshape(-1)
    if "multi_pose" in spec:
        instances = _instances(spec, flat)
        flat = instances[int(np.argmax(instances[:, spec["multi_pose"]["instance_score_index"]]))]
    rows = flat[: spec["num_keypoints"] * spec["values_per_keypoint"]].reshape(-1, spec["values_per_keypoint"])
    xy = rows[:, [spec["x_index"], spec["y_index"]]] * spec.get("coordinate_scale", 1.0)
    if "score_index" in spec:
        scores = rows[:, spec["score_index"]]
        if spec.get("score_activation") == "sigmoid":
            scores = _sigmoid(scores)
    else:
        scores = np.ones(len(rows), np.float32)
    return xy, scores


def _instances(spec: dict, flat: np.ndarray) -> np.ndarray:
    multi = spec["multi_pose"]
    return flat.reshape(multi["instances"], multi["values_per_instance"])


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


def found(scores, spec: dict) -> np.ndarray:
    """Per keypoint, whether the decoder `spec` reports it as found: a decoder with a `min_score`
    reports a keypoint scoring below it as not found (a heatmap's argmax on a flat, empty map is
    noise: its position is no answer); without one, every keypoint is found."""
    scores = np.asarray(scores)
    min_score = spec.get("min_score")
    return scores >= min_score if min_score is not None else np.ones(scores.shape, bool)


def keypoint_errors(xy, scores, other_xy, other_scores, spec: dict, unit: float = 1.0) -> np.ndarray:
    """Per keypoint, how far two decodings of one person lie apart, in `unit`s (parity's: the
    crop's longer side), and 0 where neither finds the keypoint (`found`): both saying "not found"
    is agreement; where either finds it, the positions are compared (a score just across the
    threshold on one side is no disagreement)."""
    errors = np.linalg.norm(np.asarray(xy) - np.asarray(other_xy), axis=-1) / unit
    return np.where(found(scores, spec) | found(other_scores, spec), errors, 0.0)


DECODERS = {"regression": decode_regression, "heatmap": decode_heatmap}


def decode(spec: dict, outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    try:
        fn = DECODERS[spec["type"]]
    except KeyError:
        raise DecoderError(f"unknown decoder type {spec.get('type')!r} (known: {sorted(DECODERS)})") from None
    return fn(spec, outputs)


def decode_multi_pose(spec: dict, outputs: dict[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Every person `spec["multi_pose"]` describes: a regression decoder's instances (MoveNet
    MultiPose) or a heatmap decoder's PersonLab decoding (PoseNet)."""
    if spec["type"] == "regression":
        return _regressed_poses(spec, outputs)
    return _personlab_poses(spec, outputs)


def _regressed_poses(spec: dict, outputs: dict[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """The instances scoring at least `score_threshold`, strongest first."""
    multi = spec["multi_pose"]
    instances = _instances(spec, np.asarray(outputs[spec["output"]], dtype=np.float32).reshape(-1))
    scores = instances[:, multi["instance_score_index"]]
    poses = []
    for i in np.argsort(-scores, kind="stable"):
        if scores[i] < multi.get("score_threshold", 0.0):
            break
        xy, kp_scores = decode_regression({k: v for k, v in spec.items() if k != "multi_pose"},
                                          {spec["output"]: instances[i]})
        poses.append((xy, kp_scores, float(scores[i])))
    return poses


def _personlab_poses(spec: dict, outputs: dict[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """PoseNet's multi-person decoding (PersonLab), described by `spec["multi_pose"]`.

    Every keypoint cell whose score (sigmoid of the heatmap) is at least `score_threshold` and the
    highest within `local_maximum_radius` cells is a candidate root, strongest first. A root
    within `nms_radius` input pixels of the same keypoint of a pose already found is skipped;
    otherwise the pose grows from it along the skeleton tree `edges` ([parent, child] pairs,
    displacement channel i = edge i, y then x): first towards the root of the tree with the
    backward displacements, then out to the leaves with the forward ones, each jump refined
    `refine_steps` times with the offset vectors at the nearest cell. A pose scores the mean of its
    keypoint scores, counting none that another pose already has within `nms_radius`.

    Returns up to `max_poses` (K x 2 keypoints in input pixels, K scores, pose score) in the order
    found (strongest root first), as Google's PoseNet code does.
    """
    multi = spec["multi_pose"]
    scores = _sigmoid(_hwc(spec, outputs[spec["output"]]))
    offsets = _hwc(spec, outputs[spec["offsets"]])
    forward = _hwc(spec, outputs[multi["displacements_fwd"]])
    backward = _hwc(spec, outputs[multi["displacements_bwd"]])
    height, width, count = scores.shape
    stride, edges = float(spec.get("stride", 1.0)), multi["edges"]
    radius, nms = int(multi.get("local_maximum_radius", 1)), float(multi.get("nms_radius", 20.0))
    steps = int(multi.get("refine_steps", 2))

    def cell(point):
        return (min(max(int(round(point[0] / stride)), 0), height - 1),
                min(max(int(round(point[1] / stride)), 0), width - 1))

    def at_cell(y, x, k):  # (y, x) position of keypoint k from cell (y, x) and its offset vector
        return np.array([y * stride + offsets[y, x, k], x * stride + offsets[y, x, k + count]])

    def jump(edge, source, target, displacements):
        y, x = cell(source)
        point = source + np.array([displacements[y, x, edge], displacements[y, x, edge + len(edges)]])
        for _ in range(steps):
            point = at_cell(*cell(point), target)
        y, x = cell(point)
        return point, scores[y, x, target]

    candidates = []
    for k in range(count):
        for y in range(height):
            for x in range(width):
                s = scores[y, x, k]
                window = scores[max(y - radius, 0):y + radius + 1, max(x - radius, 0):x + radius + 1, k]
                if s >= multi.get("score_threshold", 0.5) and s >= window.max():
                    candidates.append((s, k, y, x))
    candidates.sort(key=lambda c: -c[0])
    poses: list[tuple[np.ndarray, np.ndarray, float]] = []

    def taken(point, k):
        return any(np.sum((p[0][k] - point) ** 2) <= nms * nms for p in poses)

    for s, k, y, x in candidates:
        if len(poses) >= multi.get("max_poses", 10):
            break
        root = at_cell(y, x, k)
        if taken(root, k):
            continue
        points, point_scores = {k: root}, {k: s}
        for direction, displacements in ((range(len(edges) - 1, -1, -1), backward), (range(len(edges)), forward)):
            for e in direction:
                parent, child = edges[e]
                source, target = (child, parent) if displacements is backward else (parent, child)
                if source in points and target not in points:
                    points[target], point_scores[target] = jump(e, points[source], target, displacements)
        yx = np.array([points[j] for j in range(count)])
        kp_scores = np.array([point_scores[j] for j in range(count)], np.float32)
        pose_score = float(sum(kp_scores[j] for j in range(count) if not taken(yx[j], j)) / count)
        poses.append((yx, kp_scores, pose_score))
    return [(yx[:, ::-1].astype(np.float32), kp, score) for yx, kp, score in poses]
