"""Shared fixtures. Real images and genuine checkpoints come from the read-only shared folder
(POSEZOO_SHARED, default ../shared next to the repository)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("POSEZOO_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared() -> Path:
    assert (SHARED / "images").is_dir(), f"shared data folder missing: {SHARED} (set POSEZOO_SHARED)"
    return SHARED


@pytest.fixture(scope="session")
def images(shared) -> Path:
    return shared / "images"


TINY_INPUT = {"name": "image", "shape": [1, 32, 32, 3], "layout": "NHWC", "dtype": "float32", "color": "RGB",
              "normalization": {"mean": [0.0, 0.0, 0.0], "std": [255.0, 255.0, 255.0]},
              "crop": {"kind": "box", "padding": 1.25}}
TINY_DECODER = {"type": "regression", "output": "Identity", "num_keypoints": 5, "values_per_keypoint": 2,
                "x_index": 0, "y_index": 1}


# A minimal manifest entry that validates against zoo/manifest.schema.json (tests that need
# a well-formed manifest around what they check).
def manifest_model(mid="m-1", artifacts=()):
    return {"id": mid, "family": "f", "variant": "v", "task": "keypoints-topdown", "title": "t", "license": "MIT",
            "paper": {"title": "p", "url": "u"}, "keypoints": {"names": ["a", "b"], "skeleton": [[0, 1]]},
            "source": {"file": "x.tflite", "sha256": "0" * 64, "bytes": 1, "origin": "mirror", "urls": []},
            "input": {"name": "x", "shape": [1, 8, 8, 3], "layout": "NHWC", "dtype": "float32", "color": "RGB",
                      "crop": {"kind": "box"}},
            "outputs": [{"name": "y", "shape": [1, 4], "meaning": "kp"}],
            "decoder": {"type": "regression", "output": "y", "num_keypoints": 2, "values_per_keypoint": 2,
                        "x_index": 0, "y_index": 1},
            "complexity": {"params": 1, "flops": 1}, "artifacts": list(artifacts), "rejected": []}


def manifest_artifact(fmt, precision, sha="1", path=None, size=1):
    parity = {"samples": 1, "rel_err": 0, "cos": 1, "snr_db": "inf", "pck@0.01": 1, "pck@0.02": 1, "pck@0.05": 1,
              "worst_keypoint_err": 0, "outputs": {}, "thresholds": {}, "passed": True, "failures": []}
    return {"format": fmt, "precision": precision, "path": path or f"m-1/m-1_{precision}.{fmt}",
            "sha256": sha * 64 if len(sha) == 1 else sha, "bytes": size, "origin": "converted", "input_layout": "NHWC", "io": {"inputs": [], "outputs": []}, "parity": parity,
            "verified_with": {}}


@pytest.fixture
def web(tmp_path, monkeypatch):
    """A stand-in for zoo/web with the files the site copies and its runtimes 'installed' (no npm needed)."""
    from posezoo.scripts import site

    page = tmp_path / "web"
    for name in site.PAGE_FILES:
        (page / name).parent.mkdir(parents=True, exist_ok=True)
        (page / name).write_text(f"<p>posezoo {name}</p>")
    for package, patterns in site.RUNTIME_FILES.values():
        for pattern in patterns:
            path = page / "node_modules" / package / pattern.replace("*", "x")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")
    monkeypatch.setattr(site, "WEB", page)
    monkeypatch.setattr(site, "NODE_MODULES", page / "node_modules")
    return page


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory) -> Path:
    """A small conv net (conv, depthwise, relu6, pooling, dense) as float TFLite, fixed seed.

    Stands in for a real model where only the converter's mechanics are under test."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    w1 = tf.constant(rng.normal(0, 0.3, (3, 3, 3, 8)).astype(np.float32))
    dw = tf.constant(rng.normal(0, 0.3, (3, 3, 8, 1)).astype(np.float32))
    w2 = tf.constant(rng.normal(0, 0.3, (1, 1, 8, 16)).astype(np.float32))
    dense = tf.constant(rng.normal(0, 0.2, (16, 10)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 32, 32, 3], tf.float32, name="image")])
    def net(image):
        x = tf.nn.relu6(tf.nn.conv2d(image, w1, 2, "SAME"))
        x = tf.nn.relu6(tf.nn.depthwise_conv2d(x, dw, [1, 1, 1, 1], "SAME"))
        x = tf.nn.relu6(tf.nn.conv2d(x, w2, 1, "SAME"))
        x = tf.reduce_mean(x, axis=[1, 2])
        return {"keypoints": tf.matmul(x, dense) * 8.0 + 16.0}

    converter = tf.lite.TFLiteConverter.from_concrete_functions([net.get_concrete_function()], net)
    path = tmp_path_factory.mktemp("tiny") / "tiny.tflite"
    path.write_bytes(converter.convert())
    return path


@pytest.fixture(scope="session")
def tiny_samples(images):
    from posezoo.converters.calibration import load_samples

    return load_samples(images / "coco", TINY_INPUT, TINY_INPUT["crop"])


@pytest.fixture(scope="session")
def zoo(tmp_path_factory, shared):
    """MoveNet Lightning INT8 and EfficientPose RT-Lite FP32/INT8 ONNX+TFLite, one manifest, built
    from the genuine files of the shared checkpoints (the loader, eval and report tests read it)."""
    from posezoo.scripts.cli import main

    out, cache = tmp_path_factory.mktemp("zoo"), tmp_path_factory.mktemp("cache")
    common = ["--out", str(out), "--calibration-images", str(shared / "images"), "--mirror",
              str(shared / "checkpoints"), "--cache", str(cache), "--offline"]
    assert main(["build", "movenet-lightning", "--precisions", "int8", *common]) == 0
    assert main(["build", "efficientpose-rt-lite", "--formats", "onnx,tflite", "--precisions", "fp32,int8",
                 "--max-samples", "6", *common]) == 0
    return out / "manifest.json"
