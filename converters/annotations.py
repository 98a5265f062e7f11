"""Annotated people: the one reader of COCO-format keypoint JSON and mmpose's MPII JSON list.

Calibration and parity cut their crops around these people (`calibration.find_people`), `posezoo
eval` scores against them (`scripts/evaluate.py`), `posezoo serve` offers them on the page
(`scripts/webserver.py`, through `find_people`). Coordinates stay as the file gives them: COCO's
are pixel indices (pixel centres at 0), mmpose's MPII file is 1-based (MATLAB); `to_loader` is what
to add to reach the loader's continuous coordinates (pixel centres at +0.5).

The reader raises nothing of its own: an unreadable or malformed JSON file raises as `json` does,
a file of another kind reads as None, photos are not opened; each caller turns these into its
own errors (calibration's, eval's) and checks that the photos exist.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MPII_JOINTS = ["right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis",
               "thorax", "upper_neck", "head_top", "right_wrist", "right_elbow", "right_shoulder",
               "left_shoulder", "left_elbow", "left_wrist"]


@dataclass
class Person:
    image: Path
    box: tuple[float, float, float, float]  # x, y, w, h in image pixels
    keypoints: dict[str, tuple[float, float]] = field(default_factory=dict)  # visible ones only, file coordinates
    key: int | None = None  # COCO annotation id, or the index in an MPII list
    points: np.ndarray | None = None  # K x 3, every keypoint of the file's `names`: x, y (file coordinates), visible 0/1
    head_size: float | None = None  # MPII: 0.6 x the head box diagonal, else the head_top-upper_neck distance
    scored: bool = True  # accuracy counts this person (COCO: no crowd, has keypoints, of the keypoint category)


@dataclass
class AnnotationFile:
    kind: str  # "coco" or "mpii"
    path: Path
    names: list[str]  # the keypoints of `Person.points`, in order
    people: list[Person]  # every annotated person with a box, in the file's order
    to_loader: float  # add to a file coordinate to get the loader's
    data: dict | list  # the file as read (COCO: for pycocotools)
    notes: list[str] = field(default_factory=list)


def read(path: Path, images: Path | None = None) -> AnnotationFile | None:
    """The people of annotation file `path`, or None when it is JSON of another kind. Photos are
    looked up in `images` (default: the file's folder) by the name the file gives, else by that
    name's last part; `Person.image` is where the photo is or would be (callers check it exists)."""
    path = Path(path)
    images = path.parent if images is None else Path(images)
    data = json.loads(path.read_text())
    if isinstance(data, dict) and {"annotations", "images", "categories"} <= data.keys():
        return _coco(path, data, images)
    if isinstance(data, list) and data and isinstance(data[0], dict) and {"joints", "center", "scale"} <= data[0].keys():
        return _mpii(path, data, images)
    return None


def _photo(images: Path, name: str) -> Path:
    for candidate in (images / name, images / Path(name).name):
        if candidate.is_file():
            return candidate
    return images / name


def _coco(path: Path, data: dict, images: Path) -> AnnotationFile | None:
    category = next((c for c in data["categories"] if c.get("keypoints")), None)
    if category is None:
        return None  # no keypoints: not a file of people's poses
    names = list(category["keypoints"])
    files = {im["id"]: im["file_name"] for im in data["images"]}
    people = []
    for i, a in enumerate(data["annotations"]):
        points = np.zeros((len(names), 3))
        kp = np.asarray(a.get("keypoints", []), dtype=float).reshape(-1, 3)[:len(names)]
        points[:len(kp)] = np.c_[kp[:, :2], kp[:, 2] > 0]
        visible = {n: (float(x), float(y)) for n, (x, y, v) in zip(names, kp) if v > 0}
        if "bbox" in a:
            box = tuple(a["bbox"])
        elif visible:
            xy = np.array(list(visible.values()))
            box = (*xy.min(0), *(xy.max(0) - xy.min(0)))
        else:
            continue  # nothing says where this person is
        scored = not a.get("iscrowd", 0) and a.get("num_keypoints", 0) != 0 and a.get("category_id") == category["id"]
        people.append(Person(_photo(images, files[a["image_id"]]), box, visible, a.get("id", i), points,
                             scored=bool(scored)))
    return AnnotationFile("coco", path, names, people, 0.5, data)


def _mpii(path: Path, data: list, images: Path) -> AnnotationFile:
    people = []
    for i, a in enumerate(data):
        visible = {n: (float(x), float(y)) for n, (x, y), v in zip(MPII_JOINTS, a["joints"], a["joints_vis"]) if v}
        points = np.c_[np.asarray(a["joints"], float), np.asarray(a["joints_vis"], float) > 0]
        people.append(Person(_photo(images, a["image"]), mpii_box(a["center"], a["scale"]), visible, i, points,
                             _head_size(a, points)))
    notes = [] if any("headbox" in a for a in data) else [
        "head size = head_top-upper_neck distance (the file has no head boxes)"]
    return AnnotationFile("mpii", path, list(MPII_JOINTS), people, -0.5, data, notes)


def _head_size(annotation: dict, points: np.ndarray) -> float | None:
    """PCKh's unit: 0.6 x the head box diagonal, else the head_top-upper_neck distance (both visible)."""
    if "headbox" in annotation:
        x1, y1, x2, y2 = annotation["headbox"]
        return 0.6 * float(np.hypot(x2 - x1, y2 - y1))
    top, neck = MPII_JOINTS.index("head_top"), MPII_JOINTS.index("upper_neck")
    if points[top, 2] and points[neck, 2]:
        return float(np.linalg.norm(points[top, :2] - points[neck, :2]))
    return None


def mpii_box(center, scale: float) -> tuple[float, float, float, float]:
    """The square person box (x, y, w, h) of an MPII annotation: `scale` is the person's height / 200 px."""
    half = scale * 100.0
    return (center[0] - half, center[1] - half, 2 * half, 2 * half)
