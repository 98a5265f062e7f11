import json

import pytest

from zoo.manifest import ManifestError, empty_manifest, read_manifest, upsert_model, validate, write_manifest


def model(mid="m-1", artifacts=()):
    return {"id": mid, "family": "f", "variant": "v", "task": "keypoints-topdown", "title": "t", "license": "MIT",
            "paper": {"title": "p", "url": "u"}, "keypoints": {"names": ["a", "b"], "skeleton": [[0, 1]]},
            "source": {"file": "x.tflite", "sha256": "0" * 64, "bytes": 1, "origin": "mirror", "urls": []},
            "input": {"name": "x", "shape": [1, 8, 8, 3], "layout": "NHWC", "dtype": "float32", "color": "RGB",
                      "crop": {"kind": "box"}},
            "outputs": [{"name": "y", "shape": [1, 4], "meaning": "kp"}], "decoder": {"type": "regression", "output": "y"},
            "complexity": {"params": 1, "flops": 1}, "artifacts": list(artifacts), "rejected": []}


def artifact(fmt, precision, sha="1"):
    parity = {"samples": 1, "rel_err": 0, "cos": 1, "snr_db": "inf", "pck@0.01": 1, "pck@0.02": 1, "pck@0.05": 1,
              "worst_keypoint_err": 0, "outputs": {}, "thresholds": {}, "passed": True, "failures": []}
    return {"format": fmt, "precision": precision, "path": f"m-1/m-1_{precision}.{fmt}", "sha256": sha * 64,
            "bytes": 1, "origin": "converted", "input_layout": "NHWC", "io": {"inputs": [], "outputs": []}, "parity": parity,
            "verified_with": {}}


def test_roundtrip_and_update_in_place(tmp_path):
    path = tmp_path / "manifest.json"
    m = upsert_model(empty_manifest("0.1"), model(artifacts=[artifact("onnx", "fp32"), artifact("tflite", "fp32")]))
    write_manifest(path, m)
    assert (tmp_path / "manifest.schema.json").exists()
    again = upsert_model(read_manifest(path), model(artifacts=[artifact("onnx", "fp32", sha="2")]))
    assert len(again["models"]) == 1
    arts = again["models"][0]["artifacts"]
    assert [(a["format"], a["sha256"][0]) for a in arts] == [("onnx", "2"), ("tflite", "1")]
    write_manifest(path, again)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_invalid_manifest_refused_on_write_and_read(tmp_path):
    path = tmp_path / "manifest.json"
    bad = upsert_model(empty_manifest("0.1"), model())
    bad["models"][0]["artifacts"] = [artifact("onnx", "fp64")]
    with pytest.raises(ManifestError, match="models/0/artifacts/0/precision"):
        write_manifest(path, bad)
    assert not path.exists()
    path.write_text(json.dumps(bad))
    with pytest.raises(ManifestError, match="invalid at models/0/artifacts/0/precision"):
        read_manifest(path)
    path.write_text("{ not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(path)


def test_sha256_must_be_hex():
    m = upsert_model(empty_manifest("0.1"), model(artifacts=[artifact("onnx", "fp32", sha="g")]))
    with pytest.raises(ManifestError, match="sha256"):
        validate(m)
