"""zoo/loader.py: the runtime loader that knows nothing but the manifest.

Fast tests check the crop, warp and (de)quantization helpers against hand-computed values. Slow
tests build MoveNet Lightning (Google's INT8 file and our ONNX of it) and EfficientPose RT-Lite
(FP32 and INT8, ONNX and TFLite) with `posezoo build`, then run every artifact through the loader
on the shared photos and through the build's own path (calibration.load_samples + runtimes)."""
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import manifest_artifact, manifest_model
from posezoo.loader import (LoaderError, crop_matrix, dequantize, load, model_outputs, quantize, select_artifact,
                        to_tensor, warp)
from posezoo.manifest import empty_manifest

IMAGE = np.stack([np.array([[10, 100], [200, 250]], np.uint8)] * 3, axis=-1)  # 2x2, grey
ROI = {"kind": "rotated_roi", "center_keypoints": ["left_hip", "right_hip"],
       "up_keypoints": ["left_shoulder", "right_shoulder"], "expand": 1.25}


def test_the_loader_imports_no_build_code_and_no_runtime_until_asked():
    code = ("import sys, posezoo.loader; names = {m.split('.')[0] for m in sys.modules} | "
            "{'.'.join(m.split('.')[:2]) for m in sys.modules}; print(sorted(names & {'posezoo.converters', "
            "'posezoo.recipes', 'posezoo.scripts', 'PIL', 'jsonschema', 'tensorflow', 'onnx', 'onnxruntime', "
            "'ai_edge_litert', 'torch'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"


def test_warp_interpolates_between_pixel_centres_and_truncates():
    """Input 4x4 over the 2x2 image: input pixel centre (i + 0.5) / 2 in image pixels."""
    out = warp(IMAGE, np.array([[0.5, 0, 0], [0, 0.5, 0]]), 4, 4)[..., 0]
    assert out[0, 0] == 10  # image (0.25, 0.25): before the first centre, clamped to it
    assert out[0, 1] == 32  # x 0.75: 10 + 90 x 0.25 = 32.5
    assert out[1, 1] == 77  # 32.5 + (212.5 - 32.5) x 0.25 = 77.5
    assert out[2, 2] == 197  # x, y 1.25: 77.5 + (237.5 - 77.5) x 0.75 = 197.5
    assert out[3, 3] == 250  # past the last centre, clamped


def test_warp_pads_with_black_outside_the_image():
    out = warp(IMAGE, np.array([[1.0, 0, -1], [0, 1, 0]]), 3, 2)  # one pixel to the left
    assert out[..., 0].tolist() == [[0, 10, 100], [0, 200, 250]]
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)


def test_warp_is_pils_affine_transform_bit_for_bit():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    for _ in range(50):
        matrix = np.c_[rng.normal(0, 1.5, (2, 2)), rng.uniform(-20, 60, 2)]
        pil = Image.fromarray(image).transform((31, 23), Image.AFFINE, tuple(matrix.ravel()), resample=Image.BILINEAR,
                                               fillcolor=(0, 0, 0))
        np.testing.assert_array_equal(warp(image, matrix, 31, 23), np.asarray(pil))
        np.testing.assert_array_equal(warp(Image.fromarray(image), matrix, 31, 23), np.asarray(pil))


def test_whole_image_letterbox_and_stretch():
    """A 300x150 photo into a 100x100 input: letterbox scales by 3 and centres it vertically."""
    np.testing.assert_allclose(crop_matrix({"kind": "whole_image"}, 100, 100, (300, 150)),
                               [[3, 0, 0], [0, 3, -75]])
    np.testing.assert_allclose(crop_matrix({"kind": "whole_image", "resize": "stretch"}, 100, 100, (300, 150)),
                               [[3, 0, 0], [0, 1.5, 0]])


def test_box_is_widened_to_the_input_aspect_and_padded():
    """Box 40x40 at (10, 20) into a 100x200 input (aspect 1/2): 40x80 around (30, 40), x 1.25."""
    matrix = crop_matrix({"kind": "box", "padding": 1.25}, 100, 200, (640, 480), box=(10, 20, 40, 40))
    np.testing.assert_allclose(matrix, [[0.5, 0, 5], [0, 0.5, -10]])


