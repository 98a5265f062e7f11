"""converters/annotations.py: the one reader of COCO-format and MPII annotation files, for
calibration (visible keypoints, boxes), eval (every keypoint, visibility, ids, head sizes) and the
web page's samples."""
import json

import numpy as np
import pytest
from PIL import Image

from posezoo.converters.annotations import MPII_JOINTS, read


def _coco(tmp_path, annotations, names=("nose", "left_eye")):
    Image.new("RGB", (40, 30)).save(tmp_path / "a.jpg")
    path = tmp_path / "people.json"
    path.write_text(json.dumps({"images": [{"id": 7, "file_name": "a.jpg"}],
                                "categories": [{"id": 1, "name": "person", "keypoints": list(names)}],
                                "annotations": annotations}))
    return path


def test_coco_keeps_the_files_coordinates_and_marks_who_is_scored(tmp_path):
    path = _coco(tmp_path, [
        {"id": 11, "image_id": 7, "category_id": 1, "num_keypoints": 1, "bbox": [1, 2, 10, 20],
         "keypoints": [5, 6, 2, 0, 0, 0]},
        {"id": 12, "image_id": 7, "category_id": 1, "num_keypoints": 2, "iscrowd": 1, "bbox": [0, 0, 5, 5],
         "keypoints": [1, 1, 1, 2, 2, 1]},
        {"id": 13, "image_id": 7, "category_id": 1, "keypoints": [3, 4, 1, 9, 12, 1]},  # no box: its keypoints'
        {"id": 14, "image_id": 7, "category_id": 1, "keypoints": [0, 0, 0, 0, 0, 0]},  # nowhere: left out
    ])
    found = read(path)
    assert found.kind == "coco" and found.names == ["nose", "left_eye"] and found.to_loader == 0.5
    a, crowd, boxless = found.people
    assert (a.key, a.image, a.box, a.keypoints) == (11, tmp_path / "a.jpg", (1, 2, 10, 20), {"nose": (5.0, 6.0)})
    np.testing.assert_array_equal(a.points, [[5, 6, 1], [0, 0, 0]])
    assert a.scored and not crowd.scored and not boxless.scored  # crowd; no num_keypoints
    assert boxless.box == (3.0, 4.0, 6.0, 8.0)


def test_mpii_is_one_based_with_head_sizes_and_a_square_box(tmp_path):
    Image.new("RGB", (100, 120)).save(tmp_path / "b.jpg")
    joints = [[float(10 + k), float(20 + k)] for k in range(16)]
    path = tmp_path / "mpii.json"
    path.write_text(json.dumps([{"image": "b.jpg", "center": [50.0, 60.0], "scale": 0.4, "joints": joints,
                                 "joints_vis": [1] * 15 + [0]},
                                {"image": "b.jpg", "center": [50.0, 60.0], "scale": 0.4, "joints": joints,
                                 "joints_vis": [1] * 16, "headbox": [0, 0, 30, 40]}]))
    found = read(path)
    assert found.kind == "mpii" and found.names == MPII_JOINTS and found.to_loader == -0.5 and not found.notes
    first, second = found.people
    assert first.box == (10.0, 20.0, 80.0, 80.0) and first.key == 0 and second.key == 1
    assert "left_wrist" not in first.keypoints and first.keypoints["right_ankle"] == (10.0, 20.0)
    assert first.head_size == pytest.approx(np.hypot(1, 1))  # head_top - upper_neck
    assert second.head_size == pytest.approx(0.6 * 50)  # 0.6 x the head box diagonal


def test_photos_are_looked_up_by_name_then_by_its_last_part(tmp_path):
    path = _coco(tmp_path, [{"id": 1, "image_id": 7, "bbox": [0, 0, 4, 4]}])
    data = json.loads(path.read_text())
    data["images"][0]["file_name"] = "train2017/a.jpg"
    path.write_text(json.dumps(data))
    assert read(path).people[0].image == tmp_path / "a.jpg"
    assert read(path, tmp_path / "elsewhere").people[0].image == tmp_path / "elsewhere" / "train2017" / "a.jpg"


def test_other_json_is_no_annotation_file(tmp_path):
    for i, data in enumerate([{"foo": 1}, [], [1, 2], {"images": [], "annotations": [], "categories": [{"id": 1}]}]):
        (tmp_path / f"{i}.json").write_text(json.dumps(data))
        assert read(tmp_path / f"{i}.json") is None
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(json.JSONDecodeError):
        read(tmp_path / "bad.json")


def test_the_shared_files_read_for_every_user(images):
    coco = read(images / "coco" / "test_coco.json")
    assert len(coco.people) == 14 and sum(p.scored for p in coco.people) == 12
    assert all(p.points.shape == (17, 3) and p.image.is_file() for p in coco.people)
    mpii = read(images / "mpii" / "test_mpii.json")
    assert len(mpii.people) == 5 and all(p.head_size for p in mpii.people)
