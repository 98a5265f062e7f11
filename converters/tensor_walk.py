"""Parity, intermediate-tensor mode: where does an ONNX artifact first depart from its TFLite original?

Final outputs say *that* an artifact disagrees; this walk says *where*. Every intermediate tensor
of both models is exposed and compared in the original's op order, and the first tensors that
depart by more than the tolerance are reported. It serves any pair: a full-integer TFLite model
and its ONNX conversion, a float TFLite model and its FP32 or INT8 ONNX artifacts.

- TFLite: every op output becomes a subgraph output (a flatbuffer rewrite into a temporary
  file), so the interpreter keeps them all while running its default kernels (XNNPACK
  included; `experimental_preserve_all_tensors` would lose the delegated ones).
- ONNX: every node output becomes a graph output. onnxruntime then cannot fuse across exposed
  values (no QLinearConv, no Conv+Mul folding), so the walk sees the graph's own arithmetic,
  not the fused kernels a deployment may run.
- Matching is structural: a TFLite tensor matches the ONNX value tf2onnx named after it when
  that name survives (raw tf2onnx graphs), otherwise the ONNX value downstream of the ONNX
  values matched to the TFLite op's inputs with the same shape (NHWC, or NCHW transposed) and
  value kind (integer for integer) that agrees best on the first feed (canonically renamed
  graphs, graphs whose ops were rewritten or quantized). Each ONNX value matches at most once.
- Units: a quantized TFLite tensor is compared in its own quantization steps (integer values
  directly, float values after dequantization); a float tensor whose ONNX match is quantized
  (an INT8 artifact of a float original) in the artifact's steps; other float tensors in error
  relative to the original tensor's range (max - min); other integer tensors (indices) as they are.
"""
from __future__ import annotations

import tempfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from posezoo.runtime import OnnxRuntime, TFLiteRuntime

from .runtimes import FloatRunner

_MAX_DEPTH = 32  # ONNX nodes between a TFLite op's matched inputs and its output (rewrites add ~15)
_TFLITE_TYPES = {name: np.dtype(name.lower()) for name in
                 ("FLOAT32", "FLOAT16", "FLOAT64", "INT8", "UINT8", "INT16", "UINT16", "INT32", "UINT32", "INT64")}
_TFLITE_TYPES["BOOL"] = np.dtype(bool)


def first_departures(tflite_path: Path, onnx_path: Path, feeds, max_report: int = 5, *, steps: float = 1.0,
                     rel_tol: float = 1e-4, reference_kernels: bool = False) -> list[dict]:
    """The first tensors, in TFLite op order, where the ONNX model departs from the TFLite model.

    `feeds`: one input array, one {name: array} dict, or a list of either (the same arrays go to
    both models). A tensor departs when, on some feed, an element is off by more than `steps`
    quantization steps (quantized tensors, or float tensors the ONNX model quantizes), by more
    than `rel_tol` of the original tensor's range (other float tensors), or at all (integer
    tensors). `reference_kernels`: run TFLite's reference kernels instead of the default ones.

    Each report: op_index, op (TFLite op type), tensor (TFLite name), onnx_tensor, matched_by
    ("name" or "structure"), units, max_off (over feeds and elements), share_off (share of
    elements beyond the tolerance, mean over feeds), share_differing (share of elements not
    equal), feeds_off (feeds on which it departs).
    """
    return walk(tflite_path, onnx_path, feeds, steps=steps, rel_tol=rel_tol,
                reference_kernels=reference_kernels).departures(max_report)


@dataclass
class Walk:
    """Every compared tensor pair in TFLite op order (dicts as `first_departures` describes, plus
    `departs`), and the names of TFLite op outputs no ONNX value matched."""
    rows: list[dict] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)

    def departures(self, max_report: int = 5) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "departs"} for r in self.rows if r["departs"]][:max_report]


