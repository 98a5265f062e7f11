"""The robustness set: the gate people as other cameras and light would show them.

An INT8 file calibrated on well-lit photos can hold on them and fail on a dark room; these
transforms of the gate crops (never of the calibration crops) stand in for what users meet:
low light (gamma 2.5 with 0.25 gain, as a phone's dim indoor frame), over-exposure, low
contrast (haze, a cheap lens), sensor noise, defocus blur and strong JPEG compression. Each is
deterministic (the noise is seeded by the sample's index), so two builds judge the same pixels.
"""
from __future__ import annotations

import io
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter


def _levels(rgb: np.ndarray, gain: float, gamma: float) -> np.ndarray:
    return np.clip(255.0 * gain * (rgb / 255.0) ** gamma, 0, 255)


def _dark(rgb, index):
    return _levels(rgb, 0.25, 2.5)


def _bright(rgb, index):
    return _levels(rgb, 1.3, 0.5)


def _low_contrast(rgb, index):
    return 128.0 + 0.35 * (rgb.astype(np.float64) - 128.0)


def _noise(rgb, index):
    """Shot noise (grows with the signal) plus read noise, as a small sensor in dim light."""
    rng = np.random.default_rng(index)
    x = rgb.astype(np.float64)
    return x + rng.normal(0.0, 1.0, x.shape) * np.sqrt(8.0 ** 2 + 0.5 * x)


def _blur(rgb, index):
    radius = max(1.0, max(rgb.shape[:2]) / 128.0)  # 2 px at 256: a slightly missed focus
    return np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(radius)))


def _jpeg(rgb, index):
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=10)
    with Image.open(buffer) as im:
        return np.asarray(im.convert("RGB"))


TRANSFORMS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "dark": _dark, "bright": _bright, "low_contrast": _low_contrast, "noise": _noise, "blur": _blur, "jpeg": _jpeg}


def perturb(rgb: np.ndarray, transform: str, index: int) -> np.ndarray:
    """`rgb` (HxWx3 uint8) under `transform`; `index` seeds what is random (the noise)."""
    return np.rint(np.clip(TRANSFORMS[transform](rgb, index), 0, 255)).astype(np.uint8)
