"""Golden vectors: the writer (converters/golden.py), the format and its check (zoo/golden.py),
and their place in publish and verify. A small float TFLite (conftest's tiny_tflite) stands in
for a model; the people are the real ones of ../shared/images."""
import hashlib
import json
import shutil

import numpy as np
import pytest
from conftest import TINY_DECODER, TINY_INPUT, manifest_model
from PIL import Image

from posezoo import golden
from posezoo.converters.calibration import load_samples
from posezoo.converters.golden import _output, golden_cases, write_golden
from posezoo.loader import Predictor, load
from posezoo.manifest import empty_manifest, validate
from posezoo.runtime import open_runtime


@pytest.fixture
def tiny_model(tiny_tflite, tmp_path):
    """A folder with the tiny model as artifact `m-1/m-1_fp32.tflite` and its manifest entry."""
    from posezoo.converters.runtimes import open_runner
    from posezoo.converters.sources import sha256_of

    path = tmp_path / "m-1" / "m-1_fp32.tflite"
    path.parent.mkdir()
    shutil.copy(tiny_tflite, path)
    model = manifest_model()
    model.update(input=TINY_INPUT, decoder=TINY_DECODER, outputs=[{"name": "Identity", "shape": [1, 10], "meaning": "kp"}],
                 keypoints={"names": list("abcde"), "skeleton": [[0, 1]]})
    parity = {"samples": 1, "rel_err": 0, "cos": 1, "snr_db": "inf", "pck@0.01": 1, "pck@0.02": 1, "pck@0.05": 1,
              "worst_keypoint_err": 0, "outputs": {}, "thresholds": {}, "passed": True, "failures": []}
    model["artifacts"] = [{"format": "tflite", "precision": "fp32", "path": "m-1/m-1_fp32.tflite",
                           "sha256": sha256_of(path), "bytes": path.stat().st_size, "origin": "converted",
                           "input_layout": "NHWC", "io": open_runner(path).io_details(), "parity": parity,
                           "verified_with": {}}]
    return tmp_path, model


def test_arrays_round_trip_through_content_addressed_gzip_files(tmp_path):
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7
    ref, data = golden.encode(array)
    assert ref["file"] == golden.encode(array.copy())[0]["file"]  # the same bytes, the same name
    assert ref["dtype"] == "float32" and ref["shape"] == [2, 3, 4]
    (tmp_path / ref["file"]).write_bytes(data)
    np.testing.assert_array_equal(golden.read_array(tmp_path, ref), array)
    (tmp_path / ref["file"]).write_bytes(data[:20] + bytes([data[20] ^ 1]) + data[21:])
    with pytest.raises(golden.GoldenError, match="sha256 differs"):
        golden.read_array(tmp_path, ref)
    with pytest.raises(golden.GoldenError, match="not a plain file name"):
        golden.read_array(tmp_path, {**ref, "file": "../" + ref["file"]})


def test_a_large_output_keeps_evenly_spaced_values_and_each_heatmap_peak():
    heatmaps = np.zeros((1, 40, 30, 5), np.float32)
    for c in range(5):
        heatmaps[0, 3 + 7 * c, 29 - c, c] = 1.0 + c  # a peak per channel, one at the right border
    stored = {}

    def keep(array):
        ref, _ = golden.encode(array)
        stored[ref["file"]] = np.asarray(array)
        return ref

    entry = _output(heatmaps, "h", {"type": "heatmap", "output": "h", "layout": "NHWC"}, keep)
    indices, values = stored[entry["indices"]["file"]], stored[entry["values"]["file"]]
    assert entry["shape"] == [1, 40, 30, 5] and indices.dtype == np.int32 and np.all(np.diff(indices) > 0)
    np.testing.assert_array_equal(values, heatmaps.reshape(-1)[indices])
    assert len(indices) <= golden.SAMPLED_VALUES + 5 * 9 and values.max() == 5.0
    for c in range(5):  # the peak and its neighbours inside the map: 3x3, or 3x2 at the border
        around = [(y, x) for y in range(2 + 7 * c, 5 + 7 * c) for x in range(28 - c, min(30, 31 - c))]
        assert all(np.ravel_multi_index((0, y, x, c), heatmaps.shape) in set(indices.tolist()) for y, x in around)
    small = _output(np.ones((1, 10), np.float32), "k", {"type": "regression", "output": "k"}, keep)
    assert "indices" not in small and stored[small["values"]["file"]].shape == (1, 10)


@pytest.mark.parametrize("crop", [{"kind": "box", "padding": 1.25},
                                  {"kind": "rotated_roi", "center_keypoints": ["left_hip", "right_hip"],
                                   "up_keypoints": ["left_shoulder", "right_shoulder"], "expand": 1.25}])
