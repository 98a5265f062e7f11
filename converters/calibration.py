"""Real images of people, cut and preprocessed exactly as a model's input spec says.

Used for INT8 calibration and for parity. Annotation files in the image folder decide where the
people are: COCO-format JSON (any keypoint naming, matched by keypoint name) and mmpose's MPII
JSON list. A folder without annotations counts every image as one person filling the frame.

Every crop is an affine warp (a 2x3 matrix from input pixels to image pixels), so keypoints
decoded in input pixels map back to the image with the same matrix. The crop rules, the warp and
the preprocessing are the runtime loader's (zoo/loader.py), so parity feeds what a runtime feeds;
the annotation files are read by converters/annotations.py.
"""
from __future__ import annotations

import hashlib
import json
import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from posezoo.errors import PosezooError
from posezoo.loader import CROP_KINDS, LoaderError, crop_matrix, input_hw, warp  # noqa: F401 (input_hw, warp: for callers)
from posezoo.loader import to_tensor as loader_tensor

from .annotations import Person
from .annotations import read as read_annotations

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


class CalibrationError(PosezooError):
    pass


def find_people(folder: Path) -> list[Person]:
    """All annotated people under `folder` (recursively), in a stable order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"image folder {folder} does not exist; pass --calibration-images DIR "
                               "with real photos of people (and optionally COCO-format annotations).")
    people: list[Person] = []
    annotated = set()
    for js in sorted(folder.rglob("*.json")):
        try:
            annotations = read_annotations(js)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CalibrationError(f"annotation file {js} is not valid JSON: {e}") from e
        if annotations is None:
            continue
        found = annotations.people
        missing = sorted({str(p.image) for p in found if not p.image.is_file()})
        if missing:
            raise CalibrationError(f"annotation file {js} annotates people in {len(missing)} missing photo(s): "
                                   f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; put the photos "
                                   "there or remove their annotations.")
        people.extend(_usable(found, js))
        annotated |= {p.image for p in found}
    for img in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        if img not in annotated and not any(img.parent == a.parent for a in annotated):
            with _reading(img), Image.open(img) as im:
                people.append(Person(img, (0.0, 0.0, float(im.width), float(im.height))))
    if not people:
        raise CalibrationError(f"no images of people found in {folder} (looked for {sorted(IMAGE_SUFFIXES)}).")
    return people


def _usable(found: list[Person], annotations: Path) -> list[Person]:
    """The people of an annotation file whose box has a positive width and height.

    Zero-size boxes occur in public datasets (COCO has some), so they are skipped with a
    warning that counts them; a NaN or infinite coordinate means the file is broken: an error."""
    usable = []
    for i, p in enumerate(found):
        values = [*p.box, *(v for xy in p.keypoints.values() for v in xy)]
        if not all(math.isfinite(v) for v in values):
            raise CalibrationError(f"annotation file {annotations}: person #{i} (in {p.image.name}) has a "
                                   f"non-finite box or keypoint (box {list(p.box)}); fix or remove that annotation.")
        if p.box[2] > 0 and p.box[3] > 0:
            usable.append(p)
    if len(usable) < len(found):
        warnings.warn(f"annotation file {annotations}: skipped {len(found) - len(usable)} of {len(found)} people "
                      "whose box has no positive width and height; fix their boxes to use them.", stacklevel=3)
    return usable


@contextmanager
def _reading(photo: Path):
    """Turn PIL's error on a corrupt, truncated or unreadable photo into a CalibrationError naming it."""
    try:
        yield
    except (OSError, Image.DecompressionBombError) as e:
        raise CalibrationError(f"photo {photo} cannot be read ({e}); replace it or remove it from the folder.") from e


