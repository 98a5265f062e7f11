import numpy as np
import pytest

from zoo.decoders import decode


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
    with pytest.raises(ValueError, match="unknown decoder type 'nope'"):
        decode({"type": "nope", "output": "x"}, {})
