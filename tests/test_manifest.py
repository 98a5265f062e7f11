import json

import pytest

from conftest import manifest_artifact as artifact
from conftest import manifest_model as model
from posezoo.manifest import ManifestError, empty_manifest, read_manifest, upsert_model, validate, write_manifest


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
