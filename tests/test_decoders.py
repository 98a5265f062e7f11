import numpy as np
import pytest

from posezoo.decoders import DecoderError, decode, found, keypoint_errors


def _maps(h, w, peaks):
    maps = np.zeros((1, h, w, len(peaks)), np.float32)
    for k, (y, x, v) in enumerate(peaks):
        maps[0, y, x, k] = v
    return maps


def test_heatmap_argmax_with_cell_centre_and_stride():
    spec = {"type": "heatmap", "output": "m", "stride": 4.0, "pixel_offset": 0.5}
    xy, scores = decode(spec, {"m": _maps(16, 12, [(3, 5, 0.8), (0, 11, 0.4)])})
    np.testing.assert_allclose(xy, [[(5 + 0.5) * 4, (3 + 0.5) * 4], [(11 + 0.5) * 4, 0.5 * 4]])
    np.testing.assert_allclose(scores, [0.8, 0.4])


def test_heatmap_quarter_offset_moves_towards_the_higher_neighbour_like_mmpose():
    maps = _maps(16, 12, [(6, 5, 1.0), (1, 1, 1.0)])
    maps[0, 6, 6, 0], maps[0, 5, 5, 0] = 0.5, 0.3     # right and up neighbours higher than left/down
    maps[0, 1, 2, 1] = 0.5                             # at the border (p <= 1): no shift, as in mmpose
    spec = {"type": "heatmap", "output": "m", "refine": "quarter_offset", "stride": 4.0}
    xy, _ = decode(spec, {"m": maps})
    np.testing.assert_allclose(xy, [[5.25 * 4, 5.75 * 4], [1 * 4, 1 * 4]])


def test_heatmap_nchw_layout():
    nhwc = _maps(8, 6, [(2, 3, 0.9), (7, 0, 0.7)])
    spec = {"type": "heatmap", "output": "m", "layout": "NCHW"}
    xy, scores = decode(spec, {"m": nhwc.transpose(0, 3, 1, 2)})
    np.testing.assert_allclose(xy, [[3, 2], [0, 7]])
    np.testing.assert_allclose(scores, [0.9, 0.7])


def test_unknown_decoder_is_a_clear_error():
    with pytest.raises(DecoderError, match="unknown decoder type 'nope'"):
        decode({"type": "nope", "output": "x"}, {})


def test_heatmap_with_posenet_offsets_and_sigmoid_scores():
    """PoseNet: position = cell x stride + the offset vector at that cell (y offsets in the first K
    channels, x offsets in the next K); scores are the sigmoid of the heatmap logits."""
    maps = _maps(9, 9, [(2, 3, 7.0), (8, 0, 1.0)]) - 5.0  # logits: peaks 2 and -4 over a -5 floor
    offsets = np.zeros((1, 9, 9, 4), np.float32)
    offsets[0, 2, 3] = [7.5, 0.0, -3.25, 0.0]  # keypoint 0: dy 7.5, dx -3.25
    offsets[0, 8, 0] = [0.0, 1.0, 0.0, 2.0]  # keypoint 1: dy 1, dx 2
    spec = {"type": "heatmap", "output": "h", "stride": 32.0, "offsets": "o", "score_activation": "sigmoid"}
    xy, scores = decode(spec, {"h": maps, "o": offsets})
    np.testing.assert_allclose(xy, [[3 * 32 - 3.25, 2 * 32 + 7.5], [0 * 32 + 2.0, 8 * 32 + 1.0]])
    np.testing.assert_allclose(scores, 1 / (1 + np.exp([-2.0, 4.0])), rtol=1e-6)


POSENET_EDGES = [[0, 1], [1, 3], [0, 2], [2, 4], [0, 5], [5, 7], [7, 9], [5, 11], [11, 13], [13, 15], [0, 6],
                 [6, 8], [8, 10], [6, 12], [12, 14], [14, 16]]


