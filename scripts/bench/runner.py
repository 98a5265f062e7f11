"""The one place a model file runs: `Runner(path, format, threads, inputs, hint)` loads a .tflite in
the LiteRT interpreter (XNNPACK, `num_threads`) or an .onnx in ONNX Runtime's CPU provider, on a
deterministic input of the file's own shape and dtype; `.run()` is one timed inference, `.info`
what the file takes (inputs, precision, resized), `.notes` what differed from the manifest.
`import_runtime(format)` imports the same runtime and nothing more (the memory baseline)."""
from __future__ import annotations

import importlib

import numpy as np

import posezoo.converters.formats  # noqa: F401  every registered format's runtime, also in a worker process
from posezoo.errors import RunError
from posezoo.runtime import RUNTIMES


def make_input(shape, dtype) -> np.ndarray:
    """A deterministic input with no zero in it: pixel-like values 1..255 in a fixed scramble,
    as they are for uint8, shifted by -128 for int8 (0 -> 1), over 255 for float."""
    shape = [int(d) for d in shape]
    n = int(np.prod(shape)) if shape else 1
    pix = (np.arange(n, dtype=np.int64) * 7919 + 13) % 255 + 1
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        x = pix.astype(np.uint8)
    elif dtype == np.int8:
        v = pix - 128
        x = np.where(v == 0, 1, v).astype(np.int8)
    elif np.issubdtype(dtype, np.integer):
        x = pix.astype(dtype)
    else:
        x = (pix / 255.0).astype(dtype)
    return x.reshape(shape)


def _concrete(shape, hint) -> list[int]:
    """Symbolic or unknown dims (None, 'batch', -1) from the hint where it has the same rank, else 1."""
    out = []
    for i, d in enumerate(shape):
        if isinstance(d, (int, np.integer)) and d > 0:
            out.append(int(d))
        elif hint is not None and len(hint) == len(shape):
            out.append(int(hint[i]))
        else:
            out.append(1)
    return out


def _tflite_precision(interpreter, input_dtypes) -> str:
    dtypes = {np.dtype(d["dtype"]).name for d in interpreter.get_tensor_details()}
    if any(np.dtype(d).name in ("int8", "uint8") for d in input_dtypes) or "int8" in dtypes:
        return "int8"
    return "fp16" if "float16" in dtypes else "fp32"


class Runner:
    """One loaded file (in posezoo's runtime, zoo/runtime.py), ready to infer on its deterministic input."""

    def __init__(self, path: str, fmt: str, threads: int, inputs, hint):
        from posezoo.runtime import TFLiteRuntime

        self.notes: list[str] = []
        wanted = {i["name"]: i for i in inputs or []}
        order = list(inputs or [])

        def spec_of(k: int, name: str):
            return wanted.get(name) or (order[k] if k < len(order) else None)

        if fmt not in RUNTIMES:
            raise RunError(f"{path}: no runtime for {fmt!r} files (known: {', '.join(RUNTIMES)})")
        self.runtime = RUNTIMES[fmt][1](path, threads)
        shapes = {}
        if isinstance(self.runtime, TFLiteRuntime):  # inputs stored with free dims are resized before timing
            for k, d in enumerate(self.runtime.input_details):
                spec = spec_of(k, d["name"])
                sig = d.get("shape_signature", d["shape"]).tolist()
                want = _concrete(spec["shape"] if spec else sig, hint)
                if list(d["shape"]) != want or any(s < 0 for s in sig):
                    shapes[d["name"]] = want
                    self.notes.append(f"input {d['name']} {sig} resized to {want}")
            if shapes:
                self.runtime.resize(shapes)
        shape_of = {}
        for k, d in enumerate(self.runtime.inputs):
            spec = spec_of(k, d["name"])
            shape_of[d["name"]] = _concrete(d["shape"] if not spec else [a if isinstance(a, int) else b for a, b
                                                                        in zip(spec["shape"], d["shape"])], hint)
        self.feeds, info = {}, []
        for k, d in enumerate(self.runtime.inputs):
            spec = spec_of(k, d["name"])
            dtype = np.dtype(d["dtype"] if d["dtype"] in np.sctypeDict else "float32")
            if spec and np.dtype(spec["dtype"]) != dtype:
                self.notes.append(f"input {d['name']}: the file takes {dtype.name}, the manifest says {spec['dtype']}")
            self.feeds[d["name"]] = make_input(shape_of[d["name"]], dtype)
            info.append({"name": d["name"], "shape": list(shape_of[d["name"]]), "dtype": dtype.name})
        precision = (_tflite_precision(self.runtime.interpreter, [i["dtype"] for i in info])
                     if isinstance(self.runtime, TFLiteRuntime) else None)
        self.info = {"inputs": info, "precision": precision, "resized": bool(shapes)}

    def run(self) -> None:
        """One inference: set the inputs, invoke, read the outputs."""
        self.runtime(self.feeds)


def import_runtime(fmt: str) -> None:
    """Import what runs `fmt` files and nothing more (the memory baseline)."""
    importlib.import_module(RUNTIMES[fmt][1].library)
