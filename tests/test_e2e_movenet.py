"""MoveNet Lightning from Google's own full-integer TFLite (../shared/checkpoints/movenet): the
vendor file published unchanged, our ONNX INT8 of it gated against it, and the decoder."""
import csv

import numpy as np
import pytest

from posezoo.scripts.cli import main
from posezoo.manifest import read_manifest

pytestmark = pytest.mark.slow
VENDOR_SHA256 = "cd7cc22fa946e5d146a7b98d496853e1923e22828d3972d579973f27f91bb105"
VENDOR_NAME = "lite-model_movenet_singlepose_lightning_tflite_int8_4.tflite"


@pytest.fixture(scope="module")
def built(tmp_path_factory, shared):
    out, cache = tmp_path_factory.mktemp("zoo"), tmp_path_factory.mktemp("cache")
    code = main(["build", "movenet-lightning", "--precisions", "int8", "--out", str(out), "--calibration-images",
                 str(shared / "images"), "--mirror", str(shared / "checkpoints"), "--cache", str(cache), "--offline"])
    return out, cache, code


def test_vendor_file_is_published_unchanged_next_to_our_onnx(built, shared):
    out, cache, code = built
    (model,) = read_manifest(out / "manifest.json")["models"]
    assert code == 0 and model["rejected"] == []
    arts = {(a["format"], a["origin"]): a for a in model["artifacts"]}
    vendor, onnx = arts["tflite", "vendor"], arts["onnx", "converted"]
    assert vendor["sha256"] == VENDOR_SHA256 == model["source"]["sha256"]
    assert (out / vendor["path"]).read_bytes() == (shared / "checkpoints/movenet" / VENDOR_NAME).read_bytes()
    assert vendor["io"]["inputs"][0]["dtype"] == "uint8"
    assert onnx["precision"] == "int8" and onnx["parity"]["passed"]
    assert onnx["parity"]["pck@0.05"] >= 0.98 and onnx["parity"]["pck@0.02"] >= 0.90
    assert onnx["quantization"]["integer_semantics"]["rewrites"]["conv"] > 0
    assert main(["verify", str(out / "manifest.json"), "--calibration-images", str(shared / "images"), "--cache",
                 str(cache), "--offline"]) == 0


