"""SavedModel -> INT8 TFLite with Google's ai-edge-quantizer, and the per-op mixed precision of
converters/mixed_precision.py on it.

The float model is TFLiteConverter's conversion of onnx2tf's SavedModel (its signature is what the
quantizer calibrates through). It is calibrated once, on the calibration people; every op is a
knob: int8 (static: int8 per-channel weights, int8 activations, integer kernels; the model's input
and outputs stay float32, quantized inside the file) or, where a plan raises it, weight-only
("w8-float": its int8 weights dequantized into a float kernel, activations float; float if it has
no weights) or, under the a16w8 fallback, int16 activations with its int8 weights (not the op
writing a graph output, whose int16 would reach the caller). No raised op gives up a weight byte.
The output heads are always raised, for the reason given in `onnx_int8.output_head_nodes`. A plan is a recipe applied to that one calibration, so a
plan gives the same bytes every time, and a trial costs a fraction of a second.

Weights are int8 per output channel, except a convolution's with fewer than `PER_TENSOR_BELOW`
weights per output channel (squeeze-excitation's expanding 1x1 convolutions: 4-10 inputs): one
scale for the whole tensor. A TFLite per-channel weight stores a float32 scale and an int64 zero
point per channel, and its bias a second pair, 24 bytes per channel against those 4-10 bytes of
weights; on EfficientPose RT these tables were 70 kB of a 757 kB INT8 file (issue 14). Depthwise
filters (9 or 25 weights) keep per-channel scales: their channels' ranges differ the most, the
classic per-tensor failure (MobileNet). Weights whose rounding was learned (`learned_grid`,
converters/learned_rounding.py) all keep the per-channel grid they were learned on: on BlazePose
Lite one scale for its 19 such convolutions (1x1, 8 or 12 inputs) rounded their learned weights
again, and since a raised op keeps its int8 weights no plan won that back: the all-int8 file (heads
float) fell from PCK@0.05 0.855 to 0.580 on the gate people, and the search read at most 0.54 of
its bound with 64 of 129 ops raised (issue 14).

Activation ranges are converters/activation_ranges.py's (least int8 round-trip error over all
calibration inputs), not the quantizer's own calibration: that keeps a moving average (0.95) of
each input's min/max, so a range depended on the order of the inputs: ours are the calibration
people and then their robustness crops, transform after transform, and the ranges were mostly
those of the last transforms' crops. On BlazePose Lite's learned model the search found no plan
within half the ops on those ranges; on least-error ones it raised 40 of 129 (gate people PCK@0.05
0.988, robustness 0.961), on global min/max 50 (issue 14).
"""
from __future__ import annotations

import contextlib
import io
import re
import warnings
from pathlib import Path

import numpy as np

from . import quiet
from .activation_ranges import least_error_ranges
from .fileio import atomic_path
from .mixed_precision import Knob
from .tflite_names import name_outputs

PASS_THROUGH_OPS = {"RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS", "LOGISTIC", "RELU", "RELU6"}
PER_TENSOR_BELOW = 16  # weights per output channel under which a convolution's weights take one scale
PER_TENSOR_OPS = {"CONV_2D", "FULLY_CONNECTED"}  # not DEPTHWISE_CONV_2D (see the module's docstring)
ACTIVATIONS = "int8 (asymmetric, per tensor)"
WEIGHTS = (f"int8 symmetric, per output channel; per tensor for convolutions with fewer than {PER_TENSOR_BELOW} "
           "weights per output channel (squeeze-excitation), whose per-channel tables would outweigh them")
LEARNED_WEIGHTS = "int8 symmetric, per output channel (the grid their rounding was learned on)"


