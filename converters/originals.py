"""The original model running in its own framework: the reference for parity and the start of
every conversion. A TFLite original runs on TFLite's reference kernels; a Keras original on
tf_keras and a PyTorch original in torch (the family's recipe code builds both, without running
code from the file); a SavedModel through its serving signature and a TensorFlow.js graph model
as a graph, both in TensorFlow.

Keras, PyTorch, SavedModel and tfjs graph originals execute graph code from the file, so
`open_original` opens them in a sandboxed child process (converters/sandbox.py) that runs
`open_in_process` there. TFLite originals stay in-process: the interpreter runs only its built-in kernels, which cannot
open files or sockets."""
from __future__ import annotations

import importlib
import tempfile
from pathlib import Path

import numpy as np

from posezoo.errors import UsageError

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

    def close(self) -> None:
        """Nothing to stop: the interpreter lives in this process (sandboxed originals stop their child)."""


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


class TFFunctionOriginal:
    """An original that is a tf.function of the recipe's input returning the recipe's outputs
    (`forward`): run in TensorFlow, converted to ONNX by tf2onnx."""

    forward = None  # set by the subclass
    input_name = ""

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.forward(feeds.get(self.input_name, next(iter(feeds.values()))))
        return {name: np.asarray(y, np.float32) for name, y in outputs.items()}

    def to_onnx(self, onnx_path: Path) -> Path:
        from .keras_to_onnx import function_to_onnx

        return function_to_onnx(self.forward, self.forward.input_signature, onnx_path)

    def fast_runner(self):
        return None


class SavedModelOriginal(TFFunctionOriginal):
    """A SavedModel tarball (posezoo.converters.saved_model), unpacked into a folder that lives as long as
    this object."""

    def __init__(self, archive: Path, input_spec: dict, output_names: list[str]):
        from .saved_model import load_serving, serving_function, unpack

        self._folder = tempfile.TemporaryDirectory(prefix="posezoo-savedmodel-")
        self._loaded, serving = load_serving(unpack(archive, Path(self._folder.name)), source=archive)
        self.forward = serving_function(serving, input_spec, output_names)
        self.input_name = input_spec["name"]


class TfjsGraphOriginal(TFFunctionOriginal):
    """A TensorFlow.js graph model (model.json, its weight files beside it) in TensorFlow
    (posezoo.converters.tfjs_graph)."""

    def __init__(self, path: Path, input_spec: dict, output_names: list[str]):
        from .tfjs_graph import graph_function

        self.forward = graph_function(path, input_spec, output_names)
        self.input_name = input_spec["name"]


# recipes/<family>/<name>.py that builds an original of each format (None: the file alone does)
FAMILY_MODULE = {"keras": "original", "torch": "model", "saved_model": None, "tfjs_graph": None}


def open_original(variant, path: Path):
    """`variant` (a recipe Variant) says the original's format and, for Keras and PyTorch, which
    of its family's modules builds it. All but TFLite originals open in a sandboxed child; call
    `close()` when done (garbage collection and interpreter exit also stop the child)."""
    fmt = variant.recipe["original_format"]
    if fmt == "tflite":
        return TFLiteOriginal(path)
    if fmt in FAMILY_MODULE:
        from .sandbox import SandboxedOriginal

        name = FAMILY_MODULE[fmt]
        module = f"posezoo.recipes.{variant.family}.{name}" if name else None
        return SandboxedOriginal(fmt, module, variant.variant, variant.recipe, path)
    raise UsageError(f"{variant.id}: converting {fmt} originals is not supported yet; build the precisions "
                     "the publisher's own files cover (posezoo list --json shows them), e.g. --precisions int8")


def open_in_process(fmt: str, module: str | None, variant: str, recipe: dict, path: Path):
    """A Keras, PyTorch, SavedModel or tfjs graph original in this process (what the sandbox's
    child runs): `module` builds Keras (`load(path, recipe)`) and PyTorch (`load_official(path, variant)`) ones."""
    outputs = [o["name"] for o in recipe["outputs"]]
    if fmt == "keras":
        return KerasOriginal(importlib.import_module(module).load(path, recipe), recipe["input"])
    if fmt == "torch":
        return TorchOriginal(importlib.import_module(module).load_official(path, variant), recipe["input"], outputs)
    if fmt == "saved_model":
        return SavedModelOriginal(path, recipe["input"], outputs)
    if fmt == "tfjs_graph":
        return TfjsGraphOriginal(path, recipe["input"], outputs)
    raise ValueError(f"{fmt} originals do not open in a sandbox")
