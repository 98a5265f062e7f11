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
