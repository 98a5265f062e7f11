import pytest

import recipes
from recipes import RecipeError, load_recipe


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
                          "efficientpose-ii", "efficientpose-ii-lite"}
    lite, full, ii = by_id["efficientpose-i-lite"].recipe, by_id["efficientpose-i"].recipe, by_id["efficientpose-ii"].recipe
    assert lite["input"]["shape"] == full["input"]["shape"] == [1, 256, 256, 3]
    assert lite["input"]["normalization"]["mean"] == [127.5] * 3 and full["input"]["normalization"]["mean"][0] == 123.675
    assert lite["input"]["crop"] == full["input"]["crop"] == {"kind": "whole_image", "resize": "letterbox"}
    assert [o["name"] for o in lite["outputs"]] == ["upscaled_confs"] and len(full["outputs"]) == 4
    assert ii["original_format"] == "tflite" and ii["decoder"]["output"] == "upscaled_confs/BiasAdd"
    assert ii["decoder"]["type"] == "heatmap" and full["original_format"] == "keras"