def _two_people(stride=8.0, size=24):
    """PoseNet outputs for two people of 17 keypoints on distinct cells: heatmap logits +6 at their
    keypoints (-6 elsewhere), offsets of a quarter cell, and displacements that point exactly from
    each parent to its child (forward) and back (backward)."""
    rng = np.random.default_rng(3)
    cells = rng.permutation(size * size)[:34]
    people = [np.stack([cells[p * 17:(p + 1) * 17] // size, cells[p * 17:(p + 1) * 17] % size], 1) for p in (0, 1)]
    heat = np.full((1, size, size, 17), -6.0, np.float32)
    offsets = np.full((1, size, size, 34), stride / 4, np.float32)
    fwd = np.zeros((1, size, size, 32), np.float32)
    bwd = np.zeros((1, size, size, 32), np.float32)
    truth = []
    for p, yx in enumerate(people):
        pos = yx * stride + stride / 4
        for k, (y, x) in enumerate(yx):
            heat[0, y, x, k] = 6.0 - p  # the first person scores higher
        for e, (parent, child) in enumerate(POSENET_EDGES):
            (py, px), (cy, cx) = yx[parent], yx[child]
            fwd[0, py, px, e], fwd[0, py, px, e + 16] = pos[child] - pos[parent]
            bwd[0, cy, cx, e], bwd[0, cy, cx, e + 16] = pos[parent] - pos[child]
        truth.append(pos[:, ::-1])  # x, y
    spec = {"type": "heatmap", "output": "h", "stride": stride, "offsets": "o", "score_activation": "sigmoid",
            "multi_pose": {"displacements_fwd": "f", "displacements_bwd": "b", "edges": POSENET_EDGES,
                           "max_poses": 5, "score_threshold": 0.5, "nms_radius": 4.0, "refine_steps": 2}}
    return spec, {"h": heat, "o": offsets, "f": fwd, "b": bwd}, truth


def test_multi_pose_follows_the_displacements_to_every_keypoint_of_each_person():
    from posezoo.decoders import decode_multi_pose

    spec, outputs, truth = _two_people()
    poses = decode_multi_pose(spec, outputs)
    assert len(poses) == 2
    for (xy, scores, score), expected in zip(poses, truth):
        np.testing.assert_allclose(xy, expected, atol=1e-4)
        assert scores.min() >= 1 / (1 + np.exp(-5.0)) - 1e-6
    assert poses[0][2] > poses[1][2] > 0.99


def _multipose_instances():
    """MoveNet MultiPose's [1, 6, 56]: instance i has its keypoints at (0.1 i, 0.05 k), score 0.1 i."""
    spec = {"type": "regression", "output": "out", "num_keypoints": 17, "values_per_keypoint": 3, "x_index": 1,
            "y_index": 0, "score_index": 2, "coordinate_scale": 256.0,
            "multi_pose": {"instances": 6, "values_per_instance": 56, "instance_score_index": 55,
                           "score_threshold": 0.25}}
    rows = np.zeros((6, 56), np.float32)
    for i in range(6):
        keypoints = np.stack([np.full(17, 0.1 * i), 0.05 * np.arange(17), np.full(17, 0.5)], -1)
        rows[i, :51] = keypoints.ravel()
        rows[i, 51:55] = [0.1 * i, 0, 0.1 * i, 0.8]
        rows[i, 55] = 0.1 * i
    return spec, {"out": rows[None]}


def test_multipose_regression_gives_the_people_above_threshold_strongest_first():
    from posezoo.decoders import decode_multi_pose

    spec, outputs = _multipose_instances()
    poses = decode_multi_pose(spec, outputs)
    assert [round(score, 3) for _, _, score in poses] == [0.5, 0.4, 0.3]
    xy, scores, _ = poses[0]
    np.testing.assert_allclose(xy[:, 1], 0.5 * 256, rtol=1e-6)
    np.testing.assert_allclose(xy[:, 0], 0.05 * np.arange(17) * 256, rtol=1e-5)
    single_xy, _ = decode(spec, outputs)  # a single-pose call: the highest-scoring instance
    np.testing.assert_allclose(single_xy, xy)


def test_below_min_score_a_keypoint_is_not_found():
    scores = np.array([0.1, 0.3, 0.9, -2.0], np.float32)
    assert found(scores, {"type": "heatmap", "min_score": 0.3}).tolist() == [False, True, True, False]
    assert found(scores, {"type": "heatmap"}).tolist() == [True] * 4  # no threshold: every keypoint is found
    assert found(scores, {"min_score": None}).tolist() == [True] * 4


def test_two_decodings_agree_where_neither_finds_the_keypoint():
    """Distances in `unit`s; 0 where both score below min_score; compared where either finds it,
    even just across the threshold on one side."""
    xy = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 0.0], [5.0, 5.0]])
    other = np.array([[3.0, 4.0], [60.0, 0.0], [0.0, 20.0], [5.0, 5.0]])
    scores, other_scores = np.array([0.9, 0.1, 0.31, 0.0]), np.array([0.9, 0.2, 0.29, 0.0])
    errors = keypoint_errors(xy, scores, other, other_scores, {"min_score": 0.3}, unit=10.0)
    np.testing.assert_allclose(errors, [0.5, 0.0, 2.0, 0.0])
    np.testing.assert_allclose(keypoint_errors(xy, scores, other, other_scores, {}, unit=10.0), [0.5, 5.0, 2.0, 0.0])
    assert keypoint_errors(xy, scores, other, other_scores, {}).tolist() == pytest.approx([5.0, 50.0, 20.0, 0.0])
