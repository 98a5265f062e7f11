"""Full-integer TFLite -> ONNX that computes what LiteRT computes, to the int8 step.

Why
---
tf2onnx turns a full-integer (INT8) TFLite model into an ONNX QDQ graph: each integer TFLite op
becomes DequantizeLinear -> float op -> QuantizeLinear. Every op is converted correctly, yet the
arithmetic differs. LiteRT's default CPU kernels (XNNPACK) work in integers: ADD/SUB scale both
operands with 20-bit fixed-point multipliers and round ties up, RESIZE_BILINEAR uses 11-bit
fixed-point weights and rounds ties up, CONV applies a float32 scale to the exact int32
accumulator, and int8->int8 QUANTIZE uses an 8-bit fixed-point multiplier. onnxruntime computes
the dequantized values in float and rounds half to even in QuantizeLinear. The two disagree by
one int8 step on a share of the elements of many ops, and a deep backbone amplifies those steps:
on MoveNet Lightning INT8 the plain conversion agrees with LiteRT to 2% of the input on only
71% of the keypoints of real COCO person crops (and moves some by a quarter of the input),
although no op is mis-converted.

What
----
`quantized_tflite_to_onnx` converts with tf2onnx (opset 17), then rewrites the QDQ patterns whose
integer semantics onnxruntime does not reproduce into small subgraphs of standard ONNX ops that
compute XNNPACK's integer result exactly. Patterns are matched by op structure and
quantization parameters only, never by tensor names:

  conv       DQ(x), DQ(w), DQ(b) -> Conv -> [Relu | Clip]* -> Q
             -> the exact int32 accumulator of (x - zx) and (w - zw) plus the int32 bias, then
             rint(f32(acc) * f32(f32(sx * sw[c]) / sy)) + zy, clamped (the activation folded into
             the clamp). The accumulator runs as a float Conv on integer values when a static
             bound proves every partial sum stays below 2^24 (exact in float32), otherwise as
             ConvInteger (counted under `conv_integer_accumulator`).
  add_sub    DQ(a), DQ(b) -> Add | Sub -> [Relu | Clip]* -> Q
             -> floor(((qa - za) * Ma +- (qb - zb) * Mb + 2^(k-1)) / 2^k) + zo in float64 (exact),
             Ma = lrint(sa / so * 2^k), Mb = lrint(sb / so * 2^k), k = 20 - exponent(max ratio).
  resize     DQ -> Resize(linear) -> Q with equal input and output quantization
             -> Resize on the integer values in float, then floor(x + 0.5); exact when the
             interpolation weights are dyadic (2x, 4x, 8x half-pixel, ...). Other weights are left
             alone and reported.
  requantize DQ(x) -> Q(y) with different parameters (TFLite QUANTIZE int8 -> int8)
             -> floor(((x - zi) * M + 128) / 256) + zo, M = lrint(256 * si / so), in float32 (exact).

The rewritten subgraphs are exact at every onnxruntime optimization level (nothing relies on a
fusion). Quantized ops with no rewrite (Mul, Sigmoid, ... computed in float by onnxruntime,
usually within one step) are counted in the report under `left_alone`, with any matched pattern
that fell outside a rewrite's exactness conditions, so a manifest can say which integer semantics
the artifact reproduces. TFLite ops XNNPACK does not take run in LiteRT's own kernels, whose
rounding can differ again; `tensor_walk` shows where an artifact departs.

Cost: the rewritten graph runs the integer model in float32 and float64 arithmetic, which
onnxruntime does not fuse into its integer kernels: MoveNet Lightning takes 17.6 ms against
7.7 ms for the plain QDQ graph (onnxruntime, one thread; LiteRT itself 4.5 ms on the same CPU).
Weights stay int8 in the file (onnxruntime folds their Cast to float when it loads the model), so
the file is no larger than the plain conversion's. Nodes are ordered depth-first from the outputs
and tensor names are canonical (`tflite_to_onnx.canonicalize`): two conversions give identical
bytes.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .fileio import atomic_path
from .tflite_to_onnx import canonicalize

OPSET = 17
REPRODUCES = "LiteRT default CPU kernels (XNNPACK) integer arithmetic"

# onnx.TensorProto data types (fixed by the ONNX standard; onnx is imported where it is used)
_FLOAT, _UINT8, _INT8, _INT32, _DOUBLE = 1, 2, 3, 6, 11
_QRANGE = {_INT8: (-128, 127), _UINT8: (0, 255)}
_NP_TYPE = {_INT8: np.int8, _UINT8: np.uint8}
_F32_EXACT = 2 ** 24          # integers below this are exact in float32
_ACTIVATIONS = ("Relu", "Clip")
# Ops that only move, select or compare values: exact under QDQ when input and output share
# their quantization (then the integer values pass through unchanged).
_DATA_MOVEMENT = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Concat", "Split",
                  "Slice", "Gather", "GatherND", "GatherElements", "Pad", "MaxPool", "DepthToSpace",
                  "SpaceToDepth", "Tile", "Expand", "ReduceMax", "ReduceMin"}


def quantized_tflite_to_onnx(tflite_path: Path, onnx_path: Path) -> dict:
    """Convert a full-integer TFLite file to ONNX with LiteRT's integer rounding reproduced.

    Returns a small JSON-able report: `rewrites` (pattern -> count), `left_alone` (quantized op
    or unmatched pattern -> count) and `reproduces` (the integer arithmetic the rewrites follow).
    """
    import onnx
    from tf2onnx import convert, utils

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    utils.INTERNAL_NAME = 1  # tf2onnx's name counter; canonicalize makes names stable anyway
    model, _ = convert.from_tflite(str(tflite_path), opset=OPSET)
    model.producer_name, model.producer_version = "tf2onnx", _tf2onnx_version()

    report = _reproduce_integer_semantics(model)
    canonicalize(model)
    onnx.checker.check_model(model)
    with atomic_path(onnx_path) as tmp:
        onnx.save(model, tmp)
    return report


def _reproduce_integer_semantics(model) -> dict:
    """Apply every rewrite to a tf2onnx QDQ model in place; returns the report."""
    graph = _Graph(model)
    rewrites = {"conv": _rewrite_convs(graph), "add_sub": _rewrite_add_sub(graph),
                "resize": _rewrite_resizes(graph), "requantize": _rewrite_requantize(graph)}
    integer_convs = graph.notes.pop("conv_integer", 0)
    if integer_convs:
        rewrites["conv_integer_accumulator"] = integer_convs  # of "conv": ConvInteger, see _rewrite_convs
    return {"reproduces": REPRODUCES, "rewrites": rewrites, "left_alone": dict(sorted(graph.left_alone().items()))}


# --------------------------------------------------------------------------------------------
# Graph access
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Quant:
    """Quantization parameters of a DequantizeLinear / QuantizeLinear node (constants only)."""
    scale: np.ndarray       # float32, 1-D
    zero_point: np.ndarray  # int64, 1-D
    elem_type: int          # onnx.TensorProto data type of the integer tensor
    axis: int

    @property
    def per_tensor(self) -> bool:
        return self.scale.size == 1 and self.zero_point.size == 1

    @property
    def activation(self) -> bool:
        """Per-tensor 8-bit quantization, as every activation of a full-integer TFLite model has."""
        return self.per_tensor and self.elem_type in _QRANGE

    @property
    def s(self) -> np.float32:
        return np.float32(self.scale[0])

    @property
    def z(self) -> int:
        return int(self.zero_point[0])

    @property
    def qrange(self) -> tuple[int, int]:
        return _QRANGE[self.elem_type]



class _Graph:
    """The ONNX graph with producer/consumer maps, constant lookup and batched node replacement."""

    def __init__(self, model):
        import onnx

        self.model, self.graph = model, model.graph
        self.init = {i.name: i for i in self.graph.initializer}
        self.graph_outputs = {o.name for o in self.graph.output}
        inferred = onnx.shape_inference.infer_shapes(model)
        self.shapes = {}
        for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
            dims = v.type.tensor_type.shape.dim
            if all(d.HasField("dim_value") for d in dims):
                self.shapes[v.name] = tuple(d.dim_value for d in dims)
        self.names = {n for node in self.graph.node for n in list(node.input) + list(node.output)} | set(self.init)
        self.counter = 0
        self.notes: Counter = Counter()
        self.skipped: dict[str, str] = {}  # node key -> why a matched pattern was not rewritten
        self._pending: dict[str, list] = {}
        self._removed: set[str] = set()
        self.refresh()

    def refresh(self) -> None:
        self.producer = {o: n for n in self.graph.node for o in n.output if o}
        self.consumers: dict[str, list] = {}
        for n in self.graph.node:
            for i in n.input:
                if i:
                    self.consumers.setdefault(i, []).append(n)

    # constants and quantization parameters
    def const(self, name: str) -> np.ndarray | None:
        from onnx import numpy_helper

        return numpy_helper.to_array(self.init[name]) if name in self.init else None

    def quant(self, node) -> _Quant | None:
        scale = self.const(node.input[1])
        zp_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
        zp = self.const(zp_name) if zp_name else np.zeros((), np.uint8)
        if scale is None or zp is None:
            return None
        elem = {np.dtype(np.int8): _INT8, np.dtype(np.uint8): _UINT8, np.dtype(np.int32): _INT32}.get(zp.dtype)
        if elem is None:
            return None
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        return _Quant(scale.astype(np.float32).reshape(-1), zp.astype(np.int64).reshape(-1), elem, axis)

    def dq_source(self, name: str):
        """The DequantizeLinear node producing `name`, or None."""
        node = self.producer.get(name)
        return node if node is not None and node.op_type == "DequantizeLinear" else None

    def only_consumer(self, name: str):
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in self.graph_outputs else None

    def epilogue(self, node):
        """Relu/Clip nodes after `node` up to the QuantizeLinear that ends the pattern: (chain, q) or None."""
        chain, current = [], node
        while True:
            nxt = self.only_consumer(current.output[0])
            if nxt is None:
                return None
            if nxt.op_type == "QuantizeLinear":
                return chain, nxt
            if nxt.op_type not in _ACTIVATIONS:
                return None
            chain.append(nxt)
            current = nxt

    def clamp(self, chain, q: _Quant) -> tuple[int, int] | None:
        """The integer output range once the activations in `chain` are folded into the clamp."""
        lo, hi = q.qrange
        for node in chain:
            if node.op_type == "Relu":
                lo = max(lo, q.z)
                continue
            for k, pick in ((1, max), (2, min)):
                if len(node.input) > k and node.input[k]:
                    bound = self.const(node.input[k])
                    if bound is None:
                        return None
                    # XNNPACK quantizes a float activation bound as lrintf(bound / scale + zero_point)
                    value = int(np.rint(np.float32(np.float32(bound) / q.s) + np.float32(q.z)))
                    if k == 1:
                        lo = pick(lo, value)
                    else:
                        hi = pick(hi, value)
        return lo, hi

    # building
    def fresh(self, hint: str) -> str:
        while True:
            self.counter += 1
            name = f"intsem_{hint}_{self.counter}"
            if name not in self.names:
                self.names.add(name)
                return name

    def constant(self, value, dtype, hint: str = "c") -> str:
        from onnx import numpy_helper

        name = self.fresh(hint)
        tensor = numpy_helper.from_array(np.asarray(value, dtype=dtype), name)
        self.graph.initializer.append(tensor)
        self.init[name] = tensor
        return name

    def node(self, op: str, inputs: list[str], output: str | None = None, **attrs):
        from onnx import helper

        return helper.make_node(op, inputs, [output or self.fresh(op.lower())], **attrs)

    def zero_point(self, q: _Quant, value: int | None = None) -> str:
        """A scalar zero-point constant of `q`'s integer type (its own zero point by default)."""
        return self.constant(q.z if value is None else value, _NP_TYPE[q.elem_type])

    def to_integer(self, value: str, output: str, q: _Quant, zero_point: int, clamp: tuple[int, int]) -> list:
        """Nodes writing the integer-valued float tensor `value` + `zero_point` to `output` (q's type):
        clamped to `clamp` (output integer units), rounded half to even, saturated by QuantizeLinear."""
        nodes = []
        if tuple(clamp) != q.qrange:
            lo, hi = clamp
            nodes.append(self.node("Clip", [value, self.constant(lo - zero_point, np.float32),
                                            self.constant(hi - zero_point, np.float32)]))
            value = nodes[-1].output[0]
        nodes.append(self.node("QuantizeLinear", [value, self.constant(1.0, np.float32),
                                                  self.zero_point(q, zero_point)], output))
        return nodes

    def replace(self, anchor, removed: list, new: list) -> None:
        """Queue: drop `removed` nodes, insert `new` at the position of `anchor` (one of `removed`)."""
        self._pending[_key(anchor)] = new
        self._removed.update(_key(n) for n in removed)

    def commit(self) -> None:
        """Apply the queued replacements, drop nodes and initializers nothing uses any more."""
        nodes = []
        for n in self.graph.node:
            nodes.extend(self._pending.get(_key(n), []))
            if _key(n) not in self._removed:
                nodes.append(n)
        self._pending, self._removed = {}, set()
        needed = set(self.graph_outputs)
        kept = []
        for n in reversed(nodes):
            if any(o in needed for o in n.output):
                kept.append(n)
                needed.update(i for i in n.input if i)
        kept.reverse()
        self.graph.ClearField("node")
        self.graph.node.extend(kept)
        inits = [i for i in self.graph.initializer if i.name in needed]
        self.graph.ClearField("initializer")
        self.graph.initializer.extend(inits)
        self.init = {i.name: i for i in inits}
        infos = [v for v in self.graph.value_info if v.name in needed]
        self.graph.ClearField("value_info")
        self.graph.value_info.extend(infos)
        self.refresh()

    def left_alone(self) -> Counter:
        """Quantized ops (float math between DequantizeLinear and QuantizeLinear) that no rewrite covered."""
        found: Counter = Counter(self.skipped.values())
        for node in self.graph.node:
            if node.op_type in ("DequantizeLinear", "QuantizeLinear", "Cast") or _key(node) in self.skipped:
                continue
            dqs = [self.dq_source(i) for i in node.input if i]
            qs = [c for o in node.output for c in self.consumers.get(o, []) if c.op_type == "QuantizeLinear"]
            if all(d is None for d in dqs) or not qs:
                continue
            nearest = node.op_type == "Resize" and _attr(node, "mode", b"nearest") == b"nearest"
            if node.op_type in _DATA_MOVEMENT or nearest:
                params = {self._qkey(n) for n in [d for d in dqs if d is not None and d.input[0] not in self.init] + qs}
                if len(params) <= 1:
                    continue
                found[f"{node.op_type} (requantizing)"] += 1
            else:
                found[node.op_type] += 1
        return found

    def _qkey(self, node):
        q = self.quant(node)
        return None if q is None else (tuple(q.scale.tolist()), tuple(q.zero_point.tolist()))