def test_box_and_roi_crops_say_what_they_need():
    with pytest.raises(LoaderError, match="box="):
        crop_matrix({"kind": "box"}, 64, 64, (100, 100))
    with pytest.raises(LoaderError, match="right_shoulder"):
        crop_matrix(ROI, 64, 64, (100, 100), keypoints={"left_hip": (1, 1), "right_hip": (2, 1),
                                                        "left_shoulder": (1, 0)})


@pytest.mark.parametrize("angle", [0, 30, 90, 180, -120])
def test_rotated_roi_turns_the_person_upright_without_mirroring(angle):
    """Hips around (60, 100), shoulders 40 px 'up' turned by `angle`, nose 60 px up: the ROI is
    centred on the hips, side 2 x 1.25 x 60 px, and the person stands upright in the input with
    their left side (left_hip) on the input's right, as in the photo (no reflection)."""
    turn = np.deg2rad(angle)
    rot = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    center = np.array([60.0, 100.0])
    local = {"left_hip": (10, 0), "right_hip": (-10, 0), "left_shoulder": (12, -40), "right_shoulder": (-12, -40),
             "nose": (0, -60)}  # photo pixels around the hips, person upright, facing the camera
    keypoints = {n: tuple(center + rot @ np.array(p, float)) for n, p in local.items()}
    matrix = crop_matrix(ROI, 64, 64, (200, 200), keypoints=keypoints)
    assert np.linalg.det(matrix[:, :2]) > 0  # a rotation and scale, no mirror
    np.testing.assert_allclose(np.abs(np.linalg.det(matrix[:, :2])) ** 0.5 * 64, 2 * 1.25 * 60)
    to_input = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))
    inside = {n: (to_input @ [*p, 1])[:2] for n, p in keypoints.items()}
    np.testing.assert_allclose(inside["nose"], [32, 32 - 60 * 64 / 150], atol=1e-9)
    np.testing.assert_allclose(inside["left_hip"], [32 + 10 * 64 / 150, 32], atol=1e-9)


def test_to_tensor_normalizes_in_the_models_channel_order_and_layout():
    rgb = np.array([[[10, 20, 30]]], np.uint8)
    spec = {"dtype": "float32", "color": "BGR", "normalization": {"mean": [30, 20, 10], "std": [2, 4, 5]}}
    x = to_tensor(rgb, spec, {"dtype": "float32", "quantization": None}, "NCHW")
    assert x.shape == (1, 3, 1, 1) and x.dtype == np.float32
    np.testing.assert_allclose(x.ravel(), [0, 0, 0])
    spec["normalization"] = {"mean": [0, 0, 0], "std": [1, 2, 10]}
    np.testing.assert_allclose(to_tensor(rgb, spec, {"dtype": "float32"}, "NHWC").ravel(), [30, 10, 1])


def test_to_tensor_quantizes_with_the_artifacts_scale_and_feeds_uint8_as_is():
    rgb = np.array([[[0, 128, 255]]], np.uint8)
    spec = {"dtype": "float32", "normalization": {"mean": [128] * 3, "std": [64] * 3}}
    q = {"dtype": "int8", "quantization": {"scale": 0.25, "zero_point": -1}}
    x = to_tensor(rgb, spec, q, "NHWC")  # [-2, 0, 1.984375] / 0.25 = [-8, 0, 7.9375], rounded, - 1
    assert x.dtype == np.int8 and x.ravel().tolist() == [-9, -1, 7]
    x = to_tensor(rgb, {"dtype": "uint8"}, {"dtype": "uint8", "quantization": None}, "NHWC")
    assert x.dtype == np.uint8 and x.ravel().tolist() == [0, 128, 255]


def test_quantize_and_dequantize():
    assert quantize(np.array([-10.0, 0.26, 10.0]), "uint8", 0.1, 128).tolist() == [28, 131, 228]
    assert quantize(np.array([100.0]), "int8", 0.1, 0).tolist() == [127]
    np.testing.assert_allclose(dequantize(np.array([28, 131], np.uint8), 0.1, 128), [-10.0, 0.3], rtol=1e-6)


