import numpy as np
import pytest

from posezoo.converters.calibration import (CalibrationError, Person, crop_transform, find_people, load_samples,
                                    to_tensor)

ROI = {"kind": "rotated_roi", "center_keypoints": ["left_hip", "right_hip"],
       "up_keypoints": ["left_shoulder", "right_shoulder"], "expand": 1.25}
SPEC = {"name": "x", "shape": [1, 256, 256, 3], "layout": "NHWC", "dtype": "float32", "color": "RGB",
        "normalization": {"mean": [0, 0, 0], "std": [255, 255, 255]}}


def test_finds_annotated_people_in_every_format(images):
    people = find_people(images)
    by_folder = {p.image.parent.name for p in people}
    assert {"coco", "mpii", "posetrack18", "h36m"} <= by_folder
    coco = [p for p in people if p.image.parent.name == "coco"]
    assert len(coco) == 14 and all(len(p.box) == 4 for p in coco)


def test_rotated_roi_puts_shoulders_above_hips():
    # a person lying horizontally: hips at x=100, shoulders at x=200 (to the right)
    person = Person(image=None, box=(0, 0, 300, 300), keypoints={
        "left_hip": (100, 140), "right_hip": (100, 160), "left_shoulder": (200, 140), "right_shoulder": (200, 160)})
    m = crop_transform(person, ROI, 256, 256, (300, 300))
    inverse = np.linalg.inv(np.vstack([m, [0, 0, 1]]))
    hip = inverse @ [100, 150, 1]
    shoulder = inverse @ [200, 150, 1]
    assert hip[:2] == pytest.approx([128, 128], abs=1e-6)  # hip centre is the crop centre
    assert shoulder[1] < hip[1] and shoulder[0] == pytest.approx(128, abs=1e-6)  # straight up
    radius = np.hypot(100, 10)  # farthest keypoint from the hip centre
    assert np.linalg.norm(m[:, 0]) * 256 == pytest.approx(2 * radius * 1.25)
    assert np.linalg.det(m[:, :2]) > 0  # a rotation, never a mirror image


def test_rotated_roi_of_an_upright_person_is_not_mirrored():
    person = Person(image=None, box=(0, 0, 300, 300), keypoints={
        "left_hip": (160, 200), "right_hip": (140, 200), "left_shoulder": (165, 100), "right_shoulder": (135, 100)})
    m = crop_transform(person, ROI, 256, 256, (300, 300))
    assert m[0, 0] > 0 and abs(m[0, 1]) < 1e-9 and m[1, 1] > 0  # input x runs along image x, y along y


def test_box_crop_keeps_aspect_and_pads():
    person = Person(image=None, box=(10, 20, 100, 300))
    m = crop_transform(person, {"kind": "box", "padding": 1.25}, 192, 256, (640, 480))
    assert m[0, 0] == pytest.approx(m[1, 1])  # square pixels: aspect kept
    assert m[1, 1] * 256 == pytest.approx(300 * 1.25)
    assert (m @ [96, 128, 1]) == pytest.approx([60, 170])


def test_roi_needs_hips_and_shoulders():
    assert crop_transform(Person(None, (0, 0, 1, 1), {"nose": (1, 1)}), ROI, 256, 256, (10, 10)) is None
    same = {n: (5, 5) for n in ROI["center_keypoints"] + ROI["up_keypoints"]}
    assert crop_transform(Person(None, (0, 0, 1, 1), same), ROI, 256, 256, (10, 10)) is None  # no direction


def test_an_unknown_crop_kind_is_an_error():
    with pytest.raises(CalibrationError, match="unknown crop kind 'circle'"):
        crop_transform(Person(None, (0, 0, 1, 1)), {"kind": "circle"}, 256, 256, (10, 10))


