"""Per-tensor mixed precision for INT8 files: which few tensors leave int8, chosen by sensitivity.

Measured on BlazePose (issue 14): INT8 error comes from a few tensors, mostly early weights whose
rounding hurts, not from whole stretches of the graph, and trials over a float *prefix* of the
graph are not even monotone. So every quantized tensor is a knob (a weight, an activation, or a
TFLite op with its weights); each knob's sensitivity is measured on the calibration people alone
(the format's own measure, converters/onnx_int8.py and tflite_int8.py); and the raised set is the
shortest run of the most sensitive knobs, in that order, whose file passes the INT8 gate on those
same people. Knobs whose float weights would take the file below `MIN_INT8_WEIGHT_SHARE` of its
weight bytes in int8 are never floated, and no plan raises more than `MAX_RAISED_TENSORS` of the
knobs: such a file is not an INT8 model, and it is rejected rather than published under that name.

A knob the plan takes out of int8 goes to its `raised` precision, which the format sets from the
recipe's `int8.fallback`: "float" (the default: the CPU runtimes these files are measured on,
XNNPACK and onnxruntime, run float kernels fast and 16-bit activations only on slow reference
paths) or "a16w8" (int16 activations with int8 weights, for accelerators that run those natively
and fall back to the CPU for float, e.g. Qualcomm's HTP). A raised weight is always float.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

MIN_INT8_WEIGHT_SHARE = 0.9  # of the weight bytes, for a file to be published as int8
MAX_RAISED_TENSORS = 0.5  # of the knobs: a plan raising more is not an INT8 model (mostly other kernels)
FLOAT_BYTES = 4


@dataclass
class Knob:
    """One quantized tensor (or TFLite op) the plan may raise out of int8."""
    name: str
    kind: str  # "weight", "activation" or "op"
    params: int  # weight elements kept float when this knob is raised (0 for an activation)
    sensitivity: float = 0.0  # error of the model with this knob alone quantized (format's own measure)
    raised: str = "float"  # its precision when the plan takes it out of int8: float, int16, a16w8, w8-float


@dataclass
class Trial:
    raised: int
    score: float
    passed: bool


@dataclass
class SearchResult:
    path: Path | None
    knobs: list[Knob]
    raised: list[str]
    trials: list[Trial] = field(default_factory=list)
    measure: str = ""  # what `sensitivity` is, in words

    def to_dict(self) -> dict:
        """The manifest's record: the plan, one entry per knob, and the trials that chose it."""
        chosen = set(self.raised)
        return {"plan": {"sensitivity": self.measure,
                         "tensors": {k.name: {"kind": k.kind, "precision": k.raised if k.name in chosen else "int8",
                                              "params": k.params, "sensitivity": float(f"{k.sensitivity:.4g}")}
                                     for k in self.knobs}},
                "raised_tensors": len(self.raised), "trials": [t.__dict__ for t in self.trials]}


def int8_byte_share(total_params: int, float_params: int) -> float:
    """Share of the weight bytes stored as int8 when `float_params` of `total_params` weight
    elements are float32 (4 bytes) and the rest int8 (1 byte)."""
    int8 = total_params - float_params
    return int8 / (int8 + FLOAT_BYTES * float_params) if total_params else 0.0


def candidates(knobs: list[Knob], total_params: int, fixed_float_params: int,
               min_share: float = MIN_INT8_WEIGHT_SHARE) -> list[Knob]:
    """The knobs in the order they are raised: most sensitive first (ties by name, so the order
    is reproducible), leaving out any whose weights would take the file below `min_share`."""
    order, floated = [], fixed_float_params
    for knob in sorted(knobs, key=lambda k: (-k.sensitivity, k.name)):
        if knob.params and int8_byte_share(total_params, floated + knob.params) < min_share:
            continue
        order.append(knob)
        floated += knob.params
    return order


def search(knobs: list[Knob], total_params: int, fixed_float_params: int, build: Callable[[list[str]], Path],
           score: Callable[[Path], float], target: float = 1.0, measure: str = "",
           always_raised: list[str] = ()) -> SearchResult:
    """The shortest run of `candidates` whose file scores >= target.

    `build(raised_names)` writes the file with those knobs raised and returns its path; `score(path)`
    is the INT8 gate's on the calibration people. `always_raised` (knob names: the output heads'
    activations) are raised in every trial. Run lengths 0, 1, 2, 4, ... are tried until one passes,
    then the gap to the last failing length is bisected; the chosen file is built last."""
    always = [k for k in knobs if k.name in set(always_raised)]
    order = candidates([k for k in knobs if k not in always], total_params, fixed_float_params + sum(
        k.params for k in always))
    order = always + order[: max(0, int(MAX_RAISED_TENSORS * len(knobs)) - len(always))]
    trials: list[Trial] = []
    tried: dict[int, bool] = {}

    def passes(n: int) -> bool:
        n += len(always)
        if n not in tried:
            s = score(build([k.name for k in order[:n]]))
            tried[n] = s >= target
            trials.append(Trial(n, round(s, 4), tried[n]))
        return tried[n]

    free = len(order) - len(always)
    lo, n = -1, 0
    while not passes(n):
        lo = n
        if n == free:
            return SearchResult(None, knobs, [], trials, measure)
        n = min(free, max(1, 2 * n))
    while n - lo > 1:
        mid = (lo + n) // 2
        if passes(mid):
            n = mid
        else:
            lo = mid
    raised = [k.name for k in order[:len(always) + n]]
    path = build(raised)  # the chosen file is the last one written
    return SearchResult(path, knobs, raised, trials, measure)
