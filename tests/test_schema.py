"""The runtime contract: zoo/manifest.schema.json types every key a runtime reads, zoo/schema.py
checks it exactly as jsonschema does, the loader and the recipes are held to it, and
docs/manifest.md is generated from it."""
import copy
import json

import jsonschema
import pytest

from posezoo import recipes
from conftest import manifest_artifact, manifest_model
from posezoo.scripts import manifest_docs
from posezoo import schema
from posezoo.loader import LoaderError, load
from posezoo.manifest import SCHEMA, empty_manifest, validate

CONTRACT_KEYS = ("input", "outputs", "decoder", "keypoints", "calibration_crop")


def _zoo_manifest() -> dict:
    """A manifest with one entry per recipe variant (every decoder type, crop kind and
    multi-pose form the zoo has), each with an artifact."""
    models = []
    for v in recipes.all_variants():
        model = manifest_model(v.id, [manifest_artifact("onnx", "fp32", path=f"{v.id}/{v.id}_fp32.onnx")])
        model.update({key: copy.deepcopy(v.recipe[key]) for key in CONTRACT_KEYS if key in v.recipe})
        models.append(model)
    return {**empty_manifest("0.1"), "models": models}


def _agrees_with_jsonschema(document) -> bool:
    """Both validators accept `document`, or both refuse it."""
    ours = True
    try:
        schema.validate(document, SCHEMA)
    except schema.SchemaError:
        ours = False
    theirs = jsonschema.Draft202012Validator(SCHEMA).is_valid(document)
    return ours == theirs