def test_crops_are_the_loaders_and_pils_pixel_for_pixel(images):
    """The build cuts with the runtime loader's functions; on real photos they are PIL's bilinear
    affine transform (the build's former warp) to the pixel."""
    from PIL import Image

    from posezoo import loader

    spec = {**SPEC, "dtype": "uint8"}
    for s in load_samples(images / "coco", spec, {"kind": "box", "padding": 1.25}):
        photo = Image.open(s.person.image).convert("RGB")
        expected = photo.transform((256, 256), Image.AFFINE, tuple(s.matrix.ravel()), resample=Image.BILINEAR,
                                   fillcolor=(0, 0, 0))
        np.testing.assert_array_equal(s.tensor[0], np.asarray(expected))
        matrix = loader.crop_matrix({"kind": "box", "padding": 1.25}, 256, 256, photo.size, box=s.person.box)
        np.testing.assert_array_equal(s.matrix, matrix)


def test_samples_are_real_crops_normalized_as_the_spec_says(images):
    samples = load_samples(images, SPEC, ROI)
    assert len(samples) >= 20
    x = samples[0].tensor
    assert x.shape == (1, 256, 256, 3) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert x.std() > 0.05  # real image content, not a flat fill


def test_to_tensor_layout_color_and_integer_inputs():
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 200
    nchw = to_tensor(rgb, {"layout": "NCHW", "dtype": "float32", "color": "BGR",
                           "normalization": {"mean": [100, 0, 0], "std": [2, 1, 1]}})
    assert nchw.shape == (1, 3, 4, 6) and nchw[0, 2, 0, 0] == 200 and nchw[0, 0, 0, 0] == -50
    assert to_tensor(rgb, {"dtype": "uint8"}).dtype == np.uint8


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CalibrationError, match="--calibration-images"):
        find_people(tmp_path / "none")
    with pytest.raises(CalibrationError, match="no images of people"):
        find_people(tmp_path)


BOX = {"kind": "box", "padding": 1.25}
SMALL = {**SPEC, "shape": [1, 64, 48, 3]}


def test_calibration_and_gate_people_come_from_different_photos(images):
    from posezoo.converters.calibration import SPLITS

    samples = load_samples(images, SMALL, BOX)
    photos = {split: {s.person.image for s in samples if s.split == split} for split in SPLITS}
    assert photos["calibration"] and photos["gate"] and not photos["calibration"] & photos["gate"]
    assert all(s.split in SPLITS for s in samples)


def test_a_photos_split_depends_on_its_content_alone(images, tmp_path):
    """Renamed, moved or joined by other photos, a photo stays in its set; the shared photos'
    split is pinned so a change of rule cannot pass unnoticed."""
    import shutil

    from posezoo.converters.calibration import split_of

    photo = images / "coco" / "000000196141.jpg"
    copy = tmp_path / "deep" / "renamed.jpg"
    copy.parent.mkdir()
    shutil.copy(photo, copy)
    assert split_of(photo) == split_of(copy) == "calibration"
    assert split_of(images / "coco" / "000000000785.jpg") == "gate"
    splits = [split_of(p) for p in sorted(images.rglob("*.jpg"))]
    assert splits.count("calibration") == 7 and splits.count("gate") == 10


def test_the_limit_is_per_split_and_the_record_names_who(images):
    from posezoo.converters.calibration import set_record

    samples = load_samples(images, SMALL, BOX, limit=3)
    assert [s.split for s in samples].count("calibration") == 3 and [s.split for s in samples].count("gate") == 3
    gate = [s for s in samples if s.split == "gate"]
    record = set_record(gate)
    assert record["people"] == 3 and record["photos"] == len({s.person.image for s in gate})
    assert record == set_record(list(reversed(gate)))  # order does not matter, who does
    assert record["sha256"] != set_record(gate[:2])["sha256"]


def test_samples_keep_the_crop_they_were_made_from(images):
    (sample, *_) = load_samples(images / "coco", SMALL, BOX, limit=1)
    assert sample.rgb.shape == (64, 48, 3) and sample.rgb.dtype == np.uint8
    np.testing.assert_array_equal(to_tensor(sample.rgb, SMALL), sample.tensor)