def test_outputs_are_dequantized_and_put_back_in_the_models_layout():
    """An NHWC TFLite file of an NCHW model: its heatmaps come back NCHW, as the manifest says."""
    raw = {"heatmaps": np.arange(24, dtype=np.int8).reshape(1, 2, 3, 4)}
    io = [{"name": "heatmaps", "dtype": "int8", "shape": [1, 2, 3, 4], "quantization": {"scale": 0.5, "zero_point": 2}}]
    out = model_outputs(raw, io, [{"name": "heatmaps", "shape": [1, 4, 2, 3]}], transposed=True)["heatmaps"]
    assert out.shape == (1, 4, 2, 3) and out.dtype == np.float32
    assert out[0, 3, 1, 2] == (23 - 2) * 0.5
    with pytest.raises(LoaderError, match="no output named 'confs'"):
        model_outputs(raw, io, [{"name": "confs", "shape": [1]}], transposed=False)


def _artifact(fmt, precision, origin, path="m/x.onnx", data=b""):
    return {"format": fmt, "precision": precision, "origin": origin, "path": path,
            "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def test_selection_lists_what_exists_and_asks_for_an_origin_when_both_exist():
    model = {"id": "m", "artifacts": [_artifact("tflite", "int8", "vendor"), _artifact("tflite", "int8", "converted"),
                                      _artifact("onnx", "fp32", "converted")],
             "rejected": [{"format": "onnx", "precision": "int8", "reason": "pck@0.05 = 0.9 (< 0.97)"}]}
    with pytest.raises(LoaderError, match=r"no onnx int8 artifact; it has: tflite int8 \(vendor\), .*onnx fp32 "
                                          r"\(converted\); rejected: onnx int8 \(pck@0.05"):
        select_artifact(model, "onnx", "int8")
    with pytest.raises(LoaderError, match=r"origins \['converted', 'vendor'\]: pass origin="):
        select_artifact(model, "tflite", "int8")
    assert select_artifact(model, "tflite", "int8", "vendor")["origin"] == "vendor"
    assert select_artifact(model, "onnx", "fp32")["format"] == "onnx"


def test_unknown_model_and_a_tampered_file_are_refused_before_any_runtime(tmp_path):
    data = b"not really a model"
    (tmp_path / "m").mkdir()
    (tmp_path / "m/x.onnx").write_bytes(data + b"!")
    artifact = manifest_artifact("onnx", "fp32", hashlib.sha256(data).hexdigest(), "m/x.onnx", len(data))
    manifest = {**empty_manifest("0.1"), "models": [manifest_model("m", [artifact])]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(LoaderError, match="no model 'n' in the manifest; it has: m"):
        load(tmp_path / "manifest.json", "n")
    with pytest.raises(LoaderError) as e:
        load(manifest, "m", "onnx", "fp32", directory=tmp_path)
    assert str(tmp_path / "m/x.onnx") in str(e.value) and hashlib.sha256(data).hexdigest() in str(e.value)
    assert hashlib.sha256(data + b"!").hexdigest() in str(e.value)


# ---------------------------------------------------------------------------------------- slow

ARTIFACTS = [("movenet-lightning", "tflite", "int8", "vendor"), ("movenet-lightning", "onnx", "int8", None)] + [
    ("efficientpose-rt-lite", fmt, precision, None) for fmt in ("onnx", "tflite") for precision in ("fp32", "int8")]


def _model(manifest_path, model_id):
    return next(m for m in json.loads(manifest_path.read_text())["models"] if m["id"] == model_id)


def _photo(sample):
    return np.asarray(Image.open(sample.person.image).convert("RGB"))


def _build_path_keypoints(model, artifact, directory, samples):
    """What the build computes for `samples`: its runner on load_samples' tensors, decoded and
    mapped back with the crop's matrix."""
    from posezoo.converters.runtimes import open_runner
    from posezoo.decoders import decode

    runner = open_runner(directory / artifact["path"])
    result = []
    for s in samples:
        xy, _ = decode(model["decoder"], runner({model["input"]["name"]: s.tensor}))
        result.append(xy @ s.matrix[:, :2].T + s.matrix[:, 2])
    return result


@pytest.mark.slow
@pytest.mark.parametrize("model_id,fmt,precision,origin", ARTIFACTS)
def test_loader_matches_the_builds_path_on_whole_frames(zoo, images, model_id, fmt, precision, origin):
    from posezoo.converters.calibration import load_samples

    model = _model(zoo, model_id)
    predict = load(zoo, model_id, fmt, precision, origin)
    samples = load_samples(images, model["input"], model["input"]["crop"])  # one sample per frame
    expected = _build_path_keypoints(model, predict.artifact, zoo.parent, samples)
    poses = [predict(_photo(s)) for s in samples]
    assert len(samples) >= 15 and poses[0].names == model["keypoints"]["names"]
    worst = max(np.abs(p.keypoints - e).max() for p, e in zip(poses, expected))
    assert worst <= 1e-3, f"{model_id} {fmt} {precision}: loader departs from the build by {worst} px"


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_loader_matches_the_builds_path_on_person_boxes(zoo, images, fmt):
    """The `box` crop, on the people of the COCO annotations: MoveNet's manifest with its
    calibration crop (a box x 1.25) as the input crop."""
    from posezoo.converters.calibration import load_samples

    model = _model(zoo, "movenet-lightning")
    model["input"]["crop"] = model["calibration_crop"]
    manifest = {**empty_manifest("0.1"), "models": [model]}
    predict = load(manifest, "movenet-lightning", fmt, "int8", directory=zoo.parent)
    samples = load_samples(images / "coco", model["input"], model["input"]["crop"])
    expected = _build_path_keypoints(model, predict.artifact, zoo.parent, samples)
    worst = max(np.abs(predict(_photo(s), box=s.person.box).keypoints - e).max() for s, e in zip(samples, expected))
    assert len(samples) >= 10 and worst <= 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_fp32_and_int8_agree_within_the_parity_gate(zoo, images, fmt):
    """PCK@0.05 of the input size, INT8 against FP32, with the parity rule for heatmap decoders:
    a keypoint both sides score below the decoder's `min_score` is not found by either: agreed."""
    from posezoo.converters.calibration import load_samples
    from posezoo.decoders import keypoint_errors

    model = _model(zoo, "efficientpose-rt-lite")
    fp32, int8 = (load(zoo, model["id"], fmt, p) for p in ("fp32", "int8"))
    assert "min_score" in model["decoder"]
    size = max(model["input"]["shape"][1:3])
    agree = []
    for s in load_samples(images, model["input"], model["input"]["crop"]):
        a, b = fp32(_photo(s)), int8(_photo(s))
        scale = abs(np.linalg.det(s.matrix[:, :2])) ** 0.5  # image pixels per input pixel
        agree.append(keypoint_errors(a.keypoints, a.scores, b.keypoints, b.scores, model["decoder"], scale * size) <= 0.05)
    assert np.mean(np.concatenate(agree)) >= 0.97


@pytest.mark.slow
def test_every_artifact_passes_its_golden_vectors(zoo):
    """The loader, from each golden photo to its pose, reproduces what the build recorded: the
    same runtime, so the same numbers, far inside the tolerances a port is given."""
    from posezoo import golden

    manifest = json.loads(zoo.read_text())
    for model in manifest["models"]:
        for art in model["artifacts"]:
            report = golden.check_artifact(load(zoo, model["id"], art["format"], art["precision"], art["origin"]),
                                           zoo.parent, art)
            assert report["passed"] and report["keypoints_within"] == 1.0, (art["path"], report)
            assert report["matrix_abs"] == 0 and report["input_rel_err"] == 0, (art["path"], report)


@pytest.mark.slow
def test_a_tampered_artifact_is_refused(zoo, tmp_path):
    model = _model(zoo, "movenet-lightning")
    artifact = select_artifact(model, "onnx", "int8")
    shutil.copy(zoo, tmp_path / "manifest.json")
    shutil.copytree(zoo.parent / model["id"], tmp_path / model["id"])
    path = tmp_path / artifact["path"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(LoaderError) as e:
        load(tmp_path / "manifest.json", model["id"], "onnx", "int8")
    assert str(path) in str(e.value) and artifact["sha256"] in str(e.value)
    assert hashlib.sha256(bytes(data)).hexdigest() in str(e.value)
