"""PoseNet MobileNet v1 1.00 end to end from a TFLite file with the official signature and random
weights (tests/posenet_official.py; Google's file cannot be downloaded here): `posezoo build
posenet-mobilenet100 --checkpoint FILE`, FP32 and FP16 in both formats, every one passing its gate,
and the heatmap + offset-vector decoder run through posezoo.loader on a photo. INT8 quality can only
be judged on genuine weights, so INT8 is not built here."""
import numpy as np
import pytest
from PIL import Image

from posenet_official import HEADS, write_posenet_tflite
from posezoo.scripts.cli import main
from posezoo.loader import load
from posezoo.manifest import read_manifest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory, images):
    work = tmp_path_factory.mktemp("posenet")
    checkpoint = write_posenet_tflite(work / "posenet_mobilenet_v1_100_257x257_multi_kpt_stripped.tflite")
    code = main(["build", "posenet-mobilenet100", "--checkpoint", str(checkpoint), "--out", str(work / "zoo"),
                 "--calibration-images", str(images), "--precisions", "fp32,fp16", "--max-samples", "8"])
    return work / "zoo" / "manifest.json", code


def test_fp32_and_fp16_pass_every_gate_in_both_formats(built):
    manifest_path, code = built
    (model,) = read_manifest(manifest_path)["models"]
    assert code == 0 and model["rejected"] == []
    assert {(a["format"], a["precision"]) for a in model["artifacts"]} == {
        (f, p) for f in ("onnx", "tflite") for p in ("fp32", "fp16")}
    assert [o["name"] for o in model["outputs"]] == [f"MobilenetV1/{name}/BiasAdd" for name, _ in HEADS]
    for art in model["artifacts"]:
        assert [o["name"] for o in art["io"]["outputs"]] == [o["name"] for o in model["outputs"]], art["path"]
        assert art["parity"]["pck@0.02"] == 1.0


def test_the_loader_decodes_heatmaps_and_offsets_the_same_in_every_artifact(built, images):
    manifest_path, _ = built
    photo = np.asarray(Image.open(images / "single" / "squat.bmp").convert("RGB"))
    poses = [load(manifest_path, "posenet-mobilenet100", fmt, precision)(photo)
             for fmt in ("onnx", "tflite") for precision in ("fp32", "fp16")]
    assert poses[0].keypoints.shape == (17, 2) and ((poses[0].scores > 0) & (poses[0].scores < 1)).all()
    for pose in poses[1:]:
        assert np.abs(pose.keypoints - poses[0].keypoints).max() < 0.02 * max(photo.shape)


def test_the_loader_finds_several_people_with_the_manifests_multi_pose_description(built, images):
    manifest_path, _ = built
    photo = np.asarray(Image.open(images / "single" / "two_people_walking.bmp").convert("RGB"))
    predictor = load(manifest_path, "posenet-mobilenet100", "tflite", "fp32")
    poses = predictor.poses(photo)
    assert 1 <= len(poses) <= 10
    assert all(p.keypoints.shape == (17, 2) and 0 <= p.score <= 1 for p in poses)


def test_the_075_variant_builds_at_353x257_with_output_stride_16(tmp_path, images):
    checkpoint = write_posenet_tflite(tmp_path / "posenet_mobilenet_float_075_1_default_1.tflite", multiplier=0.75,
                                      input_hw=(353, 257), output_stride=16)
    code = main(["build", "posenet-mobilenet075", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "zoo"),
                 "--calibration-images", str(images), "--precisions", "fp32,fp16", "--max-samples", "6"])
    manifest_path = tmp_path / "zoo" / "manifest.json"
    (model,) = read_manifest(manifest_path)["models"]
    assert code == 0 and model["rejected"] == [] and len(model["artifacts"]) == 4
    assert model["decoder"]["stride"] == 16.0 and model["outputs"][0]["shape"] == [1, 23, 17, 17]
    photo = np.asarray(Image.open(images / "single" / "squat.bmp").convert("RGB"))
    poses = [load(manifest_path, "posenet-mobilenet075", fmt, "fp32")(photo) for fmt in ("onnx", "tflite")]
    assert np.abs(poses[0].keypoints - poses[1].keypoints).max() < 0.01 * max(photo.shape)