def walk(tflite_path: Path, onnx_path: Path, feeds, *, steps: float = 1.0, rel_tol: float = 1e-4,
         reference_kernels: bool = False) -> Walk:
    """Compare every intermediate tensor; see `first_departures`."""
    feeds = [f if isinstance(f, dict) else {"input": np.asarray(f)}
             for f in ([feeds] if isinstance(feeds, (np.ndarray, dict)) else feeds)]
    if not feeds:
        raise ValueError("the tensor walk needs at least one input")
    ops, tensors, inputs = _tflite_graph(tflite_path)
    onnx_model = _OnnxGraph(onnx_path)
    with tempfile.TemporaryDirectory() as tmp:
        exposed = Path(tmp) / "all_tensors.tflite"
        _expose_tflite_tensors(tflite_path, exposed, [t for op in ops for t in op["outputs"]])
        tflite_model = _tflite_runner(exposed, reference_kernels)
        pairs, unmatched = None, []
        for feed in feeds:  # one feed at a time: only running statistics are kept
            tfl, onx = tflite_model(feed), onnx_model(feed)
            if pairs is None:
                pairs, unmatched = _match(ops, tensors, inputs, onnx_model, tfl, onx, steps, rel_tol)
            for pair in pairs:
                pair.add(tfl[pair.tensor.index], onx[pair.onnx_name])
    return Walk([p.row() for p in pairs], unmatched)


# --------------------------------------------------------------------------------------------
# TFLite side
# --------------------------------------------------------------------------------------------

@dataclass
class _TflTensor:
    index: int
    name: str
    dtype: np.dtype
    scale: float  # 0.0 when not quantized (or quantized per axis)
    zero_point: int

    @property
    def kind(self) -> str:
        """q: quantized integer, f: float, i: plain integer or bool."""
        if self.dtype.kind == "f":
            return "f"
        return "q" if self.scale > 0 else "i"


def _tflite_graph(path: Path):
    """Ops of subgraph 0 in execution order, tensor metadata by index, input tensor indices."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    sub = model.subgraphs[0]
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    tensors = {}
    for i, t in enumerate(sub.tensors):
        dtype = _TFLITE_TYPES.get(type_names.get(t.type))
        if dtype is None:
            continue  # strings, resources, ...: nothing to compare
        q = t.quantization
        scales = [] if q is None or q.scale is None else list(q.scale)
        zero_points = [] if q is None or q.zeroPoint is None else list(q.zeroPoint)
        name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
        tensors[i] = _TflTensor(i, name, dtype, float(scales[0]) if len(scales) == 1 else 0.0,
                                int(zero_points[0]) if len(zero_points) == 1 else 0)
    ops = []
    for k, op in enumerate(sub.operators):
        code = flatbuffer_utils.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex])
        ops.append({"index": k, "name": op_names.get(code, str(code)),
                    "inputs": [int(i) for i in op.inputs if int(i) in tensors],
                    "outputs": [int(i) for i in op.outputs if int(i) in tensors]})
    return ops, tensors, [int(i) for i in sub.inputs]


def _expose_tflite_tensors(path: Path, out: Path, indices: list[int]) -> None:
    """Write a copy of the model whose subgraph outputs are all of `indices` (original outputs first)."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    sub = model.subgraphs[0]
    original = [int(i) for i in sub.outputs]
    sub.outputs = np.array(original + [i for i in dict.fromkeys(indices) if i not in original], dtype=np.int32)
    flatbuffer_utils.write_model(model, str(out))


def _tflite_runner(path: Path, reference_kernels: bool):
    """Run the exposed file; every op output by tensor index (names need not be unique)."""
    runtime = TFLiteRuntime(path, reference_kernels=reference_kernels)
    fit = FloatRunner(runtime).raw_inputs

    def run(feed: dict) -> dict[int, np.ndarray]:
        runtime.invoke(fit(feed))
        return {d["index"]: runtime.interpreter.get_tensor(d["index"]).copy() for d in runtime.output_details}
    return run


# --------------------------------------------------------------------------------------------
# ONNX side
# --------------------------------------------------------------------------------------------

