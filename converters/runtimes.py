"""Run an ONNX or TFLite file on float inputs, with (de)quantization of integer I/O handled here.

Inputs are given as the float (or integer) tensor the input spec describes; a quantized model
input is quantized with the model's own scale/zero-point, and quantized outputs come back
dequantized, so every runner answers in the same units as the original.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _quantize(x: np.ndarray, dtype, scale: float, zero_point: int) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def fit_layout(x: np.ndarray, shape) -> np.ndarray:
    """`x` in the layout the artifact expects: as is, or NCHW -> NHWC (onnx2tf turns NCHW models
    into NHWC ones)."""
    shape = tuple(int(d) for d in shape)
    if x.ndim == 4 and x.shape != shape and x.transpose(0, 2, 3, 1).shape == shape:
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    return x


class TFLiteRunner:
    """`reference_kernels`: TFLite's reference op implementations, no XNNPACK. Parity uses them on
    both sides: XNNPACK's own float rounding differs from the reference by up to 1.8e-4 of the
    output range on BlazePose's segmentation logits, above the FP32 gate."""

    def __init__(self, path: Path, threads: int = 1, reference_kernels: bool = False):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.path = Path(path)
        resolver = OpResolverType.BUILTIN_REF if reference_kernels else OpResolverType.AUTO
        self.interpreter = Interpreter(model_path=str(path), num_threads=threads,
                                       experimental_op_resolver_type=resolver)
        self.interpreter.allocate_tensors()
        self.inputs = self.interpreter.get_input_details()
        self.outputs = self.interpreter.get_output_details()

    @property
    def input_names(self) -> list[str]:
        return [d["name"] for d in self.inputs]

    def io_details(self) -> dict:
        """dtype and quantization (scale, zero_point; None when float) of every input and output,
        and its key in the file's signature where it has one: signature-based runtimes (LiteRT.js,
        LiteRT's CompiledModel) know tensors by that key (`output_0`), the interpreter by name."""
        keys = self._signature_keys()

        def describe(d):
            scale, zp = d["quantization"]
            q = {"scale": float(scale), "zero_point": int(zp)} if scale else None
            entry = {"name": d["name"], "dtype": np.dtype(d["dtype"]).name, "shape": d["shape"].tolist(),
                     "quantization": q}
            return {**entry, "signature_key": keys[d["index"]]} if d["index"] in keys else entry
        return {"inputs": [describe(d) for d in self.inputs], "outputs": [describe(d) for d in self.outputs]}

    def _signature_keys(self) -> dict[int, str]:
        """{tensor index: key} of the file's only signature; empty without exactly one."""
        signatures = self.interpreter.get_signature_list()
        if len(signatures) != 1:
            return {}
        runner = self.interpreter.get_signature_runner(next(iter(signatures)))
        details = {**runner.get_input_details(), **runner.get_output_details()}
        return {d["index"]: key for key, d in details.items()}

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for d in self.inputs:
            x = fit_layout(feeds[d["name"]] if d["name"] in feeds else next(iter(feeds.values())), d["shape"])
            scale, zp = d["quantization"]
            if np.issubdtype(d["dtype"], np.integer) and scale and np.issubdtype(x.dtype, np.floating):
                x = _quantize(x, d["dtype"], scale, zp)
            self.interpreter.set_tensor(d["index"], x.astype(d["dtype"], copy=False))
        self.interpreter.invoke()
        out = {}
        for d in self.outputs:
            y = self.interpreter.get_tensor(d["index"])
            scale, zp = d["quantization"]
            if scale and np.issubdtype(y.dtype, np.integer):
                y = (y.astype(np.float32) - zp) * scale
            out[d["name"]] = y.astype(np.float32, copy=False)
        return out


class OnnxRunner:
    def __init__(self, path: Path, threads: int = 1):
        import onnxruntime as ort

        self.path = Path(path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own exception types derive from Exception only
            raise RuntimeError(f"onnxruntime cannot load {Path(path).name}: {e}") from e

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.session.get_inputs()]

    def io_details(self) -> dict:
        types = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int8)": "int8",
                 "tensor(uint8)": "uint8", "tensor(int32)": "int32"}
        def describe(v):
            return {"name": v.name, "dtype": types.get(v.type, v.type), "shape": list(v.shape), "quantization": None}
        return {"inputs": [describe(v) for v in self.session.get_inputs()],
                "outputs": [describe(v) for v in self.session.get_outputs()]}

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = self.input_names
        if set(feeds) != set(names) and len(names) == 1:
            feeds = {names[0]: next(iter(feeds.values()))}
        try:
            outs = self.session.run(None, feeds)
        except Exception as e:
            raise RuntimeError(f"onnxruntime cannot run {self.path.name}: {e}") from e
        return {o.name: np.asarray(y, dtype=np.float32) for o, y in zip(self.session.get_outputs(), outs)}


def open_runner(path: Path, threads: int = 1, reference_kernels: bool = False):
    """A runner for an .onnx or .tflite file."""
    suffix = Path(path).suffix
    if suffix == ".onnx":
        return OnnxRunner(path, threads)
    if suffix == ".tflite":
        return TFLiteRunner(path, threads, reference_kernels)
    raise ValueError(f"{path}: no runtime for {suffix!r} files (expected .onnx or .tflite)")


def runtime_versions() -> dict[str, str]:
    """Versions of the runtimes parity ran on (INT8 QDQ results depend on onnxruntime's version)."""
    from importlib.metadata import version

    return {name: version(name) for name in ("onnxruntime", "ai-edge-litert")}
