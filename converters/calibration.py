"""Real images of people, cut and preprocessed exactly as a model's input spec says.

Used for INT8 calibration and for parity. Annotation files in the image folder decide where the
people are: COCO-format JSON (any keypoint naming, matched by keypoint name) and mmpose's MPII
JSON list. A folder without annotations counts every image as one person filling the frame.

Every crop is an affine warp (a 2x3 matrix from input pixels to image pixels), so keypoints
decoded in input pixels map back to the image with the same matrix.
"""
from __future__ import annotations

import json
import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
MPII_JOINTS = ["right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis",
               "thorax", "upper_neck", "head_top", "right_wrist", "right_elbow", "right_shoulder",
               "left_shoulder", "left_elbow", "left_wrist"]


class CalibrationError(ValueError):
    pass


@dataclass
class Person:
    image: Path
    box: tuple[float, float, float, float]  # x, y, w, h in image pixels
    keypoints: dict[str, tuple[float, float]] = field(default_factory=dict)  # visible ones only


def _coco_people(path: Path) -> list[Person]:
    data = json.loads(path.read_text())
    names = next(c["keypoints"] for c in data["categories"] if c.get("name") == "person")
    files = {im["id"]: im["file_name"] for im in data["images"]}
    people = []
    for a in data["annotations"]:
        kp = np.asarray(a.get("keypoints", []), dtype=float).reshape(-1, 3)
        visible = {n: (float(x), float(y)) for n, (x, y, v) in zip(names, kp) if v > 0}
        if "bbox" in a:
            box = tuple(a["bbox"])
        elif visible:
            pts = np.array(list(visible.values()))
            box = (*pts.min(0), *(pts.max(0) - pts.min(0)))
        else:
            continue
        people.append(Person(path.parent / files[a["image_id"]], box, visible))
    return people


def _mpii_people(path: Path) -> list[Person]:
    people = []
    for a in json.loads(path.read_text()):
        visible = {n: (float(x), float(y)) for n, (x, y), v in zip(MPII_JOINTS, a["joints"], a["joints_vis"]) if v}
        people.append(Person(path.parent / a["image"], mpii_box(a["center"], a["scale"]), visible))
    return people