def _leaves(value, path=()):
    """Every (path, value) inside a JSON document."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, path + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, path + (i,))


def _set(document, path, value):
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


def _delete(document, path):
    target = document
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]


SPOILERS = [-1, 0, 2.5, "x", "../x.onnx", None, True, [], {}]


def test_every_recipe_variant_makes_a_valid_manifest_entry():
    manifest = _zoo_manifest()
    validate(manifest)
    assert jsonschema.Draft202012Validator(SCHEMA).is_valid(manifest)
    kinds = {(m["decoder"]["type"], "multi_pose" in m["decoder"], m["input"]["crop"]["kind"]) for m in manifest["models"]}
    assert {("regression", True, "whole_image"), ("heatmap", True, "whole_image"), ("regression", False, "rotated_roi"),
            ("heatmap", False, "box")} <= kinds


def test_our_validator_agrees_with_jsonschema_on_every_spoiled_key():
    """Each model entry of the zoo, with each of its keys removed or replaced by values of other
    types and ranges: zoo/schema.py and jsonschema accept and refuse the same documents."""
    seen = set()
    checked = 0
    for model in _zoo_manifest()["models"]:
        document = {**empty_manifest("0.1"), "models": [model]}
        for path, _ in list(_leaves(document)):
            if len(path) < 3 or path[2] in ("source", "paper", "complexity", "build") or (path[2:], ) in seen:
                continue
            seen.add((path[2:],))
            spoiled = copy.deepcopy(document)
            if isinstance(path[-1], str):
                _delete(spoiled, path)
                assert _agrees_with_jsonschema(spoiled), f"deleting {'/'.join(map(str, path))}"
            for value in SPOILERS:
                spoiled = copy.deepcopy(document)
                _set(spoiled, path, value)
                assert _agrees_with_jsonschema(spoiled), f"{'/'.join(map(str, path))} = {value!r}"
                checked += 1
    assert checked > 1000


@pytest.mark.parametrize("decoder_type", ["regression", "heatmap"])
def test_a_manifest_missing_any_required_decoder_parameter_is_refused_naming_it(tmp_path, decoder_type):
    model = next(m for m in _zoo_manifest()["models"] if m["decoder"]["type"] == decoder_type)
    required = SCHEMA["$defs"][f"decoder_{decoder_type}"]["required"]
    assert len(required) >= 2
    for key in required:
        broken = copy.deepcopy(model)
        del broken["decoder"][key]
        manifest = {**empty_manifest("0.1"), "models": [broken]}
        (tmp_path / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(LoaderError, match=f"invalid at models/0/decoder: '{key}' is a required property"):
            load(tmp_path / "manifest.json", model["id"], "onnx", "fp32")
        with pytest.raises(LoaderError, match=f"'{key}' is a required property"):
            load(manifest, model["id"], "onnx", "fp32", directory=tmp_path)


@pytest.mark.parametrize("path", ["../x.onnx", "m/../../x.onnx", "/etc/x.onnx", "m\\..\\x.onnx", "C:/x.onnx", ".."])
def test_an_escaping_artifact_path_breaks_the_schema(path):
    manifest = {**empty_manifest("0.1"), "models": [manifest_model("m", [manifest_artifact("onnx", "fp32", path=path)])]}
    with pytest.raises(schema.SchemaError, match="never leaving it") as e:
        schema.validate(manifest, SCHEMA)
    assert e.value.path == ("models", 0, "artifacts", 0, "path")
    assert not jsonschema.Draft202012Validator(SCHEMA).is_valid(manifest)


@pytest.mark.parametrize("path", ["m/m_fp32.onnx", "m/..x/m.onnx", "m/x..y.tflite", "a/b/c.tflite"])
def test_paths_inside_the_folder_pass(path):
    manifest = {**empty_manifest("0.1"), "models": [manifest_model("m", [manifest_artifact("onnx", "fp32", path=path)])]}
    schema.validate(manifest, SCHEMA)


def test_names_a_manifest_uses_must_exist():
    manifest = _zoo_manifest()
    posenet = next(m for m in manifest["models"] if "multi_pose" in m["decoder"] and m["decoder"]["type"] == "heatmap")
    posenet["decoder"]["multi_pose"]["displacements_bwd"] = "nowhere"
    with pytest.raises(Exception, match=r"decoder/multi_pose/displacements_bwd: 'nowhere' is not one of the model's outputs"):
        validate(manifest)
    manifest = _zoo_manifest()
    roi = next(m for m in manifest["models"] if m["input"]["crop"]["kind"] == "rotated_roi")
    roi["input"]["crop"]["up_keypoints"] = ["left_shoulder", "neck"]
    with pytest.raises(Exception, match=r"input/crop/up_keypoints: \['neck'\] are not among the model's keypoints"):
        validate(manifest)
    manifest = _zoo_manifest()
    manifest["models"][1]["id"] = manifest["models"][0]["id"]
    with pytest.raises(Exception, match=r"models/1/id: .* is the id of models/0 too"):
        validate(manifest)


def test_a_oneof_error_names_the_branch_the_data_meant():
    crop = {"kind": "rotated_roi", "center_keypoints": ["a", "b"]}
    with pytest.raises(schema.SchemaError, match="'up_keypoints' is a required property"):
        schema.validate(crop, {**SCHEMA, "$ref": "#/$defs/crop"})
    with pytest.raises(schema.SchemaError, match=r"'oval' is not one of \['whole_image', 'box', 'rotated_roi'\]"):
        schema.validate({"kind": "oval"}, {**SCHEMA, "$ref": "#/$defs/crop"})
    with pytest.raises(schema.SchemaError, match=r"'kind' is a required property \(one of"):
        schema.validate({"padding": 1.0}, {**SCHEMA, "$ref": "#/$defs/crop"})


def test_a_schema_keyword_the_validator_does_not_implement_is_refused():
    with pytest.raises(ValueError, match=r"\['patternProperties'\] are not implemented"):
        schema.validate({}, {"type": "object", "patternProperties": {"^x": {"type": "string"}}})


def test_a_recipe_that_would_write_an_unusable_manifest_is_refused(tmp_path):
    text = (recipes.RECIPES_DIR / "movenet" / "recipe.yaml").read_text()
    broken = tmp_path / "recipe.yaml"
    broken.write_text(text.replace("  x_index: 1\n", "", 1))
    assert broken.read_text() != text
    with pytest.raises(recipes.RecipeError, match=r"variant movenet-lightning: invalid at decoder: 'x_index' is a required"):
        recipes.load_recipe(broken)


def test_the_docs_are_generated_from_the_schema():
    assert manifest_docs.DOC.read_text() == manifest_docs.render(), "run `python -m posezoo.scripts.manifest_docs`"
    for name in ("decoder_regression", "decoder_heatmap", "multi_pose_personlab", "crop"):
        assert f"## {name}" in manifest_docs.render()