def test_a_case_photo_is_the_part_around_the_person_and_gives_the_same_crop(images, crop):
    """The call shifted into the cut-out part of the photo warps exactly the pixels the whole
    photo gives: the golden photo is small and nothing a port computes changes."""
    from posezoo.loader import crop_matrix, warp

    spec = {**TINY_INPUT, "shape": [1, 64, 48, 3], "crop": crop}
    model = {"input": spec}
    cases = golden_cases(model, images)
    samples = [s for s in load_samples(images, spec, crop) if s.split == "gate"]
    assert len(cases) == 2 and all("(gate people)" in c["person"] for c in cases)
    for case, sample in zip(cases, [samples[0], samples[len(samples) // 2]]):
        with Image.open(sample.person.image) as im:
            whole = np.asarray(im.convert("RGB"))
        assert case["photo"].size < whole.size
        call = case["call"]
        matrix = crop_matrix(crop, 48, 64, case["photo"].shape[1::-1], call.get("box"), call.get("keypoints"))
        np.testing.assert_array_equal(warp(case["photo"], matrix, 48, 64), sample.rgb)
        np.testing.assert_allclose(matrix[:, :2], sample.matrix[:, :2], rtol=1e-12)


def test_written_golden_vectors_validate_and_pass_their_own_check(tiny_model, images):
    directory, model = tiny_model
    size = write_golden(model, directory, golden_cases(model, images))
    artifact = model["artifacts"][0]
    validate({**empty_manifest("0.1"), "models": [model]})
    assert artifact["golden"]["path"] == "m-1/golden/m-1_fp32.tflite.json"
    assert size == sum((directory / f).stat().st_size for f in golden.files_of(artifact)[1:])
    index = golden.read_index(directory, artifact)
    assert index["tolerance"] == golden.TOLERANCES["fp32"] and len(index["cases"]) == 2
    assert index["artifact"]["sha256"] == artifact["sha256"]
    folder = directory / "m-1" / "golden"
    predictor = Predictor(model, artifact, open_runtime(directory / artifact["path"]))
    report = golden.check(predictor, index, folder)
    assert report["passed"], report["failures"]
    assert report["matrix_abs"] == 0 and report["input_rel_err"] == 0 and report["keypoints_within"] == 1.0


def test_the_check_names_the_step_a_port_gets_wrong(tiny_model, images):
    directory, model = tiny_model
    write_golden(model, directory, golden_cases(model, images))
    artifact = model["artifacts"][0]
    index, folder = golden.read_index(directory, artifact), directory / "m-1" / "golden"

    def predictor(**changes):
        p = Predictor(model, artifact, open_runtime(directory / artifact["path"]))
        for name, value in changes.items():
            setattr(p, name, value)
        return p

    swapped = predictor(spec={**TINY_INPUT, "color": "BGR"})  # a port that feeds BGR
    report = golden.check(swapped, index, folder)
    assert not report["passed"] and any(f.startswith("input_rel_err") for f in report["failures"])
    run = open_runtime(directory / artifact["path"])
    drifting = predictor(run=lambda feeds: {k: v * 1.01 for k, v in run(feeds).items()})  # a 1 % runtime error
    report = golden.check(drifting, index, folder)
    assert report["input_rel_err"] == 0 and any(f.startswith("output Identity") for f in report["failures"])


def test_publish_moves_golden_files_and_withdraws_those_no_artifact_names(tiny_model, images, tmp_path):
    from posezoo.converters.publish import Staging, publish
    from posezoo.manifest import read_manifest

    directory, model = tiny_model
    out = tmp_path / "out"
    out.mkdir()
    for people in (golden_cases(model, images), golden_cases(model, images)[:1]):  # a rebuild with fewer cases
        with Staging(out, "m-1") as staging:
            shutil.copytree(directory / "m-1", staging.path / "m-1", ignore=shutil.ignore_patterns("golden"))
            entry = json.loads(json.dumps(model))
            write_golden(entry, staging.path, people)
            publish(out, staging, entry, "0.1")
        (art,) = read_manifest(out / "manifest.json")["models"][0]["artifacts"]
        on_disk = {str(p.relative_to(out)) for p in (out / "m-1").rglob("*") if p.is_file()}
        assert on_disk == set(golden.files_of(art))


def test_verify_reports_an_altered_golden_file(tiny_model, images):
    from posezoo.scripts.verify import check_golden

    directory, model = tiny_model
    write_golden(model, directory, golden_cases(model, images))
    artifact = model["artifacts"][0]
    assert check_golden(model, artifact, directory)["passed"]
    victim = directory / artifact["golden"]["files"][0]
    victim.write_bytes(victim.read_bytes() + b"\0")
    report = check_golden(model, artifact, directory)
    assert not report["passed"] and "sha256 differs" in report["failures"][0]
    assert check_golden(model, {k: v for k, v in artifact.items() if k != "golden"}, directory) is None
    index = directory / artifact["golden"]["path"]  # an index without its tolerances, listed as it is
    data = json.loads(index.read_text())
    del data["tolerance"]["outputs_within"]
    index.write_text(json.dumps(data))
    listed = {**artifact, "golden": {**artifact["golden"], "sha256": hashlib.sha256(index.read_bytes()).hexdigest(),
                                     "bytes": index.stat().st_size}}
    report = check_golden(model, listed, directory)
    assert not report["passed"] and "lacks outputs_within" in report["failures"][0]


def test_the_loader_checks_golden_vectors_of_a_manifest_folder(tiny_model, images):
    """What a user of the runtime package alone runs: load an artifact, check it on its vectors."""
    directory, model = tiny_model
    write_golden(model, directory, golden_cases(model, images))
    manifest = {**empty_manifest("0.1"), "models": [model]}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    predictor = load(directory / "manifest.json", "m-1", "tflite", "fp32")
    artifact = model["artifacts"][0]
    assert golden.check_artifact(predictor, directory, artifact)["passed"]
