"""The one place a model file runs: `Runner(path, format, threads, inputs, hint)` loads a .tflite in
the LiteRT interpreter (XNNPACK, `num_threads`) or an .onnx in ONNX Runtime's CPU provider, on a
deterministic input of the file's own shape and dtype; `.run()` is one timed inference, `.info`
what the file takes (inputs, precision, resized), `.notes` what differed from the manifest.
`import_runtime(format)` imports the same runtime and nothing more (the memory baseline)."""
from __future__ import annotations

import numpy as np


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
    """One loaded file, ready to infer on its deterministic input."""

    def __init__(self, path: str, fmt: str, threads: int, inputs, hint):
        self.notes: list[str] = []
        wanted = {i["name"]: i for i in inputs or []}
        order = list(inputs or [])
        if fmt == "tflite":
            from ai_edge_litert.interpreter import Interpreter

            self.interp = Interpreter(model_path=path, num_threads=threads)
            details = self.interp.get_input_details()
            resized = False
            for k, d in enumerate(details):
                spec = wanted.get(d["name"]) or (order[k] if k < len(order) else None)
                sig = d.get("shape_signature", d["shape"]).tolist()
                want = _concrete(spec["shape"] if spec else sig, hint)
                if list(d["shape"]) != want or any(s < 0 for s in sig):
                    self.interp.resize_tensor_input(d["index"], want, strict=False)
                    resized = True
                    self.notes.append(f"input {d['name']} {sig} resized to {want}")
            self.interp.allocate_tensors()
            details = self.interp.get_input_details()
            self.outputs = [d["index"] for d in self.interp.get_output_details()]
            self.feeds = []
            for k, d in enumerate(details):
                spec = wanted.get(d["name"]) or (order[k] if k < len(order) else None)
                dtype = np.dtype(d["dtype"])
                if spec and np.dtype(spec["dtype"]) != dtype:
                    self.notes.append(f"input {d['name']}: the file takes {dtype.name}, the manifest says {spec['dtype']}")
                self.feeds.append((d["index"], make_input(d["shape"], dtype)))
            self.info = {"inputs": [{"name": d["name"], "shape": d["shape"].tolist(), "dtype": np.dtype(d["dtype"]).name}
                                    for d in details],
                         "precision": _tflite_precision(self.interp, [d["dtype"] for d in details]), "resized": resized}
            self.run = self._run_tflite
        elif fmt == "onnx":
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
            types = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int8)": "int8",
                     "tensor(uint8)": "uint8", "tensor(int32)": "int32", "tensor(int64)": "int64"}
            self.feeds = {}
            info = []
            for k, v in enumerate(self.session.get_inputs()):
                spec = wanted.get(v.name) or (order[k] if k < len(order) else None)
                dtype = np.dtype(types.get(v.type, "float32"))
                if spec and np.dtype(spec["dtype"]) != dtype:
                    self.notes.append(f"input {v.name}: the file takes {dtype.name}, the manifest says {spec['dtype']}")
                shape = _concrete(v.shape if not spec else [a if isinstance(a, int) else b
                                                             for a, b in zip(spec["shape"], v.shape)], hint)
                self.feeds[v.name] = make_input(shape, dtype)
                info.append({"name": v.name, "shape": shape, "dtype": dtype.name})
            self.info = {"inputs": info, "precision": None, "resized": False}
            self.run = self._run_onnx
        else:
            raise ValueError(f"{path}: no runtime for {fmt!r} files")

    def _run_tflite(self):
        for index, x in self.feeds:
            self.interp.set_tensor(index, x)
        self.interp.invoke()
        for index in self.outputs:
            self.interp.get_tensor(index)

    def _run_onnx(self):
        self.session.run(None, self.feeds)



def import_runtime(fmt: str) -> None:
    if fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter  # noqa: F401
    else:
        import onnxruntime  # noqa: F401

