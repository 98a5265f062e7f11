"""scripts/evaluate.py (`posezoo eval`) and scripts/report.py (the site's rows, figures and cards).

Fast tests check the annotation readers' coordinate conventions, PCKh, COCO AP (pycocotools) and
the agreement measure on hand-made predictions. Slow tests evaluate the `zoo` manifest of
conftest (EfficientPose RT-Lite from the authors' Keras file, MoveNet from Google's INT8 file) on
the shared annotations (tests/test_site.py then shows them on the site)."""
import json
from pathlib import Path

import numpy as np
import pytest

from posezoo.scripts.evaluate import EvalError, agreement, coco_ap, pckh, read_annotations

MPII_PERSON = {"image": "a.jpg", "center": [50.0, 60.0], "scale": 0.4,
               "joints": [[float(10 + k), float(20 + k)] for k in range(16)], "joints_vis": [1] * 15 + [0]}


@pytest.fixture
def mpii_file(tmp_path):
    from PIL import Image

    Image.new("RGB", (100, 120)).save(tmp_path / "a.jpg")
    path = tmp_path / "mpii.json"
    path.write_text(json.dumps([MPII_PERSON]))
    return path


def test_mpii_joints_are_one_based_and_the_box_comes_from_centre_and_scale(mpii_file):
    ann = read_annotations(mpii_file, mpii_file.parent)
    person = ann.people[0]
    np.testing.assert_allclose(ann.truth(person)[0], [9.5, 19.5, 1])  # 1-based index 10 -> continuous 9.5
    np.testing.assert_allclose(person.points[0], [10, 20, 1])  # the file's own coordinates
    assert person.points[15, 2] == 0 and "left_wrist" not in person.keypoints
    assert person.box == (10.0, 20.0, 80.0, 80.0)
    assert person.head_size == pytest.approx(np.hypot(1, 1))  # head_top (9) - upper_neck (8)
    assert ann.to_annotation == 0.5 and "head_top-upper_neck" in ann.notes[0]


def test_pckh_counts_visible_joints_within_half_a_head(mpii_file):
    ann = read_annotations(mpii_file, mpii_file.parent)
    person = ann.people[0]
    truth = ann.truth(person)[:, :2] + ann.to_annotation  # the file's own coordinates
    xy = truth.copy()
    xy[:5, 0] += 0.6 * person.head_size  # 5 of the 15 visible joints off by 0.6 heads
    xy[15] += 100  # not visible: not counted
    result = pckh(ann, {0: (xy, np.ones(16), 100.0)})
    assert result["PCKh@0.5"] == pytest.approx(10 / 15)
    assert result["PCKh@0.1"] == pytest.approx(10 / 15)


def test_coco_ap_is_one_for_the_annotations_and_drops_when_keypoints_move(images):
    ann = read_annotations(images / "coco" / "test_coco.json", images / "coco")
    assert ann.kind == "coco" and len(ann.names) == 17 and len(ann.people) >= 10
    exact = {p.key: (ann.truth(p)[:, :2] + ann.to_annotation, np.ones(17), 1.0) for p in ann.people}
    assert coco_ap(ann, exact)["AP"] == pytest.approx(1.0)
    moved = {k: (xy + 0.08 * max(p.box[2:]), s, 1.0) for (k, (xy, s, _)), p in zip(exact.items(), ann.people)}
    assert coco_ap(ann, moved)["AP"] < 0.6


def test_agreement_ignores_keypoints_neither_run_finds():
    ref = {1: (np.array([[0.0, 0.0], [10.0, 0.0]]), np.array([0.9, 0.1]), 100.0)}
    run = {1: (np.array([[1.0, 0.0], [60.0, 0.0]]), np.array([0.9, 0.2]), 100.0)}
    result = agreement(run, ref, {"min_score": 0.3})
    assert result["agreement"]["pck@0.01"] == 1.0 and result["deviation"] == pytest.approx(0.005)
    assert agreement(run, ref, {})["agreement"]["pck@0.05"] == 0.5


def test_unknown_annotations_and_missing_images_are_named(tmp_path, mpii_file):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"foo": 1}))
    with pytest.raises(EvalError, match="bad.json"):
        read_annotations(bad, tmp_path)
    with pytest.raises(EvalError, match="a.jpg"):
        read_annotations(mpii_file, tmp_path / "elsewhere")


def test_a_manifest_without_a_model_for_the_keypoints_is_named(images, tmp_path, capsys):
    from posezoo.manifest import empty_manifest
    from posezoo.scripts.cli import main

    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(empty_manifest("0.1")))
    argv = ["eval", str(manifest), "--images", str(images / "coco"), "--annotations", str(images / "coco" / "test_coco.json")]
    assert main(argv) == 2 and "nothing to evaluate" in capsys.readouterr().err
    assert main([*argv, "--allow-none"]) == 0 and "note: no model of" in capsys.readouterr().out
    assert not (tmp_path / "eval").exists()


