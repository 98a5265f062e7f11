"""An ONNX or TFLite file seen in float, as parity compares it with the original.

The file runs in posezoo's one runtime (zoo/runtime.py). Inputs are given as the float (or
integer) tensor the input spec describes, in the model's layout: they are moved to the file's
layout (onnx2tf turns NCHW models into NHWC ones) and quantized with the file's own scale and
zero point where its input is quantized; quantized outputs come back dequantized, so every file
answers in the same units as the original.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from posezoo.loader import dequantize, quantize
from posezoo.runtime import open_runtime


def fit_layout(x: np.ndarray, shape) -> np.ndarray:
    """`x` in the layout the file expects: as is, or NCHW <-> NHWC where only that fits."""
    shape = tuple(int(d) if isinstance(d, (int, np.integer)) else -1 for d in shape)
    if x.ndim != 4 or len(shape) != 4 or _fits(x.shape, shape):
        return x
    for axes in ((0, 2, 3, 1), (0, 3, 1, 2)):
        if _fits(x.transpose(axes).shape, shape):
            return np.ascontiguousarray(x.transpose(axes))
    return x


def _fits(have, want) -> bool:
    return all(w < 0 or h == w for h, w in zip(have, want))


class FloatRunner:
    """`runtime`: a posezoo.runtime runtime. Call it with {input name: array} (a single input also by
    position); it returns {output name: float32 array}."""

    def __init__(self, runtime):
        self.runtime = runtime

    @property
    def inputs(self) -> list[dict]:
        return self.runtime.inputs

    def io_details(self) -> dict:
        return self.runtime.io_details()

    def raw_inputs(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`feeds` as the file takes them: its layout, its dtype, quantized where it is."""
        raw = {}
        for k, d in enumerate(self.runtime.inputs):
            x = fit_layout(np.asarray(feeds[d["name"]] if d["name"] in feeds else list(feeds.values())[k]),
                           d["shape"])
            q = d["quantization"]
            if q and np.issubdtype(np.dtype(d["dtype"]), np.integer) and np.issubdtype(x.dtype, np.floating):
                x = quantize(x, d["dtype"], q["scale"], q["zero_point"])
            raw[d["name"]] = x.astype(d["dtype"], copy=False)
        return raw

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.runtime(self.raw_inputs(feeds))
        result = {}
        for d in self.runtime.outputs:
            y, q = outputs[d["name"]], d["quantization"]
            y = dequantize(y, q["scale"], q["zero_point"]) if q and np.issubdtype(y.dtype, np.integer) else y
            result[d["name"]] = np.asarray(y, dtype=np.float32)
        return result


def open_runner(path: Path, threads: int = 1, reference_kernels: bool = False) -> FloatRunner:
    """The float view of an .onnx or .tflite file (`reference_kernels`: TFLite's reference op
    implementations, no XNNPACK; parity uses them on both sides: XNNPACK's own float rounding
    differs from the reference by up to 1.8e-4 of the output range on BlazePose's segmentation
    logits, above the FP32 gate)."""
    return FloatRunner(open_runtime(path, threads, reference_kernels))


def runtime_versions() -> dict[str, str]:
    """Versions of the runtimes parity ran on (INT8 QDQ results depend on onnxruntime's version)."""
    from importlib.metadata import version

    return {name: version(name) for name in ("onnxruntime", "ai-edge-litert")}
