"""The robustness set's transforms (converters/robustness.py): deterministic, and each what it says."""
import numpy as np
import pytest

from posezoo.converters.robustness import TRANSFORMS, perturb


@pytest.fixture(scope="module")
def crop(images):
    from PIL import Image

    with Image.open(images / "coco" / "000000196141.jpg") as im:
        return np.asarray(im.convert("RGB").resize((96, 128)))


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_each_transform_is_deterministic_and_keeps_the_crop_shape(crop, name):
    once = perturb(crop, name, 3)
    assert once.dtype == np.uint8 and once.shape == crop.shape
    np.testing.assert_array_equal(once, perturb(crop, name, 3))
    assert not np.array_equal(once, crop)


def test_the_noise_differs_between_people_but_not_between_runs(crop):
    assert not np.array_equal(perturb(crop, "noise", 0), perturb(crop, "noise", 1))


def test_each_transform_does_what_its_name_says(crop):
    x = crop.astype(float)
    assert perturb(crop, "dark", 0).mean() < 0.2 * x.mean()
    assert perturb(crop, "bright", 0).mean() > 1.2 * x.mean()
    assert perturb(crop, "low_contrast", 0).std() < 0.4 * x.std()
    high_frequency = lambda im: np.abs(np.diff(im.astype(float), axis=1)).mean()  # noqa: E731
    assert high_frequency(perturb(crop, "blur", 0)) < 0.7 * high_frequency(crop)
    assert high_frequency(perturb(crop, "noise", 0)) > 1.2 * high_frequency(crop)
    assert np.abs(perturb(crop, "jpeg", 0).astype(float) - x).mean() > 1.0
