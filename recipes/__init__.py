"""Family recipes: one folder per family with a `recipe.yaml` validated by `recipe.schema.json`."""
from __future__ import annotations

import copy
import importlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import jsonschema
import yaml

from posezoo.converters.parity import DEFAULT_THRESHOLDS
from posezoo.converters.sources import FileSpec
from posezoo import schema as contract
from posezoo.errors import PosezooError
from posezoo.manifest import SCHEMA as MANIFEST_SCHEMA
from posezoo.manifest import model_inconsistencies

RECIPES_DIR = Path(__file__).parent
SCHEMA = json.loads((RECIPES_DIR / "recipe.schema.json").read_text())
# The keys of a manifest's model entry that a recipe defines, as the manifest schema types them.
CONTRACT = ("input", "outputs", "decoder", "keypoints", "calibration_crop")
CONTRACT_SCHEMA = {"$defs": MANIFEST_SCHEMA["$defs"], "type": "object", "required": list(CONTRACT[:4]),
                   "properties": {key: MANIFEST_SCHEMA["$defs"]["model"]["properties"][key] for key in CONTRACT}}


class RecipeError(PosezooError):
    pass


@dataclass
class Variant:
    """One model of a family: the family's recipe with the variant's own id and original file."""

    id: str
    family: str
    variant: str
    file: FileSpec
    recipe: dict

    @property
    def thresholds(self) -> dict[str, dict[str, float]]:
        merged = copy.deepcopy(DEFAULT_THRESHOLDS)
        for precision, bounds in self.recipe.get("parity", {}).items():
            merged[precision].update(bounds)
        return merged

    @property
    def aliases(self) -> list[str]:
        return _aliases(self)

    @property
    def vendor_files(self) -> dict[tuple[str, str], FileSpec]:
        """The publisher's own converted files by (format, precision)."""
        entry = next(x for x in self.recipe["variants"] if x["id"] == self.id)
        return {(v["format"], v["precision"]): FileSpec.from_dict(v["file"]) for v in entry.get("vendor", [])}

    @property
    def alternative_originals(self) -> list[tuple[str, FileSpec]]:
        """(original_format, file) of the other published files this model can be built from."""
        entry = next(x for x in self.recipe["variants"] if x["id"] == self.id)
        return [(a["original_format"], FileSpec.from_dict(a["file"])) for a in entry.get("alternative_originals", [])]

    @property
    def pinned_files(self) -> list[FileSpec]:
        """Every publisher's file the recipe names for this model (the original, the alternative
        originals, the vendor files): what a handed-over file is recognized as."""
        return [self.file, *(spec for _, spec in self.alternative_originals), *self.vendor_files.values()]

    def for_original(self, sha256: str) -> "Variant":
        """This model as built from the original with this sha256: from one of its alternative
        originals, that file is its original and converts as its own format (MoveNet from Google's
        float16 TFLite instead of the SavedModel); from any other file, the variant unchanged."""
        for original_format, spec in self.alternative_originals:
            if spec.sha256 == sha256:
                return replace(self, file=spec, recipe={**self.recipe, "original_format": original_format})
        return self

    def family_module(self, name: str):
        """The family's own code (`recipes/<family>/<name>.py`): an architecture, a Keras loader."""
        return importlib.import_module(f"posezoo.recipes.{self.family}.{name}")

    @property
    def int8_options(self) -> dict:
        return {"method": "mse", "fallback": "float", "rounding": "nearest", "rounding_iterations": 1000,
                **self.recipe.get("int8", {})}


def load_recipe(path: Path) -> list[Variant]:
    try:
        data = yaml.safe_load(Path(path).read_text())
        jsonschema.validate(data, SCHEMA)
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML: {e}") from e
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise RecipeError(f"{path}: invalid recipe at {where}: {e.message}") from e
    variants = [Variant(v["id"], data["family"], v["variant"], FileSpec.from_dict(v["file"]), _merged(data, v))
                for v in data["variants"]]
    for v in variants:
        _check_contract(path, v)
    return variants


REPLACED = ("task", "original_format", "outputs", "calibration_crop")
MERGED = ("input", "decoder", "keypoints")


def _merged(family: dict, variant: dict) -> dict:
    """The family recipe with a variant's own `task`/`original_format`/`outputs`/`calibration_crop`
    (replaced) and `input`/`decoder`/`keypoints` (key by key; a crop inside `input` is replaced
    whole): e.g. EfficientPose's resolutions and Lite normalization, the MPII variants' 16 joints,
    MoveNet MultiPose's scenes."""
    recipe = copy.deepcopy(family)
    for key in REPLACED + MERGED:
        if key in variant:
            recipe[key] = {**recipe[key], **variant[key]} if key in MERGED else copy.deepcopy(variant[key])
    return recipe


def _check_contract(path: Path, variant: Variant) -> None:
    """The variant's runtime keys (what the manifest will carry for runtimes) against the
    manifest schema, so a recipe that would write an unusable manifest stops before any build."""
    entry = {key: variant.recipe[key] for key in CONTRACT if key in variant.recipe}
    try:
        contract.validate(entry, CONTRACT_SCHEMA)
        problems = list(model_inconsistencies(entry))
    except contract.SchemaError as e:
        problems = [("/".join(map(str, e.path)), e.message)]
    if problems:
        key, problem = problems[0]
        raise RecipeError(f"{path}: variant {variant.id}: invalid at {key}: {problem}")


def all_variants() -> list[Variant]:
    variants = []
    for path in sorted(RECIPES_DIR.glob("*/recipe.yaml")):
        variants.extend(load_recipe(path))
    return variants


def select(names: list[str]) -> list[Variant]:
    """Variants named by model id, alias or family, in the order given; unknown names are an error."""
    variants = all_variants()
    chosen: list[Variant] = []
    for name in names:
        hits = [v for v in variants if name in (v.id, v.family, *_aliases(v))]
        if not hits:
            known = sorted({v.family for v in variants} | {v.id for v in variants})
            raise RecipeError(f"unknown model or family {name!r}; known: {', '.join(known)}")
        chosen.extend(h for h in hits if h not in chosen)
    return chosen


def _aliases(v: Variant) -> list[str]:
    return next(x.get("aliases", []) for x in v.recipe["variants"] if x["id"] == v.id)