class Int8Quantizer:
    """One float model calibrated once; `quantize(raised_ops)` gives the INT8 file of a plan."""

    def __init__(self, saved_model: Path, calibration: list[np.ndarray], output_names: list[str],
                 fallback: str = "float", learned_grid: bool = False):
        import tensorflow as tf
        from ai_edge_litert.interpreter import Interpreter
        from ai_edge_quantizer import quantizer, recipe

        if not calibration:
            raise ValueError("INT8 quantization needs at least one calibration input")
        self.float_model = tf.lite.TFLiteConverter.from_saved_model(str(saved_model)).convert()
        self.output_names = list(output_names)
        self.interpreter = Interpreter(model_content=self.float_model)
        self.signature, = self.interpreter.get_signature_list()
        self.input_name, = self.interpreter.get_signature_list()[self.signature]["inputs"]
        self.calibration = calibration
        self.fallback = fallback
        self.weighted = self._ops_with_weights()
        self.per_tensor = set() if learned_grid else self._ops_with_few_weights_per_channel()
        self.graph_outputs = {t["name"] for t in self.interpreter.get_output_details()}
        calibrating = quantizer.Quantizer(self.float_model)
        calibrating.load_quantization_recipe(recipe.static_wi8_ai8())
        with _quiet_progress():
            calibrated = calibrating.calibrate({self.signature: [self._feed(x) for x in calibration]})
        self.ranges = self._clipped_ranges(calibrated)

    def _clipped_ranges(self, calibrated: dict) -> dict:
        """`calibrated` (the quantizer's QSVs) with each float activation's min/max chosen by
        converters/activation_ranges.py over all calibration inputs."""
        ranges = dict(calibrated)
        for name, (low, high) in least_error_ranges(self._every_activation(set(calibrated))).items():
            qsv = calibrated[name]
            ranges[name] = {**qsv, "min": np.full_like(np.asarray(qsv["min"], np.float32), low),
                            "max": np.full_like(np.asarray(qsv["max"], np.float32), high)}
        return ranges

    def _every_activation(self, names: set[str]):
        """Per calibration input: (the input, {name: values}) of the float activations in `names`."""
        from ai_edge_litert.interpreter import Interpreter

        with warnings.catch_warnings():  # "for debugging purposes only": it is what reading every tensor takes
            warnings.simplefilter("ignore", UserWarning)
            interpreter = Interpreter(model_content=self.float_model, experimental_preserve_all_tensors=True)
        interpreter.allocate_tensors()
        source = interpreter.get_input_details()[0]["index"]
        tensors = [t for t in self.interpreter.get_tensor_details() if t["name"] in names
                   and t["dtype"] == np.float32 and not self._is_constant(t["index"])]
        for x in self.calibration:
            feed = self._feed(x)[self.input_name]
            interpreter.set_tensor(source, feed)
            interpreter.invoke()
            yield feed, {t["name"]: interpreter.get_tensor(t["index"]) for t in tensors}

    def _feed(self, x: np.ndarray) -> dict:
        return {self.input_name: x if np.issubdtype(x.dtype, np.integer) else x.astype(np.float32)}

    def knobs(self) -> tuple[list[Knob], list[str]]:
        """One knob per op, named by its output tensor (how the quantizer's recipes address ops),
        and the output heads: each output's producers back through reshapes and activations to
        the first computing op. A floated op keeps its weights int8, so no knob costs weight bytes."""
        ops = self.interpreter._get_ops_details()
        name = {t["index"]: t["name"] for t in self.interpreter.get_tensor_details()}
        producer = {t: op for op in ops for t in op["outputs"]}
        heads: list[str] = []
        for output in self.interpreter.get_output_details():
            op = producer.get(output["index"])
            while op is not None:
                heads.extend(name[t] for t in op["outputs"][:1] if name[t] not in heads)
                if op["op_name"] not in PASS_THROUGH_OPS or len(op["inputs"]) == 0:
                    break
                op = producer.get(op["inputs"][0])
        return [Knob(name[op["outputs"][0]], "op", 0, raised=self._raised(name[op["outputs"][0]]))
                for op in ops if len(op["outputs"])], heads

    def _raised(self, op: str) -> str:
        """The precision of `op` when a plan raises it (the op writing a graph output is never
        a16w8: its int16 would reach the caller)."""
        if self.fallback == "a16w8" and op not in self.graph_outputs:
            return "a16w8"
        return "w8-float" if op in self.weighted else "float"

    def _ops_with_weights(self) -> set[str]:
        """The ops (by output name) that read a constant tensor of 2+ dimensions."""
        name = {t["index"]: t["name"] for t in self.interpreter.get_tensor_details()}
        constants = {t["index"] for t in self.interpreter.get_tensor_details()
                     if len(t["shape"]) >= 2 and self._is_constant(t["index"])}
        return {name[op["outputs"][0]] for op in self.interpreter._get_ops_details()
                if len(op["outputs"]) and constants & set(op["inputs"])}

    def _ops_with_few_weights_per_channel(self) -> set[str]:
        """The ops (by output name) whose weights are quantized per tensor (see the module's docstring)."""
        details = {t["index"]: t for t in self.interpreter.get_tensor_details()}
        few = set()
        for op in self.interpreter._get_ops_details():
            if op["op_name"] in PER_TENSOR_OPS and len(op["inputs"]) > 1 and self._is_constant(op["inputs"][1]):
                shape = details[op["inputs"][1]]["shape"]  # output channels first
                if shape[0] and int(np.prod(shape)) // int(shape[0]) < PER_TENSOR_BELOW:
                    few.add(details[op["outputs"][0]]["name"])
        return few

    def _granularity(self, op: str):
        from ai_edge_quantizer import qtyping

        return (qtyping.QuantGranularity.TENSORWISE if op in self.per_tensor
                else qtyping.QuantGranularity.CHANNELWISE)

    def _is_constant(self, index: int) -> bool:
        try:
            self.interpreter.get_tensor(index)
            return True
        except ValueError:  # a tensor computed at run time has no data before invoke
            return False

    def quantize(self, raised_ops: list[str]) -> bytes:
        """The INT8 model with `raised_ops` at the fallback precision (see the module's docstring)."""
        from ai_edge_quantizer import recipe

        plan = self._plan(recipe.static_wi8_ai8())
        for op in sorted(self.per_tensor):
            plan.add_static_config(_exactly(op), "*", 8, 8, weight_granularity=self._granularity(op))
        for op in raised_ops:
            if self._raised(op) == "a16w8":
                plan.add_static_config(_exactly(op), "*", 16, 8, weight_granularity=self._granularity(op))
            else:
                self._float(plan, op)
        return self._quantized(plan)

    def quantize_alone(self, op: str | None) -> bytes:
        """The model with `op` alone static int8 and every other op in float kernels on int8
        weights (weight-only); `op` None: no op int8 (what each op's sensitivity adds to)."""
        from ai_edge_quantizer import recipe

        plan = self._plan(recipe.weight_only_wi8_afp32())
        for weighted in sorted(self.per_tensor):  # weight-only like every other op, on their one scale
            self._float(plan, weighted)
        if op is not None:
            plan.add_static_config(_exactly(op), "*", 8, 8, weight_granularity=self._granularity(op))
        return self._quantized(plan)

    def _plan(self, base):
        from ai_edge_quantizer import quantizer

        plan = quantizer.Quantizer(self.float_model)
        plan.load_quantization_recipe(base)
        return plan

    def _float(self, plan, op: str) -> None:
        """`op` in a float kernel: weight-only (int8 weights) where it has weights, else not quantized."""
        from ai_edge_quantizer.algorithm_manager import AlgorithmName

        if op in self.weighted:
            plan.add_weight_only_config(_exactly(op), "*", 8, granularity=self._granularity(op))
        else:
            plan.update_quantization_recipe(_exactly(op), "*", algorithm_key=AlgorithmName.NO_QUANTIZE)

    def _quantized(self, plan) -> bytes:
        """The plan's model, its input and outputs float32 whatever the op configs say (the quantizer
        applies the last matching config, so this comes last): LiteRT.js (the web page) cannot feed
        an int8 input, and float I/O is what every runtime feeds the FP32 file."""
        from ai_edge_quantizer.algorithm_manager import AlgorithmName

        for io in ("INPUT", "OUTPUT"):
            plan.update_quantization_recipe(".*", io, algorithm_key=AlgorithmName.NO_QUANTIZE)
        with _quiet_progress():
            return bytes(plan.quantize(self.ranges, enable_progress_bar=False, enable_progress_report=False)
                         .quantized_model)

    def write(self, raised_ops: list[str], path: Path) -> Path:
        with atomic_path(path) as tmp:
            tmp.write_bytes(self.quantize(raised_ops))
        return name_outputs(path, self.output_names)

    def measure_sensitivity(self, knobs: list[Knob], people: int, output: str) -> str:
        """Set each knob's sensitivity: the noise-to-signal ratio of `output` (the decoder's
        tensor) with that op alone static int8 (every other op weight-only), against the float
        model, over the first `people` calibration inputs. Returns the measure in words.

        Each model runs through its graph outputs, not its signature: quantizing one op alone can
        leave the signature pointing at a tensor the quantizer replaced (EfficientPose RT)."""
        from ai_edge_litert.interpreter import Interpreter

        feeds = [self._feed(x)[self.input_name] for x in self.calibration[:people]]
        index = self.interpreter._get_full_signature_list()[self.signature]["outputs"][self._output_key(output)]
        position = [d["index"] for d in self.interpreter.get_output_details()].index(index)
        expected = [y.astype(np.float64) for y in _run(Interpreter(model_content=self.float_model), feeds, position)]
        signal = sum(float(np.sum(y ** 2)) for y in expected) or 1.0
        baseline = self.quantize_alone(None)
        for knob in knobs:
            model = self.quantize_alone(knob.name)
            if model == baseline:  # an op the quantizer does not quantize
                continue
            got = _run(Interpreter(model_content=model), feeds, position)
            knob.sensitivity = sum(float(np.sum((g.astype(np.float64) - y) ** 2))
                                   for g, y in zip(got, expected)) / signal
        return (f"noise-to-signal ratio of {output!r} with that op alone int8 (every other op int8 weights in float "
                f"kernels), against the float model, on {len(feeds)} calibration people")

    def _output_key(self, output: str) -> str:
        """The signature key of the model output `output` (TFLiteConverter keys onnx2tf's outputs
        `output_<i>`, i its position among the ONNX outputs; see converters/tflite_names.py)."""
        keys = self.interpreter.get_signature_list()[self.signature]["outputs"]
        by_position = f"output_{self.output_names.index(output)}"
        if by_position in keys:
            return by_position
        letters = re.sub(r"[^A-Za-z0-9]", "", output)
        return next((k for k in keys if re.sub(r"[^A-Za-z0-9]", "", k) == letters), keys[0])


def _run(interpreter, feeds: list[np.ndarray], position: int) -> list[np.ndarray]:
    """The graph output at `position` (float32: the quantizer keeps the model's outputs float) on each input."""
    interpreter.allocate_tensors()
    (source,), output = interpreter.get_input_details(), interpreter.get_output_details()[position]
    got = []
    for x in feeds:
        interpreter.set_tensor(source["index"], x)
        interpreter.invoke()
        got.append(np.array(interpreter.get_tensor(output["index"])))
    return got


def _exactly(name: str) -> str:
    """The quantizer's regex for the op whose (first) output is `name`: it matches recipes against
    the op's output names, each followed by `;`."""
    return f"^{re.escape(name)};"


@contextlib.contextmanager
def _quiet_progress():
    """The quantizer's calibration draws a progress bar it has no switch for: hidden unless --verbose."""
    if quiet.verbose():
        yield
        return
    with contextlib.redirect_stderr(io.StringIO()):
        yield
