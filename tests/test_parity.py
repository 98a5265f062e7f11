import numpy as np
import pytest

from converters.parity import align, apply_gate, compare, tensor_metrics

DEC = {"type": "regression", "output": "kp", "num_keypoints": 2, "values_per_keypoint": 2, "x_index": 0, "y_index": 1}


def decode(outputs):
    from zoo.decoders import decode as d

    return d(DEC, outputs)


def test_tensor_metrics():
    ref = np.linspace(-1, 1, 100)
    m = tensor_metrics(ref, ref + 0.01)
    assert m["max_abs_err"] == pytest.approx(0.01) and m["rel_err"] == pytest.approx(0.005)
    assert m["cos"] > 0.999 and 30 < m["snr_db"] < 40
    assert tensor_metrics(ref, ref)["snr_db"] == float("inf")


def test_align_nchw_to_nhwc():
    ref = np.arange(2 * 3 * 4).reshape(1, 2, 3, 4).astype(np.float32)  # NHWC
    nchw = ref.transpose(0, 3, 1, 2)
    assert np.array_equal(align(ref, nchw), ref)
    with pytest.raises(ValueError, match="cannot be matched"):
        align(ref, np.zeros(5))


def test_pck_and_failing_gate():
    ref = [{"kp": np.array([[10.0, 10.0, 50.0, 50.0]])}]
    off = [{"kp": np.array([[10.0, 10.0, 53.0, 50.0]])}]  # second keypoint 3 px away on a 100 px input
    report = compare(ref, off, decode, 100.0)
    assert report.pck == {"0.01": 0.5, "0.02": 0.5, "0.05": 1.0}
    assert report.pck_visible == report.pck  # the decoder gives every keypoint score 1
    apply_gate(report, {"pck@0.02_min": 1.0, "rel_err_max": 1e-4})
    assert not report.passed and len(report.failures) == 2
    assert "pck@0.02 = 0.5" in report.failures[0]
    apply_gate(report, {"pck@0.05_min": 0.97})
    assert report.passed


def test_visible_pck_counts_only_keypoints_the_original_sees():
    from zoo.decoders import decode as d

    spec = {**DEC, "values_per_keypoint": 3, "score_index": 2}
    ref = [{"kp": np.array([[10.0, 10.0, 0.9, 50.0, 50.0, 0.1]])}]  # second keypoint: original score 0.1
    off = [{"kp": np.array([[10.0, 10.0, 0.9, 60.0, 50.0, 0.1]])}]
    report = compare(ref, off, lambda o: d(spec, o), 100.0)
    assert report.pck["0.05"] == 0.5 and report.pck_visible["0.05"] == 1.0
