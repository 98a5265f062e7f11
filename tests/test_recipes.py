import pytest

from posezoo import recipes
from posezoo.recipes import RecipeError, load_recipe


def test_blazepose_recipe_is_valid_and_complete():
    variants = recipes.select(["blazepose"])
    assert [v.id for v in variants] == ["blazepose-lite", "blazepose-full", "blazepose-heavy"]
    lite = variants[0]
    assert len(lite.recipe["keypoints"]["names"]) == 33
    assert {s.kind for s in lite.file.sources} == {"npm", "https"}
    assert lite.thresholds["int8"]["pck@0.05_min"] == 0.97
    assert len(lite.recipe["outputs"]) == 5


def test_unknown_name_lists_known_ones():
    with pytest.raises(RecipeError, match="known: .*blazepose"):
        recipes.select(["openpose"])


def test_invalid_recipe_names_file_and_field(tmp_path):
    bad = tmp_path / "recipe.yaml"
    text = (recipes.RECIPES_DIR / "blazepose" / "recipe.yaml").read_text()
    bad.write_text(text.replace("sha256: f17bfbecadb", "sha256: XYZ"))
    with pytest.raises(RecipeError, match=r"recipe.yaml: invalid recipe at variants/0/file/sha256"):
        load_recipe(bad)


def test_efficientpose_variants_override_the_family_input():
    by_id = {v.id: v for v in recipes.select(["efficientpose"])}
    assert set(by_id) == {"efficientpose-rt", "efficientpose-rt-lite", "efficientpose-i", "efficientpose-i-lite",
                          "efficientpose-ii", "efficientpose-ii-lite", "efficientpose-iii", "efficientpose-iv"}
    iv = by_id["efficientpose-iv"].recipe
    assert iv["input"]["shape"] == [1, 600, 600, 3] and iv["input"]["name"] == "input_res1"
    assert [o["shape"][1] for o in iv["outputs"]] == [75, 75, 75, 600] and not by_id["efficientpose-iv"].file.sha256
    lite, full, ii = by_id["efficientpose-i-lite"].recipe, by_id["efficientpose-i"].recipe, by_id["efficientpose-ii"].recipe
    assert lite["input"]["shape"] == full["input"]["shape"] == [1, 256, 256, 3]
    assert lite["input"]["normalization"]["mean"] == [127.5] * 3 and full["input"]["normalization"]["mean"][0] == 123.675
    assert lite["input"]["crop"] == full["input"]["crop"] == {"kind": "whole_image", "resize": "letterbox"}
    assert [o["name"] for o in lite["outputs"]] == ["upscaled_confs"] and len(full["outputs"]) == 4
    assert ii["original_format"] == "tflite" and ii["decoder"]["output"] == "upscaled_confs/BiasAdd"
    assert ii["decoder"]["type"] == "heatmap" and full["original_format"] == "keras"


def test_the_movenet_multipose_variant_overrides_task_calibration_and_decoder():
    by_id = {v.id: v for v in recipes.select(["movenet"])}
    assert set(by_id) == {"movenet-lightning", "movenet-thunder", "movenet-multipose-lightning"}
    multi, thunder = by_id["movenet-multipose-lightning"].recipe, by_id["movenet-thunder"].recipe
    assert multi["task"] == "keypoints-multi-person" and thunder["task"] == "keypoints-single-person"
    assert multi["calibration_crop"]["kind"] == "whole_image" and thunder["calibration_crop"]["kind"] == "box"
    assert multi["decoder"]["multi_pose"]["instances"] == 6 and multi["decoder"]["x_index"] == 1
    assert thunder["input"]["shape"] == [1, 256, 256, 3] and thunder["decoder"]["coordinate_scale"] == 256.0
    assert thunder["original_format"] == "saved_model"
    assert list(by_id["movenet-thunder"].vendor_files) == [("tflite", "int8")]  # Google's INT8 TFLite