class _OnnxGraph:
    """The ONNX model with every node output exposed, plus its structure (consumers, quantizers)."""

    def __init__(self, path: Path):
        import onnx
        from onnx import helper, numpy_helper

        model = onnx.load(str(path))
        graph = model.graph
        self.init = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        self.inputs = [v.name for v in graph.input if v.name not in self.init]
        self.producer = {o: n for n in graph.node for o in n.output if o}
        self.consumers: dict[str, list] = {}
        for n in graph.node:
            for i in n.input:
                if i:
                    self.consumers.setdefault(i, []).append(n)
        exposed = {v.name for v in graph.output}
        for n in graph.node:
            for o in n.output:
                if o and o not in exposed:
                    graph.output.append(helper.make_empty_tensor_value_info(o))
                    exposed.add(o)
        self.runtime = OnnxRuntime(model.SerializeToString())
        self.names = [o["name"] for o in self.runtime.outputs]

    def __call__(self, feed: dict) -> dict[str, np.ndarray]:
        """Every node output as the file computes it (integer tensors stay integers)."""
        return self.runtime(FloatRunner(self.runtime).raw_inputs(feed))

    def downstream(self, sources: set[str]) -> dict[str, int]:
        """ONNX values downstream of `sources` (within _MAX_DEPTH nodes), with their distance."""
        depth: dict[str, int] = {}
        queue = deque((s, 0) for s in sources)
        seen = set(sources)
        while queue:
            name, d = queue.popleft()
            if d >= _MAX_DEPTH:
                continue
            for node in self.consumers.get(name, []):
                for o in node.output:
                    if o and o not in seen:
                        seen.add(o)
                        depth[o] = d + 1
                        queue.append((o, d + 1))
        return depth

    def step_of(self, name: str) -> float | None:
        """The quantization step of a float value the ONNX model quantizes: the per-tensor scale of
        the QuantizeLinear consuming it or of the DequantizeLinear producing it."""
        nodes = [n for n in self.consumers.get(name, []) if n.op_type == "QuantizeLinear"]
        producer = self.producer.get(name)
        if producer is not None and producer.op_type == "DequantizeLinear":
            nodes.append(producer)
        for node in nodes:
            scale = self.init.get(node.input[1])
            if scale is not None and scale.size == 1:
                return float(scale)
        return None


# --------------------------------------------------------------------------------------------
# Matching and comparison
# --------------------------------------------------------------------------------------------

@dataclass
class _Pair:
    """A matched (TFLite tensor, ONNX value) with running statistics over the feeds."""
    op: dict
    tensor: _TflTensor
    onnx_name: str
    align: object  # ONNX value -> the TFLite tensor's layout
    matched_by: str
    step: float | None  # the ONNX model's quantization step, for a float tensor it quantizes
    units: str
    tol: float
    max_off: float = 0.0
    share_off: float = 0.0
    share_differing: float = 0.0
    feeds_off: int = 0
    feeds: int = 0

    def add(self, reference: np.ndarray, value: np.ndarray) -> None:
        d = _difference(self.tensor, reference, self.align(value), self.step)
        self.feeds += 1
        if d.size:
            self.max_off = max(self.max_off, float(d.max()))
            self.share_off += float((d > self.tol).mean())
            self.share_differing += float((d > 0).mean())
            self.feeds_off += int(d.max() > self.tol)

    def row(self) -> dict:
        n = max(self.feeds, 1)
        return {"op_index": self.op["index"], "op": self.op["name"], "tensor": self.tensor.name,
                "onnx_tensor": self.onnx_name, "matched_by": self.matched_by, "units": self.units,
                "max_off": self.max_off, "share_off": self.share_off / n, "share_differing": self.share_differing / n,
                "feeds_off": self.feeds_off, "departs": self.max_off > self.tol}


