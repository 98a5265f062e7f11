import numpy as np
import pytest

from posezoo.converters.parity import ParityReport, align, apply_gate, compare, tensor_metrics

DEC = {"type": "regression", "output": "kp", "num_keypoints": 2, "values_per_keypoint": 2, "x_index": 0, "y_index": 1}


def decode(outputs):
    from posezoo.decoders import decode as d

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
    from posezoo.decoders import decode as d

    spec = {**DEC, "values_per_keypoint": 3, "score_index": 2}
    ref = [{"kp": np.array([[10.0, 10.0, 0.9, 50.0, 50.0, 0.1]])}]  # second keypoint: original score 0.1
    off = [{"kp": np.array([[10.0, 10.0, 0.9, 60.0, 50.0, 0.1]])}]
    report = compare(ref, off, lambda o: d(spec, o), 100.0)
    assert report.pck["0.05"] == 0.5 and report.pck_visible["0.05"] == 1.0


def test_keypoints_below_the_decoders_threshold_count_as_not_found():
    from posezoo.decoders import decode

    spec = {"type": "heatmap", "output": "maps", "layout": "NHWC", "stride": 1.0, "min_score": 0.3}
    ref = np.zeros((1, 10, 10, 4), np.float32)
    ref[0, 2, 2, 0] = 0.9          # found by both, same place
    ref[0, 5, 5, 1] = 0.1          # found by neither: the artifact's argmax elsewhere is no answer
    ref[0, 7, 7, 2] = 0.31         # just across the threshold on one side only, same place: agrees
    ref[0, 1, 8, 3] = 0.9          # found by the original, the artifact peaks elsewhere: a miss
    out = ref.copy()
    out[0, 5, 5, 1], out[0, 0, 9, 1] = 0.0, 0.1
    out[0, 7, 7, 2] = 0.29
    out[0, 1, 8, 3], out[0, 8, 1, 3] = 0.1, 0.2
    report = compare([{"maps": ref}], [{"maps": out}], lambda o: decode(spec, o), 10.0, spec["min_score"])
    assert report.pck["0.05"] == pytest.approx(3 / 4)
    assert report.worst_keypoint_err == pytest.approx(np.hypot(7, 7) / 10)


def test_a_heatmap_tie_agrees_but_a_trained_peak_is_judged_by_position():
    """Channel 0 is flat (a random-weight model's): its two top cells differ by 1e-6 of the
    value, so the artifact's 1e-6 error can swap them: a tie, it agrees. Channel 1 has a trained
    model's peak (0.8 over 0.05): an artifact that moves it is a miss, whatever its error."""
    from posezoo.decoders import decode

    spec = {"type": "heatmap", "output": "maps", "layout": "NHWC", "stride": 1.0}
    ref = np.full((1, 10, 10, 2), 0.5, np.float32)
    ref[..., 1] = 0.05
    ref[0, 2, 2, 0], ref[0, 7, 7, 0] = 0.5 + 2e-6, 0.5 + 1e-6
    ref[0, 2, 2, 1], ref[0, 7, 7, 1] = 0.8, 0.6
    out = ref.copy()
    out[0, 7, 7, 0] = 0.5 + 3e-6  # the flat map's peak moves to the other cell
    out[0, 7, 7, 1] = 0.9  # the trained peak moves too
    report = compare([{"maps": ref}], [{"maps": out}], lambda o: decode(spec, o), 10.0, decoder=spec)
    assert report.pck["0.05"] == 0.5 and report.ties == 0.5
    assert report.worst_keypoint_err == pytest.approx(np.hypot(5, 5) / 10)


def test_an_artifact_agreeing_mostly_by_ties_fails_whatever_its_thresholds():
    """Two constant maps (a random-weight model's): any peak ties, so PCK is 1.0, but nothing was
    judged: the gate fails."""
    from posezoo.decoders import decode

    spec = {"type": "heatmap", "output": "maps", "layout": "NHWC", "stride": 1.0}
    ref = np.full((1, 10, 10, 2), 0.5, np.float32)
    out = ref.copy()
    out[0, 3, 3, :] += 1e-7  # the artifact's peaks land elsewhere, within float noise
    report = apply_gate(compare([{"maps": ref}], [{"maps": out}], lambda o: decode(spec, o), 10.0, decoder=spec),
                        {"pck@0.05_min": 0.97})
    assert report.pck["0.05"] == 1.0 and report.ties == 1.0
    assert not report.passed and "heatmap_ties" in report.failures[0]


def test_the_same_peak_cell_is_no_tie_and_its_offset_error_is_judged():
    """PoseNet-style: same peak cell on both sides, but the artifact's offset moves the keypoint
    by 3 pixels: no tie (nothing settled), and the 3 pixels count."""
    from posezoo.decoders import decode

    spec = {"type": "heatmap", "output": "maps", "offsets": "offsets", "layout": "NHWC", "stride": 8.0}
    ref = {"maps": np.zeros((1, 4, 4, 1), np.float32), "offsets": np.zeros((1, 4, 4, 2), np.float32)}
    ref["maps"][0, 1, 2, 0] = 1.0
    out = {name: value.copy() for name, value in ref.items()}
    out["offsets"][0, 1, 2, 0] = 3.0
    report = compare([ref], [out], lambda o: decode(spec, o), 100.0, decoder=spec)
    assert report.ties == 0.0 and report.worst_keypoint_err == pytest.approx(0.03)


def test_rel_err_is_judged_against_the_originals_own_kernel_noise_per_output():
    """An output the original's own default kernels already move by 5e-4 passes a 1e-4 bound at
    3e-4; an output they do not move still fails at 3e-4."""
    report = ParityReport(4, {"mask": {"rel_err": 3e-4, "cos": 1.0, "snr_db": 90.0},
                              "landmarks": {"rel_err": 5e-5, "cos": 1.0, "snr_db": 90.0}}, {"0.01": 1.0}, 0.0)
    assert apply_gate(report, {"rel_err_max": 1e-4}, {"mask": 5e-4, "landmarks": 1e-6}).passed
    assert report.to_dict()["original_kernel_noise"] == {"mask": 5e-4, "landmarks": 1e-6}
    failed = apply_gate(report, {"rel_err_max": 1e-4}, {"mask": 2e-4})
    assert not failed.passed and "on mask" in failed.failures[0] and "0.0002" in failed.failures[0]
    assert not apply_gate(report, {"rel_err_max": 1e-4}).passed  # no floor: the bound alone


def test_pck_by_group_reads_each_data_set_alone():
    from posezoo.converters.parity import pck_by

    report = ParityReport(3, {}, {}, 0.0, errors=[np.array([0.0, 0.1]), np.array([0.0, 0.0]), np.array([0.2, 0.0])])
    assert pck_by(report, ["coco", "mpii", "coco"], "0.05") == {"coco": 0.5, "mpii": 1.0}
