"""The original model running in its own framework: the reference for parity and the start of
every conversion. A TFLite original runs on TFLite's reference kernels; a Keras original on
tf_keras and a PyTorch original in torch (the family's recipe code builds both, without running
code from the file); a SavedModel through its serving signature in TensorFlow."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from .runtimes import open_runner


class TFLiteOriginal:
    """`reference_kernels=False` for a vendor's full-integer file: its integer results are what its
    default kernels (XNNPACK) compute, and what our ONNX conversion of it reproduces."""

    def __init__(self, path: Path, reference_kernels: bool = True):
        self.path = Path(path)
        self.run = open_runner(path, reference_kernels=reference_kernels)

    def to_onnx(self, onnx_path: Path) -> Path:
        from .tflite_to_onnx import tflite_to_onnx

        return tflite_to_onnx(self.path, onnx_path)

    def fast_runner(self):
        """The same file on TFLite's default (XNNPACK) kernels: the original's own float noise."""
        return open_runner(self.path)


class KerasOriginal:
    def __init__(self, model, input_spec: dict):
        self.model, self.input_spec = model, input_spec

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = feeds.get(self.input_spec["name"], next(iter(feeds.values())))
        outputs = self.model(x, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return {name: np.asarray(y, np.float32) for name, y in zip(self.model.output_names, outputs)}

    def to_onnx(self, onnx_path: Path) -> Path:
        from .keras_to_onnx import keras_to_onnx

        return keras_to_onnx(self.model, self.input_spec, onnx_path)

    def fast_runner(self):
        return None


class TorchOriginal:
    def __init__(self, module, input_spec: dict, output_names: list[str]):
        self.module, self.input_spec, self.output_names = module.eval(), input_spec, output_names

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        x = torch.from_numpy(feeds.get(self.input_spec["name"], next(iter(feeds.values()))))
        with torch.no_grad():
            outputs = self.module(x)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return {name: y.numpy().astype(np.float32) for name, y in zip(self.output_names, outputs)}

    def to_onnx(self, onnx_path: Path) -> Path:
        from .torch_to_onnx import torch_to_onnx

        return torch_to_onnx(self.module, self.input_spec, self.output_names, onnx_path)

    def fast_runner(self):
        return None


class SavedModelOriginal:
    """A SavedModel tarball (converters.saved_model), unpacked into a folder that lives as long as
    this object."""

    def __init__(self, archive: Path, input_spec: dict, output_names: list[str]):
        from .saved_model import load_serving, serving_function, unpack

        self._folder = tempfile.TemporaryDirectory(prefix="posezoo-savedmodel-")
        self._loaded, serving = load_serving(unpack(archive, Path(self._folder.name)))
        self.forward = serving_function(serving, input_spec, output_names)
        self.input_name = input_spec["name"]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.forward(feeds.get(self.input_name, next(iter(feeds.values()))))
        return {name: np.asarray(y, np.float32) for name, y in outputs.items()}

    def to_onnx(self, onnx_path: Path) -> Path:
        from .keras_to_onnx import function_to_onnx

        return function_to_onnx(self.forward, self.forward.input_signature, onnx_path)

    def fast_runner(self):
        return None


def open_original(variant, path: Path):
    """`variant` (a recipe Variant) says the original's format and, for Keras, how to build it."""
    fmt = variant.recipe["original_format"]
    if fmt == "tflite":
        return TFLiteOriginal(path)
    if fmt == "keras":
        return KerasOriginal(variant.family_module("original").load(path, variant.recipe), variant.recipe["input"])
    if fmt == "torch":
        module = variant.family_module("model").load_official(path, variant.variant)
        return TorchOriginal(module, variant.recipe["input"], [o["name"] for o in variant.recipe["outputs"]])
    if fmt == "saved_model":
        return SavedModelOriginal(path, variant.recipe["input"], [o["name"] for o in variant.recipe["outputs"]])
    raise ValueError(f"{variant.id}: converting {fmt} originals is not supported yet; build the precisions "
                     "the publisher's own files cover (posezoo list --json shows them), e.g. --precisions int8")