def _match(ops, tensors, inputs, graph: _OnnxGraph, tfl: dict, onx: dict, steps: float,
           rel_tol: float) -> tuple[list[_Pair], list[str]]:
    """Walk the TFLite ops in order; give each op output its ONNX value (see the module docstring)."""
    matched: dict[int, str] = {t: o for t, o in zip(inputs, graph.inputs)}
    claimed = set(matched.values())
    pairs, unmatched = [], []
    for op in ops:
        sources = {matched[i] for i in op["inputs"] if i in matched}
        for index in op["outputs"]:
            if index in matched:
                continue
            tensor = tensors[index]
            found = _find(tensor, tfl[index], onx, graph, sources, claimed)
            if found is None:
                unmatched.append(tensor.name)
                continue
            name, align, how = found
            matched[index] = name
            claimed.add(name)
            step = graph.step_of(name) if tensor.kind == "f" else None
            pairs.append(_Pair(op, tensor, name, align, how, step, *_units(tensor, step, steps, rel_tol)))
    return pairs, unmatched


def _find(tensor: _TflTensor, reference: np.ndarray, onx: dict, graph: _OnnxGraph, sources: set[str],
          claimed: set[str]):
    """(onnx_name, align, "name" | "structure") for one TFLite tensor, or None."""
    if tensor.name in onx and tensor.name not in claimed:
        fit = _best_alignment(tensor, reference, onx[tensor.name])
        if fit is not None:
            return tensor.name, fit[1], "name"
    best = None
    for name, depth in graph.downstream(sources).items():
        value = onx.get(name)
        if value is None or name in claimed or not _kind_fits(tensor, value):
            continue
        fit = _best_alignment(tensor, reference, value)
        if fit is None:
            continue
        # the same value kind first (an int8 value for an int8 tensor), then the closest values, then the nearest
        rank = (value.dtype.kind == reference.dtype.kind, -fit[0], -depth)
        if best is None or rank > best[0]:
            best = (rank, name, fit[1])
    return None if best is None else (best[1], best[2], "structure")


def _best_alignment(tensor: _TflTensor, reference: np.ndarray, value: np.ndarray):
    """(mean difference, align) for the layout that fits best, or None when no layout fits."""
    best = None
    for align in _alignments(reference.shape, value.shape):
        error = float(np.mean(_difference(tensor, reference, align(value), None))) if reference.size else 0.0
        if best is None or error < best[0]:
            best = (error, align)
    return best


def _alignments(ref_shape: tuple, shape: tuple) -> list:
    found = []
    if tuple(shape) == tuple(ref_shape):
        found.append(lambda v: v)
    if len(shape) == 4 and (shape[0], shape[2], shape[3], shape[1]) == tuple(ref_shape):
        found.append(lambda v: v.transpose(0, 2, 3, 1))  # NCHW value, NHWC original
    return found


def _kind_fits(tensor: _TflTensor, value: np.ndarray) -> bool:
    if tensor.kind == "f":
        return value.dtype.kind == "f"
    if tensor.kind == "q":
        return value.dtype.kind == "f" or value.dtype == tensor.dtype
    return value.dtype.kind in "iub"


def _difference(tensor: _TflTensor, reference: np.ndarray, value: np.ndarray, step: float | None) -> np.ndarray:
    """|reference - value| per element, in the units `_units` names."""
    ref, out = reference.astype(np.float64), value.astype(np.float64)
    if tensor.kind == "q":
        if value.dtype.kind == "f":  # a dequantized value: back onto the original's integer grid
            out = out / tensor.scale + tensor.zero_point
        return np.abs(ref - out)
    if tensor.kind == "f" and step:
        return np.abs(ref - out) / step
    if tensor.kind == "f":
        span = float(ref.max() - ref.min()) if ref.size else 0.0
        return np.abs(ref - out) / (span or 1.0)
    return np.abs(ref - out)


def _units(tensor: _TflTensor, step: float | None, steps: float, rel_tol: float) -> tuple[str, float]:
    if tensor.kind == "q":
        return "steps", steps
    if tensor.kind == "f":
        return ("steps (artifact)", steps) if step else ("relative", rel_tol)
    return "absolute", 0.0