def test_a_tampered_vendor_file_is_refused(tmp_path, shared, capsys):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    data = bytearray((shared / "checkpoints/movenet" / VENDOR_NAME).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (mirror / VENDOR_NAME).write_bytes(bytes(data))
    code = main(["build", "movenet-lightning", "--precisions", "int8", "--out", str(tmp_path / "zoo"),
                 "--calibration-images", str(shared / "images"), "--mirror", str(mirror),
                 "--cache", str(tmp_path / "cache"), "--offline"])
    err = capsys.readouterr().err
    assert code == 2 and VENDOR_SHA256 in err and "wrong content" in err
    assert not (tmp_path / "zoo" / "manifest.json").exists()


def test_fp32_without_the_savedmodel_says_what_to_do(tmp_path, shared, capsys):
    code = main(["build", "movenet-lightning", "--precisions", "fp32", "--out", str(tmp_path / "zoo"),
                 "--calibration-images", str(shared / "images"), "--mirror", str(shared / "checkpoints"),
                 "--cache", str(tmp_path / "cache"), "--offline"])
    err = capsys.readouterr().err
    assert code == 2 and "--checkpoint" in err and "tfhub.dev/google/movenet/singlepose/lightning/4" in err


@pytest.mark.parametrize("resize,tolerance", [("stretch", 0.04), ("letterbox", 0.05)])
def test_decoder_maps_keypoints_back_to_the_photo(shared, resize, tolerance):
    """squat.bmp through Google's file and our decoder, mapped back to image coordinates, against
    the reference CSV (a rough one: made with Coral's own plain resize, so the letterboxed input
    the recipe uses sees the person a little differently)."""
    from PIL import Image

    from posezoo.converters.calibration import Person, crop_transform, to_tensor, warp
    from posezoo.converters.runtimes import open_runner
    from posezoo.recipes import select
    from posezoo.decoders import decode

    recipe = select(["movenet-lightning"])[0].recipe
    photo = shared / "images/single/squat.bmp"
    image = Image.open(photo).convert("RGB")
    crop = {**recipe["input"]["crop"], "resize": resize}
    matrix = crop_transform(Person(photo, (0, 0, *image.size)), crop, 192, 192, image.size)
    outputs = open_runner(shared / "checkpoints/movenet" / VENDOR_NAME)(
        {"input": to_tensor(warp(image, matrix, 192, 192), recipe["input"])})
    xy, scores = decode(recipe["decoder"], outputs)
    in_image = (matrix @ np.c_[xy, np.ones(len(xy))].T).T / np.array(image.size)
    with open(photo.with_suffix(".movenet_lightning_int8_reference.csv")) as f:
        rows = sorted(csv.DictReader(f), key=lambda r: int(r["keypoint_id"]))
    reference = np.array([[float(r["keypoint_x"]), float(r["keypoint_y"])] for r in rows])
    assert np.abs(in_image - reference).max() < tolerance
    assert scores.min() >= 0 and scores.max() <= 1


def test_walk_finds_no_departing_tensor_in_our_onnx(built, shared, capsys):
    out, _, _ = built
    model_dir = out / "movenet-lightning"
    code = main(["walk", str(model_dir / "movenet-lightning_int8_vendor.tflite"), str(model_dir / "movenet-lightning_int8.onnx"),
                 "--model", "movenet-lightning", "--calibration-images", str(shared / "images"), "--max-samples", "3"])
    assert code == 0 and "no tensor departs" in capsys.readouterr().out


def test_a_warm_rebuild_does_nothing_until_an_input_changes(tmp_path, shared, capsys):
    """Same recipe, files, photos, options, tools and code: nothing is rebuilt and the manifest is
    untouched. A damaged artifact or a different option rebuilds."""
    import json

    out = tmp_path / "zoo"
    common = ["build", "movenet-lightning", "--precisions", "int8", "--out", str(out), "--calibration-images",
              str(shared / "images"), "--mirror", str(shared / "checkpoints"), "--cache", str(tmp_path / "cache"),
              "--offline", "--json"]
    assert main(common) == 0
    manifest = (out / "manifest.json").read_bytes()
    capsys.readouterr()
    assert main(common) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["built"] == [] and summary["up_to_date"] == ["movenet-lightning"] and summary["seconds"] < 10
    assert (out / "manifest.json").read_bytes() == manifest
    onnx = out / "movenet-lightning" / "movenet-lightning_int8.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-1])  # a damaged artifact is rebuilt
    assert main(common) == 0
    assert json.loads(capsys.readouterr().out)["built"] == ["movenet-lightning"]
    assert main(common + ["--max-samples", "5"]) == 0  # another option: another build
    summary = json.loads(capsys.readouterr().out)
    assert summary["built"] == ["movenet-lightning"] and summary["steps"]["movenet-lightning"]["vendor"] > 0


# From the SavedModel originals: tests/movenet_official.py writes tarballs with exactly the
# official signatures (random weights; Google's SavedModels cannot be downloaded here).

@pytest.fixture(scope="module")
def from_saved_models(tmp_path_factory, shared):
    from movenet_official import write_movenet_saved_model

    work = tmp_path_factory.mktemp("movenet-savedmodel")
    builds = {"movenet-thunder": (write_movenet_saved_model(work / "movenet_singlepose_thunder_4.tar.gz", size=256),
                                  "fp32,fp16,int8"),
              "movenet-multipose-lightning": (write_movenet_saved_model(work / "movenet_multipose_lightning_1.tar.gz",
                                                                        multipose=True), "fp32,fp16")}
    codes = {model_id: main(["build", model_id, "--checkpoint", str(tarball), "--precisions", precisions,
                             "--out", str(work / "zoo"), "--calibration-images", str(shared / "images"),
                             "--max-samples", "4", "--offline"])
             for model_id, (tarball, precisions) in builds.items()}
    return work / "zoo" / "manifest.json", codes


def test_savedmodel_originals_give_float_artifacts_that_pass_every_gate(from_saved_models):
    manifest_path, codes = from_saved_models
    models = {m["id"]: m for m in read_manifest(manifest_path)["models"]}
    for model_id, model in models.items():
        assert model["source"]["user_supplied"] is True
        published = {(a["format"], a["precision"]) for a in model["artifacts"]}
        assert {(f, p) for f in ("onnx", "tflite") for p in ("fp32", "fp16")} <= published, model_id
        for art in model["artifacts"]:
            assert art["io"]["inputs"][0]["dtype"] == "uint8", art["path"]  # Google's TFLite files take uint8
            assert art["io"]["inputs"][0]["shape"] == model["input"]["shape"], art["path"]  # NHWC kept
            assert [o["name"] for o in art["io"]["outputs"]] == [o["name"] for o in model["outputs"]], art["path"]
    # INT8 of a random-weight model cannot be judged, but its conversion (uint8 pixels into an int32
    # graph, calibrated on real frames) must run and be gated: published or rejected with its numbers.
    thunder = models["movenet-thunder"]
    for fmt in ("onnx", "tflite"):
        built = [a for a in thunder["artifacts"] if (a["format"], a["precision"]) == (fmt, "int8")]
        rejected = [r for r in thunder["rejected"] if (r["format"], r["precision"]) == (fmt, "int8")]
        assert len(built) + len(rejected) == 1, fmt
    assert codes["movenet-multipose-lightning"] == 0
    assert models["movenet-multipose-lightning"]["task"] == "keypoints-multi-person"
    assert models["movenet-multipose-lightning"]["outputs"][0]["shape"] == [1, 6, 56]


def test_the_loader_finds_the_multipose_people_in_score_order(from_saved_models, images):
    from PIL import Image

    from posezoo.loader import load

    manifest_path, _ = from_saved_models
    photo = np.asarray(Image.open(images / "single" / "two_people_walking.bmp").convert("RGB"))
    for fmt in ("onnx", "tflite"):
        predictor = load(manifest_path, "movenet-multipose-lightning", fmt, "fp32")
        poses = predictor.poses(photo)
        scores = [p.score for p in poses]
        assert 1 <= len(poses) <= 6 and scores == sorted(scores, reverse=True) and min(scores) >= 0.25
        assert all(p.keypoints.shape == (17, 2) for p in poses)
        np.testing.assert_allclose(predictor(photo).keypoints, poses[0].keypoints)


def test_with_the_savedmodel_handed_over_googles_int8_file_is_measured_beside_ours(tmp_path, shared, capsys):
    """Lightning with its SavedModel (random weights here) and Google's INT8 file in the mirror:
    every precision is ours; Google's file is gated against the same original for the record."""
    from movenet_official import write_movenet_saved_model

    tarball = write_movenet_saved_model(tmp_path / "movenet_singlepose_lightning_4.tar.gz", size=192)
    main(["build", "movenet-lightning", "--checkpoint", str(tarball), "--precisions", "int8", "--out",
          str(tmp_path / "zoo"), "--calibration-images", str(shared / "images"), "--mirror",
          str(shared / "checkpoints"), "--max-samples", "8", "--offline", "--keep-going"])
    (model,) = read_manifest(tmp_path / "zoo" / "manifest.json")["models"]
    assert all(a["origin"] == "converted" for a in model["artifacts"])
    (google,) = model["build"]["publisher_files"]
    assert google["sha256"] == VENDOR_SHA256 and google["bytes"] == 2894840 and "pck@0.05" in google["parity"]
    assert f"the publisher's tflite/int8 {VENDOR_NAME} (2.89 MB) vs the original" in capsys.readouterr().out