def crop_transform(person: Person, crop: dict, width: int, height: int,
                   image_size: tuple[int, int]) -> np.ndarray | None:
    """The input->image affine matrix of the loader's crop rule for one person (its box, its
    visible keypoints), or None when that person's crop cannot be made (a rotated ROI without
    its centre and up keypoints, or with them in one place): that person is skipped."""
    if crop["kind"] not in CROP_KINDS:
        raise CalibrationError(f"unknown crop kind {crop['kind']!r} (known: {', '.join(CROP_KINDS)})")
    try:
        return crop_matrix(crop, width, height, image_size, box=person.box, keypoints=person.keypoints)
    except LoaderError:
        return None


def to_tensor(rgb: np.ndarray, spec: dict) -> np.ndarray:
    """HxWx3 uint8 RGB -> the model's input tensor (batch 1), as the input spec says: the
    loader's preprocessing, for the model itself (its own dtype and layout, no quantization)."""
    return loader_tensor(rgb, spec, {"dtype": spec["dtype"]}, spec.get("layout", "NHWC"))


SPLITS = ("calibration", "gate")


def split_of(photo: Path) -> str:
    """Which set a photo's people belong to: `calibration` (what INT8 calibration and its
    mixed-precision search may look at) or `gate` (what alone judges an INT8 file). Decided by the
    photo's content (the first byte of its sha256: even -> calibration), so no photo is in both
    sets, the split does not depend on paths or on other photos, and a photo added later moves
    nobody else."""
    return SPLITS[hashlib.sha256(Path(photo).read_bytes()).digest()[0] % 2]


@dataclass
class Sample:
    person: Person
    matrix: np.ndarray  # input pixels -> image pixels
    tensor: np.ndarray
    rgb: np.ndarray  # the crop itself, HxWx3 uint8 (what `tensor` was made from)
    split: str  # calibration or gate (split_of its photo)


def set_record(samples: list[Sample]) -> dict:
    """A set of people as the manifest records it: counts and a digest of who they are (each
    photo's content hash with the person's box), so two builds can tell they used the same people."""
    lines = sorted(f"{_photo_sha256(s.person.image)} {' '.join(f'{v:.2f}' for v in s.person.box)}" for s in samples)
    return {"people": len(samples), "photos": len({s.person.image for s in samples}),
            "sha256": hashlib.sha256("\n".join(lines).encode()).hexdigest()}


def _photo_sha256(photo: Path) -> str:
    return hashlib.sha256(Path(photo).read_bytes()).hexdigest()


def parity_crop(model: dict) -> dict:
    """How calibration and parity inputs are cut for `model` (a recipe or a manifest entry): its
    `calibration_crop` where it has one (single-person models: a frame per annotated person),
    else the runtime's own `input.crop`."""
    return model.get("calibration_crop", model["input"]["crop"])


def load_samples(folder: Path, spec: dict, crop: dict, limit: int | None = None) -> list[Sample]:
    """Person crops of `folder` preprocessed for a model with input `spec` and crop rule `crop`,
    each marked with its split (`split_of`); `limit`: at most that many people of each split."""
    height, width = input_hw(spec)
    samples = []
    images: dict[Path, np.ndarray] = {}
    splits: dict[Path, str] = {}
    taken = {split: 0 for split in SPLITS}
    for person in find_people(folder):
        if crop["kind"] == "whole_image" and person.image in images:
            continue  # one sample per frame for whole-frame models
        if person.image not in splits:
            with _reading(person.image):
                splits[person.image] = split_of(person.image)
        split = splits[person.image]
        if limit and taken[split] >= limit:
            if all(n >= limit for n in taken.values()):
                break
            continue
        if person.image not in images:
            with _reading(person.image), Image.open(person.image) as im:
                images[person.image] = np.asarray(im.convert("RGB"))
        photo = images[person.image]
        matrix = crop_transform(person, crop, width, height, (photo.shape[1], photo.shape[0]))
        if matrix is None:
            continue
        rgb = warp(photo, matrix, width, height)
        samples.append(Sample(person, matrix, to_tensor(rgb, spec), rgb, split))
        taken[split] += 1
    if not samples:
        raise CalibrationError(f"no usable person crops in {folder} for crop rule {crop}: the annotations "
                               "lack the keypoints it needs.")
    return samples