@pytest.mark.slow
def test_eval_runs_the_original_and_every_artifact_through_the_loader(zoo, shared, tmp_path):
    from posezoo.scripts.cli import main

    common = ["--mirror", str(shared / "checkpoints"), "--cache", str(tmp_path), "--offline"]
    images = shared / "images"
    assert main(["eval", str(zoo), "--images", str(images / "mpii"), "--annotations",
                 str(images / "mpii" / "test_mpii.json"), *common]) == 0
    assert main(["eval", str(zoo), "--images", str(images / "coco"), "--annotations",
                 str(images / "coco" / "test_coco.json"), *common]) == 0
    mpii = json.loads((zoo.parent / "eval" / "test_mpii.json").read_text())
    coco = json.loads((zoo.parent / "eval" / "test_coco.json").read_text())
    manifest = json.loads(zoo.read_text())
    # EfficientPose predicts MPII's 16 joints, MoveNet COCO's 17: each is evaluated where it fits.
    assert [m["id"] for m in mpii["models"]] == ["efficientpose-rt-lite"]
    assert [m["id"] for m in coco["models"]] == ["movenet-lightning"]
    for report, model_id in ((mpii, "efficientpose-rt-lite"), (coco, "movenet-lightning")):
        entry = report["models"][0]
        model = next(m for m in manifest["models"] if m["id"] == model_id)
        paths = [r["path"] for r in entry["rows"]]
        assert set(a["path"] for a in model["artifacts"]) <= set(paths)
        assert all(r["people"] >= 5 for r in entry["rows"])
        assert all(r["agrees"] for r in entry["rows"] if "agrees" in r), entry["rows"]
    ep = mpii["models"][0]["rows"]
    assert ep[0]["format"] == "original" and 0.6 <= ep[0]["PCKh@0.5"] <= 1.0  # the authors' model on real people
    assert all(abs(r["drop"]) <= 0.1 for r in ep)
    assert coco["models"][0]["rows"][0]["origin"] == "vendor"  # built from Google's file: it is the reference


def test_report_rows_list_the_original_every_artifact_and_the_rejected_ones():
    from posezoo.scripts.report import artifact_rows

    parity = {"passed": True, "rel_err": 0.01, "cos": 0.99, "pck@0.05": 1.0, "samples": 4}
    model = {"id": "m", "source": {"file": "m.tflite", "bytes": 10, "sha256": "ab" * 32},
             "artifacts": [{"path": "m/m_int8.onnx", "format": "onnx", "precision": "int8", "origin": "converted",
                            "bytes": 5, "sha256": "cd" * 32, "parity": parity}],
             "rejected": [{"format": "onnx", "precision": "fp32", "reason": "parity gate failed",
                           "parity": {**parity, "passed": False}}]}
    evaluation = {"annotations": "x/coco.json", "metric": "AP", "models": [{"id": "m", "rows": [
        {"format": "original", "precision": "original", "origin": "original", "path": "m.tflite", "AP": 0.5, "drop": 0},
        {"format": "onnx", "precision": "int8", "origin": "converted", "path": "m/m_int8.onnx", "AP": 0.4,
         "drop": 0.1}]}]}
    rows = artifact_rows(model, [evaluation])
    assert [(r["format"], r["published"]) for r in rows] == [("original", None), ("onnx", True), ("onnx", False)]
    assert rows[0]["accuracy"]["coco.json"][1]["AP"] == 0.5 and rows[1]["accuracy"]["coco.json"][1]["drop"] == 0.1


def test_a_multi_person_model_is_matched_to_each_annotated_person(images, monkeypatch):
    """The photo's people come back in another order, with one extra detection: each annotated
    person gets its own pose back, so AP is 1."""
    from types import SimpleNamespace

    import PIL.Image

    from posezoo.scripts.evaluate import predict_all
    from posezoo.loader import Pose

    ann = read_annotations(images / "coco" / "test_coco.json", images / "coco")
    names = [f"kp{k}" for k in range(3)] + list(ann.names)  # the model's own order differs
    opened = []
    open_image = PIL.Image.open
    monkeypatch.setattr(PIL.Image, "open", lambda path, *a, **k: opened.append(path) or open_image(path, *a, **k))

    def poses(rgb):
        people = [p for p in ann.people if p.image == opened[-1]]
        found = [np.r_[np.zeros((3, 2)), ann.truth(p)[:, :2]] for p in reversed(people)] + [np.zeros((20, 2))]
        return [Pose(xy, np.ones(20), names, {}, np.eye(2, 3), 0.9) for xy in found]

    predictor = SimpleNamespace(model={"task": "keypoints-multi-person"}, width=256, height=256, poses=poses)
    predictions = predict_all(predictor, ann, names, SimpleNamespace(update=lambda n: None))
    assert set(predictions) == {p.key for p in ann.people if (p.points[:, 2] > 0).any()}
    assert coco_ap(ann, predictions)["AP"] == pytest.approx(1.0)


def test_a_card_says_when_the_original_is_someone_elses_conversion():
    from conftest import manifest_model

    from posezoo.scripts.report import model_card
    from posezoo.scripts.site import model_html

    model = manifest_model()
    model["title"] = "MoveNet"
    model["source"].update(
        companions=[{"file": "x.bin", "sha256": "1" * 64, "bytes": 7}],
        derived={"format": "tfjs graph model", "converted_by": "someone", "converted_from": "Google's model",
                 "weights": 3, "weights_stored_as": {"float16": 2},
                 "summary": "A TensorFlow.js graph model converted from Google's model by someone: the publisher's "
                            "trained weights, not the publisher's own file."})
    card = model_card(model, [])
    assert "read with `x.bin` (7 bytes), sha256 `" + "1" * 64 in card
    assert card.count("not the publisher's own file") == 2  # under Original, and under the limits
    assert "not the publisher's file" in model_html(model, [], {}, [])


def test_an_int8_parity_line_says_where_it_loses():
    """The site's parity cell of an INT8 file: gate people, PCK per data set, robustness set and its worst transform."""
    from posezoo.scripts.report import parity_text

    text = parity_text({"passed": False, "rel_err": 0.6, "cos": 0.92, "pck@0.05": 0.969, "samples": 26,
                        "people": "gate", "by_source": {"coco": 1.0, "posetrack18": 0.93},
                        "robustness": {"pck@0.05": 0.967, "samples": 156,
                                       "by_transform": {"dark": 0.95, "jpeg": 0.99}}})
    assert text.startswith("FAIL") and "gate people" in text and "(coco 1.000, posetrack18 0.930)" in text
    assert "worst dark 0.950" in text