def _key(node) -> str:
    """A node's identity that survives protobuf copies: its first output (graphs are SSA)."""
    return node.output[0]


def _attr(node, name, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _exponent(x: np.float32) -> int:
    """IEEE-754 exponent of a positive normal float32 (floor(log2(x)))."""
    return int(np.frexp(np.float32(x))[1]) - 1


# --------------------------------------------------------------------------------------------
# Rewrites
# --------------------------------------------------------------------------------------------

def _rewrite_convs(g: _Graph) -> int:
    """DQ(x), DQ(w), DQ(b) -> Conv -> [Relu|Clip]* -> Q  ==>  XNNPACK's qs8 convolution."""
    done = 0
    for conv in list(g.graph.node):
        if conv.op_type != "Conv" or len(conv.input) < 2:
            continue
        dq_x, dq_w = g.dq_source(conv.input[0]), g.dq_source(conv.input[1])
        if dq_x is None or dq_w is None:
            continue  # a float convolution
        dq_b = g.dq_source(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
        end = g.epilogue(conv)
        qx, qw = g.quant(dq_x), g.quant(dq_w)
        w = g.const(dq_w.input[0])
        bias = g.const(dq_b.input[0]) if dq_b is not None else None
        why = None
        if end is None:
            why = "Conv: output not (only) requantized"
        elif len(conv.input) > 2 and conv.input[2] and (dq_b is None or bias is None or bias.dtype != np.int32):
            why = "Conv: bias is not a constant int32 tensor"
        elif qx is None or not qx.activation or w is None or qw is None or w.dtype not in (np.int8, np.uint8):
            why = "Conv: input or weights not constant-quantized"
        elif qw.scale.size > 1 and qw.axis != 0:
            why = "Conv: weights quantized along an axis other than the output channels"
        elif qw.zero_point.size > 1 and np.any(qw.zero_point != 0):
            why = "Conv: per-channel weight zero points"
        elif dq_b is not None and not _bias_scale_fits(g.quant(dq_b), qx, qw):
            why = "Conv: bias scale is not input scale x weight scale"
        if why is None:
            chain, q = end
            qy = g.quant(q)
            clamp = g.clamp(chain, qy) if qy is not None and qy.activation else None
            if clamp is None:
                why = "Conv: output quantization or activation not constant"
        if why is not None:
            g.skipped[_key(conv)] = why
            continue

        cout = w.shape[0]
        sw = np.broadcast_to(qw.scale, (cout,)).astype(np.float32)
        b = np.zeros(cout, np.int64) if bias is None else bias.astype(np.int64).reshape(-1)
        zw = int(qw.zero_point[0]) if qw.zero_point.size == 1 else 0  # uint8 models: per-tensor, often != 0
        w_centred = w.astype(np.int64) - zw
        # XNNPACK's per-channel requantization scale, in float32 as it computes it
        scale = ((qx.s * sw).astype(np.float32) / qy.s).astype(np.float32)
        x_span = max(qx.z - qx.qrange[0], qx.qrange[1] - qx.z)
        bound = int((np.abs(w_centred).reshape(cout, -1).sum(1) * x_span + np.abs(b)).max())
        attrs = {a.name: _attr(conv, a.name) for a in conv.attribute}
        nodes = []
        if bound < _F32_EXACT:
            # Every partial sum of integers stays below 2^24: a float32 Conv is exact. (Cast + Sub
            # rather than DequantizeLinear(x, 1, zx): a DequantizeLinear feeding a Conv with float
            # weights invites onnxruntime's QDQ passes to quantize those weights.)
            # Weights and bias stay integers in the file (a quarter of the size of float32) and are
            # cast once: onnxruntime folds a Cast of a constant when it loads the model.
            xf = g.node("Cast", [dq_x.input[0]], to=_FLOAT)
            x = g.node("Sub", [xf.output[0], g.constant(float(qx.z), np.float32)])
            if zw == 0:
                w_int = dq_w.input[0]
            else:
                w_int = g.constant(w_centred, np.int8 if np.abs(w_centred).max() <= 127 else np.int16)
            wf = g.node("Cast", [w_int], to=_FLOAT)
            bf = g.node("Cast", [dq_b.input[0] if bias is not None else g.constant(b, np.int32)], to=_FLOAT)
            acc = g.node("Conv", [x.output[0], wf.output[0], bf.output[0]], **attrs)
            nodes += [xf, x, wf, bf, acc]
            acc_f32 = acc.output[0]
        else:
            # Possibly wide accumulator: integer convolution, then int32 -> float32 as XNNPACK does.
            acc = g.node("ConvInteger", [dq_x.input[0], dq_w.input[0], g.zero_point(qx),
                                         g.constant(zw, w.dtype)], **attrs)
            biased = g.node("Add", [acc.output[0], g.constant(b.reshape(1, -1, 1, 1), np.int32)])
            as_f32 = g.node("Cast", [biased.output[0]], to=_FLOAT)
            nodes += [acc, biased, as_f32]
            acc_f32 = as_f32.output[0]
            g.notes["conv_integer"] += 1
        # f32(acc) * scale, rounded once to float32 as XNNPACK does. A float Mul right after a Conv
        # would be folded into the weights by onnxruntime's ConvMulFusion, which changes the
        # rounding (on MoveNet that alone brings back the plain conversion's disagreement). The
        # Clip to the int32 accumulator's range is a no-op on every reachable value, costs nothing
        # (onnxruntime fuses it into the Conv as its activation) and keeps the Mul out of the
        # Conv: a Mul after a Clip cannot be folded into the weights.
        if acc.op_type == "Conv":
            guard = g.node("Clip", [acc_f32, g.constant(-2.0 ** 31, np.float32), g.constant(2.0 ** 31, np.float32)])
            nodes.append(guard)
            acc_f32 = guard.output[0]
        scaled = g.node("Mul", [acc_f32, g.constant(scale.reshape(1, -1, 1, 1), np.float32)])
        nodes.append(scaled)
        # clamp (XNNPACK clamps before rounding), round half to even (lrintf), add the zero point
        nodes += g.to_integer(scaled.output[0], q.output[0], qy, qy.z, clamp)
        g.replace(conv, [conv, q, *chain], nodes)
        done += 1
    g.commit()
    return done


def _bias_scale_fits(qb: _Quant | None, qx: _Quant, qw: _Quant) -> bool:
    """TFLite's condition for an integer bias: its scale is the input scale times the weight scale
    (to 1e-6 relative); the int32 values are then added to the accumulator as they are."""
    if qb is None or np.any(qb.zero_point != 0):
        return False
    expected = (qx.s.astype(np.float64) * qw.scale.astype(np.float64))
    actual = np.broadcast_to(qb.scale.astype(np.float64), expected.shape)
    return bool(np.all(np.abs(actual - expected) <= 1e-6 * np.minimum(actual, expected)))


def _rewrite_add_sub(g: _Graph) -> int:
    """DQ(a), DQ(b) -> Add|Sub -> [Relu|Clip]* -> Q  ==>  XNNPACK's qs8/qu8 add/subtract."""
    done = 0
    for node in list(g.graph.node):
        if node.op_type not in ("Add", "Sub") or len(node.input) != 2:
            continue
        dqa, dqb = g.dq_source(node.input[0]), g.dq_source(node.input[1])
        if dqa is None or dqb is None:
            continue
        end = g.epilogue(node)
        if end is None:
            continue  # float math on dequantized values, as in the TFLite model
        chain, q = end
        qa, qb, qo = g.quant(dqa), g.quant(dqb), g.quant(q)
        if not all(p is not None and p.activation for p in (qa, qb, qo)):
            g.skipped[_key(node)] = f"{node.op_type}: per-axis or non-constant quantization"
            continue
        ra, rb = np.float32(qa.s / qo.s), np.float32(qb.s / qo.s)
        if not all(2.0 ** -10 <= r < 2.0 ** 8 for r in (ra, rb)):
            g.skipped[_key(node)] = f"{node.op_type}: scale ratio outside XNNPACK's range"
            continue
        clamp = g.clamp(chain, qo)
        if clamp is None:
            g.skipped[_key(node)] = f"{node.op_type}: non-constant activation"
            continue
        shift = 20 - _exponent(max(ra, rb))
        ma = int(np.rint(np.float64(ra) * 2.0 ** shift))  # lrintf of an exactly scaled float
        mb = int(np.rint(np.float64(rb) * 2.0 ** shift))
        if node.op_type == "Sub":
            mb = -mb
        # floor((acc + 2^(k-1)) / 2^k) + zo == floor((acc + 2^(k-1) + zo * 2^k) / 2^k): fold all offsets
        offset = 2 ** (shift - 1) - qa.z * ma - qb.z * mb + qo.z * 2 ** shift
        nodes, terms = [], []
        for dq, mult in ((dqa, ma), (dqb, mb)):
            wide = g.node("Cast", [dq.input[0]], to=_DOUBLE)
            term = g.node("Mul", [wide.output[0], g.constant(float(mult), np.float64)])
            nodes += [wide, term]
            terms.append(term.output[0])
        acc = g.node("Add", terms)
        biased = g.node("Add", [acc.output[0], g.constant(float(offset), np.float64)])
        shifted = g.node("Mul", [biased.output[0], g.constant(2.0 ** -shift, np.float64)])
        floor = g.node("Floor", [shifted.output[0]])
        narrow = g.node("Cast", [floor.output[0]], to=_FLOAT)
        nodes += [acc, biased, shifted, floor, narrow]
        nodes += g.to_integer(narrow.output[0], q.output[0], qo, 0, clamp)
        g.replace(node, [node, q, *chain], nodes)
        done += 1
    g.commit()
    return done


def _linear_weights(n_in: int, n_out: int, scale: Fraction, mode: str) -> list[Fraction] | None:
    """The 1-D linear interpolation weights onnxruntime uses for one resized axis, exactly."""
    weights = []
    for i in range(n_out):
        if mode == "half_pixel" or (mode == "pytorch_half_pixel" and n_out > 1):
            x = (Fraction(2 * i + 1, 2)) / scale - Fraction(1, 2)
        elif mode == "pytorch_half_pixel":
            x = Fraction(0)
        elif mode == "asymmetric":
            x = Fraction(i) / scale
        elif mode == "align_corners":
            x = Fraction(i * (n_in - 1), n_out - 1) if n_out > 1 else Fraction(0)
        else:
            return None
        x = min(max(x, Fraction(0)), Fraction(n_in - 1))
        weights.append(x - (x.numerator // x.denominator))
    return weights


def _rewrite_resizes(g: _Graph) -> int:
    """DQ -> Resize(linear) -> Q, equal quantization  ==>  XNNPACK's s8/u8 bilinear (ties up)."""
    done = 0
    for node in list(g.graph.node):
        if node.op_type != "Resize" or _attr(node, "mode", b"nearest") != b"linear":
            continue
        dq = g.dq_source(node.input[0])
        end = g.epilogue(node) if dq is not None else None
        if end is None or end[0]:
            continue
        q = end[1]
        qi, qo = g.quant(dq), g.quant(q)
        why = None
        if qi is None or qo is None or not qi.activation or (qi.s, qi.z, qi.elem_type) != (qo.s, qo.z, qo.elem_type):
            why = "Resize(linear): input and output quantization differ"
        elif not _dyadic_resize(g, node):
            why = "Resize(linear): interpolation weights not dyadic"
        if why is not None:
            g.skipped[_key(node)] = why
            continue
        as_float = g.node("Cast", [dq.input[0]], to=_FLOAT)
        attrs = {a.name: _attr(node, a.name) for a in node.attribute}
        resized = g.node("Resize", [as_float.output[0], *node.input[1:]], **attrs)
        half_up = g.node("Add", [resized.output[0], g.constant(0.5, np.float32)])
        floor = g.node("Floor", [half_up.output[0]])
        nodes = [as_float, resized, half_up, floor]
        nodes += g.to_integer(floor.output[0], q.output[0], qo, 0, qo.qrange)
        g.replace(node, [node, q], nodes)
        done += 1
    g.commit()
    return done


def _dyadic_resize(g: _Graph, node) -> bool:
    """True when every interpolation weight is a multiple of 2^-7: then XNNPACK's 11-bit weights
    are exact and onnxruntime's float32 sums of weighted int8 values (< 2^24) are exact too."""
    mode = _attr(node, "coordinate_transformation_mode", b"half_pixel").decode()
    shape_in = g.shapes.get(node.input[0]) or g.shapes.get(g.dq_source(node.input[0]).input[0])
    scales = g.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    sizes = g.const(node.input[3]) if len(node.input) > 3 and node.input[3] else None
    if shape_in is None or (scales is None or scales.size == 0) and sizes is None:
        return False
    for axis, n_in in enumerate(shape_in):
        if sizes is not None and sizes.size:
            n_out, scale = int(sizes[axis]), Fraction(int(sizes[axis]), n_in)
        else:
            scale = Fraction(float(np.float32(scales[axis])))
            n_out = int(np.floor(n_in * float(scales[axis])))
        if n_out == n_in and scale == 1:
            continue
        weights = _linear_weights(n_in, n_out, scale, mode)
        if weights is None or any((w * 128).denominator != 1 for w in weights):
            return False
    return True


def _rewrite_requantize(g: _Graph) -> int:
    """DQ(x) -> Q(y) with different parameters  ==>  XNNPACK's qs8/qu8 convert (8-bit multiplier)."""
    done = 0
    for q in list(g.graph.node):
        if q.op_type != "QuantizeLinear":
            continue
        dq = g.dq_source(q.input[0])
        if dq is None:
            continue
        qi, qo = g.quant(dq), g.quant(q)
        if qi is None or qo is None or not (qi.activation and qo.activation):
            g.skipped[_key(q)] = "requantize: per-axis or non-constant quantization"
            continue
        if (qi.s, qi.z, qi.elem_type) == (qo.s, qo.z, qo.elem_type):
            continue  # an identity: exact as it is
        ratio = np.float32(qi.s / qo.s)
        if qi.elem_type != qo.elem_type or not 2.0 ** -8 <= ratio <= 2.0 ** 7:
            g.skipped[_key(q)] = "requantize: outside XNNPACK's convert (type change or scale ratio)"
            continue
        mult = int(np.rint(np.float64(ratio) * 256.0))  # lrintf(256 * ratio), in [1, 2^15]
        # x * M + (128 + 256 * zo - zi * M): every value stays below 2^24, float32 is exact
        as_float = g.node("Cast", [dq.input[0]], to=_FLOAT)
        scaled = g.node("Mul", [as_float.output[0], g.constant(float(mult), np.float32)])
        biased = g.node("Add", [scaled.output[0], g.constant(128.0 + 256.0 * qo.z - qi.z * mult, np.float32)])
        shifted = g.node("Mul", [biased.output[0], g.constant(1.0 / 256.0, np.float32)])
        floor = g.node("Floor", [shifted.output[0]])
        nodes = [as_float, scaled, biased, shifted, floor]
        nodes += g.to_integer(floor.output[0], q.output[0], qo, 0, qo.qrange)
        g.replace(q, [q], nodes)
        done += 1
    g.commit()
    return done


def _tf2onnx_version() -> str:
    from importlib.metadata import version

    return version("tf2onnx")