def mpii_box(center, scale: float) -> tuple[float, float, float, float]:
    """The square person box (x, y, w, h) of an MPII annotation: `scale` is the person's height / 200 px."""
    half = scale * 100.0
    return (center[0] - half, center[1] - half, 2 * half, 2 * half)


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
            data = json.loads(js.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CalibrationError(f"annotation file {js} is not valid JSON: {e}") from e
        if isinstance(data, dict) and "annotations" in data and "categories" in data:
            found = _coco_people(js)
        elif isinstance(data, list) and data and "joints" in data[0] and "center" in data[0]:
            found = _mpii_people(js)
        else:
            continue
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


def _affine(center, x_axis, y_axis, width: int, height: int) -> np.ndarray:
    """2x3 matrix mapping input pixel (x, y) to image pixel; axes are image vectors per input pixel."""
    cx, cy = center
    ax, ay = np.asarray(x_axis, float), np.asarray(y_axis, float)
    origin = np.array([cx, cy]) - ax * width / 2 - ay * height / 2
    return np.array([[ax[0], ay[0], origin[0]], [ax[1], ay[1], origin[1]]])


def crop_transform(person: Person, crop: dict, width: int, height: int,
                   image_size: tuple[int, int]) -> np.ndarray | None:
    """The input->image affine matrix for one person, or None when the crop cannot be made."""
    kind = crop["kind"]
    if kind == "rotated_roi":
        kp = person.keypoints
        need = crop["center_keypoints"] + crop["up_keypoints"]
        if not all(n in kp for n in need):
            return None
        center = np.mean([kp[n] for n in crop["center_keypoints"]], axis=0)
        up = np.mean([kp[n] for n in crop["up_keypoints"]], axis=0) - center
        if np.linalg.norm(up) < 1e-6:
            return None
        radius = max(np.linalg.norm(np.asarray(p) - center) for p in kp.values())
        side = 2.0 * radius * crop.get("expand", 1.25)
        down = -up / np.linalg.norm(up)
        right = np.array([down[1], -down[0]])  # the person's left-to-right, unmirrored (det > 0)
        return _affine(center, right * side / width, down * side / height, width, height)
    if kind == "box":
        x, y, w, h = person.box
        pad = crop.get("padding", 1.25)
        aspect = width / height
        w, h = (w, w / aspect) if w / max(h, 1e-6) > aspect else (h * aspect, h)
        s = pad * w / width
        return _affine((x + person.box[2] / 2, y + person.box[3] / 2), (s, 0), (0, s), width, height)
    if kind == "whole_image":
        w, h = image_size
        x = y = 0.0
        if crop.get("resize", "letterbox") == "stretch":
            return _affine((x + w / 2, y + h / 2), (w / width, 0), (0, h / height), width, height)
        s = max(w / width, h / height)
        return _affine((x + w / 2, y + h / 2), (s, 0), (0, s), width, height)
    raise CalibrationError(f"unknown crop kind {kind!r} (known: rotated_roi, box, whole_image)")


def warp(image: Image.Image, matrix: np.ndarray, width: int, height: int) -> np.ndarray:
    """Sample the image at the input grid (bilinear, black padding); returns HxWx3 uint8 RGB."""
    # Both PIL and our matrices use continuous coordinates with pixel centres at +0.5.
    m = matrix
    coeffs = (m[0, 0], m[0, 1], m[0, 2], m[1, 0], m[1, 1], m[1, 2])
    out = image.convert("RGB").transform((width, height), Image.AFFINE, coeffs, resample=Image.BILINEAR,
                                         fillcolor=(0, 0, 0))
    return np.asarray(out, dtype=np.uint8)


def to_tensor(rgb: np.ndarray, spec: dict) -> np.ndarray:
    """HxWx3 uint8 RGB -> the model's input tensor (batch 1) per the input spec."""
    x = rgb[..., ::-1] if spec.get("color", "RGB") == "BGR" else rgb
    dtype = spec["dtype"]
    if dtype == "float32":
        norm = spec.get("normalization", {"mean": [0, 0, 0], "std": [1, 1, 1]})
        x = (x.astype(np.float32) - np.asarray(norm["mean"], np.float32)) / np.asarray(norm["std"], np.float32)
    else:
        x = x.astype(dtype)
    if spec.get("layout", "NHWC") == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x[None])


@dataclass
class Sample:
    person: Person
    matrix: np.ndarray  # input pixels -> image pixels
    tensor: np.ndarray


def parity_crop(model: dict) -> dict:
    """How calibration and parity inputs are cut for `model` (a recipe or a manifest entry): its
    `calibration_crop` where it has one (single-person models: a frame per annotated person),
    else the runtime's own `input.crop`."""
    return model.get("calibration_crop", model["input"]["crop"])


def input_hw(spec: dict) -> tuple[int, int]:
    shape = spec["shape"]
    return (shape[1], shape[2]) if spec.get("layout", "NHWC") == "NHWC" else (shape[2], shape[3])


def load_samples(folder: Path, spec: dict, crop: dict, limit: int | None = None) -> list[Sample]:
    """Person crops of `folder` preprocessed for a model with input `spec` and crop rule `crop`."""
    height, width = input_hw(spec)
    samples = []
    images: dict[Path, Image.Image] = {}
    for person in find_people(folder):
        if crop["kind"] == "whole_image" and person.image in images:
            continue  # one sample per frame for whole-frame models
        if person.image not in images:
            with _reading(person.image), Image.open(person.image) as im:
                images[person.image] = im.convert("RGB")
        matrix = crop_transform(person, crop, width, height, images[person.image].size)
        if matrix is None:
            continue
        rgb = warp(images[person.image], matrix, width, height)
        samples.append(Sample(person, matrix, to_tensor(rgb, spec)))
        if limit and len(samples) >= limit:
            break
    if not samples:
        raise CalibrationError(f"no usable person crops in {folder} for crop rule {crop}: the annotations "
                               "lack the keypoints it needs.")
    return samples
