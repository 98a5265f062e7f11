"""The one place posezoo runs a model file: ONNX Runtime's CPU provider for `.onnx`, LiteRT's
interpreter for `.tflite`. The loader, parity, the benchmark and the tensor walk all run files
through it.

Raw tensors in and out: a runtime takes `{input name: array}` in the file's own dtype and layout
and returns `{output name: array}` as the file computes them (quantized outputs stay integers).
What the numbers mean (normalization, quantization, layout) is the caller's business: the loader
follows the manifest, parity the file's own quantization (converters/runtimes.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from posezoo.errors import RunError

# ONNX Runtime's type strings as numpy dtype names.
ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int16)": "int16", "tensor(int32)": "int32",
              "tensor(int64)": "int64", "tensor(bool)": "bool"}


class OnnxRuntime:
    """`model`: an .onnx path, or the serialized model (bytes). A file the runtime cannot load or run
    raises RunError (a RuntimeError) naming it (the parity gate rejects such an artifact)."""

    library = "onnxruntime"  # the module that runs it (what a runtime-only install needs)

    def __init__(self, model, threads: int = 1, reference_kernels: bool = False):
        """`reference_kernels` is accepted for a common signature: ONNX Runtime has one kernel set."""
        import onnxruntime as ort

        self.name = Path(model).name if isinstance(model, (str, Path)) else "the ONNX model"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        source = str(model) if isinstance(model, (str, Path)) else model
        try:
            self.session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own exception types derive from Exception only
            raise RunError(f"onnxruntime cannot load {self.name}: {e}") from e
        self.inputs = [self._describe(v) for v in self.session.get_inputs()]
        self.outputs = [self._describe(v) for v in self.session.get_outputs()]

    @staticmethod
    def _describe(v) -> dict:
        return {"name": v.name, "dtype": ORT_DTYPES.get(v.type, v.type), "shape": list(v.shape), "quantization": None}

    def io_details(self) -> dict:
        return {"inputs": self.inputs, "outputs": self.outputs}

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            results = self.session.run(None, feeds)
        except Exception as e:
            raise RunError(f"onnxruntime cannot run {self.name}: {e}") from e
        return {o["name"]: y for o, y in zip(self.outputs, results)}


class TFLiteRuntime:
    """`reference_kernels`: TFLite's reference op implementations instead of its default ones
    (XNNPACK), as parity runs both sides."""

    library = "ai_edge_litert.interpreter"

    def __init__(self, path: Path, threads: int = 1, reference_kernels: bool = False):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.name = Path(path).name
        resolver = OpResolverType.BUILTIN_REF if reference_kernels else OpResolverType.AUTO
        self.interpreter = Interpreter(model_path=str(path), num_threads=threads,
                                       experimental_op_resolver_type=resolver)
        self._allocate()

    def resize(self, shapes: dict[str, list[int]]) -> None:
        """Give inputs stored with free dimensions (or another size) the shapes {name: shape}."""
        for d in self.input_details:
            if d["name"] in shapes:
                self.interpreter.resize_tensor_input(d["index"], list(shapes[d["name"]]), strict=False)
        self._allocate()

    def _allocate(self) -> None:
        self.interpreter.allocate_tensors()
        self.input_details = self.interpreter.get_input_details()
        self.output_details = self.interpreter.get_output_details()
        keys = self._signature_keys()
        self.inputs = [self._describe(d, keys) for d in self.input_details]
        self.outputs = [self._describe(d, keys) for d in self.output_details]

    @staticmethod
    def _describe(d: dict, keys: dict[int, str]) -> dict:
        """dtype, shape and quantization (scale, zero_point; None when float) of a tensor, and its key
        in the file's signature where it has one: signature-based runtimes (LiteRT.js, LiteRT's
        CompiledModel) know tensors by that key (`output_0`), the interpreter by name."""
        scale, zero_point = d["quantization"]
        entry = {"name": d["name"], "dtype": np.dtype(d["dtype"]).name, "shape": d["shape"].tolist(),
                 "quantization": {"scale": float(scale), "zero_point": int(zero_point)} if scale else None}
        return {**entry, "signature_key": keys[d["index"]]} if d["index"] in keys else entry

    def _signature_keys(self) -> dict[int, str]:
        """{tensor index: key} of the file's only signature; empty without exactly one."""
        signatures = self.interpreter.get_signature_list()
        if len(signatures) != 1:
            return {}
        runner = self.interpreter.get_signature_runner(next(iter(signatures)))
        details = {**runner.get_input_details(), **runner.get_output_details()}
        return {d["index"]: key for key, d in details.items()}

    def io_details(self) -> dict:
        return {"inputs": self.inputs, "outputs": self.outputs}

    def invoke(self, feeds: dict[str, np.ndarray]) -> None:
        """Set the inputs (by name; a single input also by position) and run the file."""
        for k, d in enumerate(self.input_details):
            x = feeds[d["name"]] if d["name"] in feeds else list(feeds.values())[k]
            self.interpreter.set_tensor(d["index"], x)
        self.interpreter.invoke()

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.invoke(feeds)
        return {d["name"]: self.interpreter.get_tensor(d["index"]) for d in self.output_details}


# Format name -> (file suffix, runtime class); converters/formats.py registers every format here.
RUNTIMES: dict[str, tuple[str, type]] = {}


def register(format: str, suffix: str, runtime: type) -> None:
    RUNTIMES[format] = (suffix, runtime)


register("onnx", ".onnx", OnnxRuntime)
register("tflite", ".tflite", TFLiteRuntime)


def open_runtime(path: Path, threads: int = 1, reference_kernels: bool = False):
    """The runtime of a model file, by its suffix (`reference_kernels` matters to TFLite only)."""
    suffix = Path(path).suffix
    for known, runtime in RUNTIMES.values():
        if known == suffix:
            return runtime(path, threads, reference_kernels)
    raise RunError(f"{path}: no runtime for {suffix!r} files (known: "
                   f"{', '.join(s for s, _ in RUNTIMES.values())})")
