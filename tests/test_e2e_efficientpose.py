"""End-to-end: `posezoo build efficientpose-rt-lite` from the authors' genuine Keras .h5.

The original comes from the shared mirror (`checkpoints/efficientpose/EfficientPoseRT_LITE.h5`,
matched by sha256); parity runs it in tf_keras on frames of the real people in ../shared/images.
"""
import pytest

from posezoo.scripts.cli import main
from posezoo.manifest import read_manifest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory, shared):
    out = tmp_path_factory.mktemp("zoo")
    cache = tmp_path_factory.mktemp("cache")
    code = main(["build", "efficientpose-rt-lite", "--out", str(out), "--calibration-images", str(shared / "images"),
                 "--mirror", str(shared / "checkpoints"), "--cache", str(cache), "--offline", "--keep-going"])
    return out, cache, code


def test_builds_from_the_genuine_keras_file_and_reports_every_artifact(built):
    out, _, code = built
    (model,) = read_manifest(out / "manifest.json")["models"]
    assert code == 0
    assert model["source"]["sha256"] == "ce0c91259b075180177d070d0be1e71ff8695d7c123745efb950743aa90699ae"
    assert model["source"]["origin"] == "mirror"
    assert model["calibration_crop"]["kind"] == "box" and model["input"]["crop"]["kind"] == "whole_image"
    arts = {(a["format"], a["precision"]): a for a in model["artifacts"]}
    rejected = {(r["format"], r["precision"]) for r in model["rejected"]}
    assert set(arts) | rejected == {(f, p) for f in ("onnx", "tflite") for p in ("fp32", "fp16", "int8")}
    for key in (("onnx", "fp32"), ("tflite", "fp32")):
        assert arts[key]["parity"]["rel_err"] <= 1e-4 and arts[key]["parity"]["pck@0.01"] == 1.0
        assert arts[key]["parity"]["reference"] == "original in tf_keras (TensorFlow)"
    for a in arts.values():
        assert a["parity"]["passed"] and a["parity"]["samples"] >= 20 and (out / a["path"]).is_file()


def test_verify_reruns_parity_against_the_keras_original(built, shared):
    out, cache, _ = built
    assert main(["verify", str(out / "manifest.json"), "--calibration-images", str(shared / "images"), "--cache",
                 str(cache), "--offline"]) == 0


def test_iii_builds_from_a_handed_over_keras_file_with_its_official_signature(tmp_path, shared):
    """EfficientPose III's file cannot be had here (tests/efficientpose_official.py writes one with
    its signature); IV is the same code path at 600x600."""
    from efficientpose_official import write_efficientpose_h5

    checkpoint = write_efficientpose_h5(shared / "checkpoints/efficientpose/EfficientPoseI.h5",
                                        tmp_path / "EfficientPoseIII.h5", 480)
    code = main(["build", "efficientpose-iii", "--checkpoint", str(checkpoint), "--precisions", "fp32,fp16",
                 "--out", str(tmp_path / "zoo"), "--calibration-images", str(shared / "images"),
                 "--max-samples", "6", "--offline"])
    (model,) = read_manifest(tmp_path / "zoo" / "manifest.json")["models"]
    assert code == 0 and model["rejected"] == [] and model["source"]["user_supplied"] is True
    assert {(a["format"], a["precision"]) for a in model["artifacts"]} == {
        (f, p) for f in ("onnx", "tflite") for p in ("fp32", "fp16")}
    assert [o["shape"] for o in model["outputs"]] == [[1, 60, 60, 28], [1, 60, 60, 16], [1, 60, 60, 16],
                                                      [1, 480, 480, 16]]
    for art in model["artifacts"]:
        assert art["io"]["inputs"][0]["shape"] == [1, 480, 480, 3], art["path"]


def test_a_family_build_with_keep_going_skips_the_ids_whose_files_cannot_be_had(tmp_path, capsys):
    empty = tmp_path / "mirror"
    empty.mkdir()
    code = main(["build", "efficientpose-iii", "efficientpose-iv", "--out", str(tmp_path / "zoo"),
                 "--calibration-images", str(tmp_path), "--mirror", str(empty), "--offline", "--keep-going"])
    out = capsys.readouterr().out
    assert code == 0 and not (tmp_path / "zoo" / "manifest.json").exists()
    assert "NOT PUBLISHED: efficientpose-iii: not built" in out and "--checkpoint" in out
    assert "NOT PUBLISHED: efficientpose-iv: not built" in out


def test_int8_plan_is_recorded_and_a_rebuild_reproduces_it_byte_for_byte(zoo, shared, tmp_path):
    """The INT8 files of the shared zoo (RT-Lite, 6 people of each split), built again from
    scratch: the same people, the same sensitivities and plan, the same bytes."""
    def int8(manifest):
        (model,) = [m for m in read_manifest(manifest)["models"] if m["id"] == "efficientpose-rt-lite"]
        return model, {a["format"]: a for a in model["artifacts"] if a["precision"] == "int8"}

    model, first = int8(zoo)
    assert set(first) == {"onnx", "tflite"}
    for art in first.values():
        assert art["quantization"]["int8_weight_share"] >= 0.9 and art["parity"]["people"] == "gate"
        assert art["quantization"]["plan"]["tensors"] and art["parity"]["robustness"]["passed"]
        by_source = art["parity"]["by_source"]  # the gate people's PCK@0.05 per image folder
        assert by_source and set(by_source) <= {p.name for p in (shared / "images").iterdir() if p.is_dir()}
        assert min(by_source.values()) <= art["parity"]["pck@0.05"] <= max(by_source.values())
    assert main(["build", "efficientpose-rt-lite", "--formats", "onnx,tflite", "--precisions", "fp32,int8",
                 "--max-samples", "6", "--out", str(tmp_path / "again"), "--calibration-images", str(shared / "images"),
                 "--mirror", str(shared / "checkpoints"), "--offline"]) == 0
    again_model, again = int8(tmp_path / "again" / "manifest.json")
    assert again_model["build"]["int8_people"] == model["build"]["int8_people"]
    for fmt, art in first.items():
        assert again[fmt]["sha256"] == art["sha256"], fmt
        assert again[fmt]["quantization"]["plan"] == art["quantization"]["plan"]


def test_an_int8_file_missing_a_target_is_judged_all_the_same_and_rejected_with_its_numbers(shared, tmp_path,
                                                                                           monkeypatch):
    """Size targets no file can meet: the TFLite INT8 file is still judged on the gate people and
    their robustness set, so its rejection says how it would have fared."""
    from posezoo.converters import int8_targets

    monkeypatch.setattr(int8_targets, "SIZE_TARGET", 0.01)
    monkeypatch.setattr(int8_targets, "SMALL_SIZE_TARGET", 0.01)
    code = main(["build", "efficientpose-rt-lite", "--formats", "tflite", "--precisions", "fp32,int8",
                 "--max-samples", "6", "--out", str(tmp_path), "--calibration-images", str(shared / "images"),
                 "--mirror", str(shared / "checkpoints"), "--offline"])
    (model,) = read_manifest(tmp_path / "manifest.json")["models"]
    (rejected,) = model["rejected"]
    assert code == 1 and [a["precision"] for a in model["artifacts"]] == ["fp32"]
    assert "an INT8 file is at most 0.01x" in rejected["reason"]
    assert rejected["parity"]["people"] == "gate" and 0 < rejected["parity"]["pck@0.05"] <= 1
    assert "robustness" in rejected["parity"] and rejected["quantization"]["size"]["target"] == 0.01
    assert not list(tmp_path.glob("*/*int8*"))  # no file left behind
