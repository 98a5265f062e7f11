"""ONNX FP32 -> INT8 static QDQ (per-channel int8 weights, uint8 activations) with onnxruntime,
and the per-tensor mixed precision of converters/mixed_precision.py on it.

Activations are uint8 (asymmetric: the same 256 steps over the calibrated range as int8 with its
zero point moved by 128), because onnxruntime's x86 CPU kernels are u8 x s8: it fuses a u8
Q/DQ Conv into QLinearConv, where with int8 activations it left most convolutions as float
Conv between DequantizeLinear and QuantizeLinear. Measured on EfficientPose RT (issue 14, 1
thread, AVX-512 VNNI): the published plan's file with int8 activations ran in 2.3x the FP32
file's time (50 of 73 Conv unfused), with uint8 ones in 1.1-1.2x (its 10 float activations keep
7 Conv float); an all-int8 file with uint8 activations in 0.87x (all 73 QLinearConv).

The weights use 7 of their 8 bits (integers in [-64, 64], onnxruntime's `reduce_range`). On x86
CPUs without VNNI (AVX2, AVX-512F), onnxruntime's int8 convolutions multiply u8 activations by s8
weights with VPMADDUBSW, which adds pairs of products into saturating 16-bit sums: 2 x 255 x 127
overflows them, 2 x 255 x 64 cannot. Measured on EfficientPose I-Lite (issue 14): one QDQ file with
full-range weights scores PCK@0.05 0.998 on the gate people when onnxruntime runs its Q/DQ pairs
as written and 0.923 on its fused int8 kernels of an AVX2 CPU; with 7-bit weights, 0.993 on the
fused kernels. Phones (Arm) and VNNI CPUs do not saturate, but a file must hold wherever it runs.

Calibrated once on real preprocessed inputs (`onnx_to_int8`: activation ranges by
converters/activation_ranges.py unless the recipe names one of onnxruntime's calibrators; the
output heads stay float, see `output_head_nodes`). Every other quantized tensor is a knob: a
weight (its int8 initializer and DequantizeLinear) or an activation (its QuantizeLinear/
DequantizeLinear pair). A plan keeps some knobs float by editing that one QDQ graph
(`with_float`): a float weight is the FP32 model's own tensor, a float activation skips its Q/DQ
pair, an int16 activation (the a16w8 fallback) gets a 16-bit pair over the same calibrated range;
nothing is re-calibrated, so a plan and the calibration give the same bytes every time.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .activation_ranges import least_error_ranges
from .fileio import atomic_path
from .mixed_precision import Knob

METHODS = ("mse", "minmax", "percentile", "entropy")  # mse: converters/activation_ranges.py; the rest onnxruntime's
WEIGHTS = ("int8 per-channel (symmetric), 7-bit range [-64, 64] (onnxruntime's reduce_range: its x86 "
           "u8 x s8 kernels cannot saturate on CPUs without VNNI)")
ACTIVATIONS = "uint8 (asymmetric, per tensor: onnxruntime's u8 x s8 kernels)"


PASS_THROUGH = {"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Sigmoid", "Relu", "Clip"}


def output_head_nodes(onnx_path: Path) -> list[str]:
    """Nodes that compute the graph outputs: each output's producer chain back through reshapes
    and activations, up to and including the first computing node (the head's Conv/Gemm).

    A regression head's output often packs values of very different ranges in one tensor
    (BlazePose: x, y in pixels next to visibility logits), and one per-tensor INT8 scale for
    all of them ruins the coordinates: on BlazePose Heavy, quantizing that single Conv alone
    drops PCK@0.05 from 1.0 to 0.64. These nodes' outputs stay float; their weights (a fifth of
    BlazePose Lite's) are int8 like any other."""
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    producer = {out: node for node in graph.node for out in node.output}
    heads: list[str] = []
    for output in graph.output:
        node = producer.get(output.name)
        while node is not None:
            if node.name not in heads:
                heads.append(node.name)
            if node.op_type not in PASS_THROUGH:
                break
            node = producer.get(node.input[0])
    return heads


def onnx_to_int8(onnx_in: Path, onnx_out: Path, calibration: list[dict[str, np.ndarray]],
                 method: str = "mse", float_nodes: list[str] = ()) -> Path:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r} (known: {METHODS})")
    if not calibration:
        raise ValueError("INT8 quantization needs at least one calibration input")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(calibration)

        def get_next(self):
            return next(self._it, None)

    calib_method = {"mse": CalibrationMethod.MinMax, "minmax": CalibrationMethod.MinMax,
                    "percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy}[method]
    chosen = least_error_ranges(every_activation(onnx_in, calibration)) if method == "mse" else {}
    overrides = {name: [{"rmin": np.float32(low), "rmax": np.float32(high)}] for name, (low, high) in chosen.items()}
    with atomic_path(onnx_out) as tmp:
        quantize_static(str(onnx_in), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=calib_method, nodes_to_exclude=list(float_nodes),
                        # Relu/Clip stay in the graph (onnxruntime fuses them at load time anyway), so
                        # a plan that keeps their tensor float still clips (with_float).
                        extra_options={"QDQKeepRemovableActivations": True,
                                       "ActivationSymmetric": False, "WeightSymmetric": True,
                                       "CalibPercentile": 99.999, "CalibTensorRangeSymmetric": False,
                                       "TensorQuantOverrides": overrides})
    return onnx_out


def every_activation(onnx_path: Path, calibration: list[dict[str, np.ndarray]]):
    """Per calibration input: (its first input, {name: values}) of every float tensor the model
    reads or computes (the graph's inputs and its nodes' outputs, read as graph outputs)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(onnx_path))
    listed = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for node in model.graph.node
                              for name in node.output if name and name not in listed)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    for feed in calibration:
        values = dict(zip(names, session.run(None, feed)))
        yield next(iter(feed.values())), {name: v for name, v in {**feed, **values}.items()
                                          if isinstance(v, np.ndarray) and v.dtype == np.float32}


QUANTIZED_SUFFIX = "_quantized"  # onnxruntime's name for a weight's int8 initializer: <float name>_quantized


def qdq_knobs(qdq, fp32) -> tuple[list[Knob], dict[str, np.ndarray]]:
    """The knobs of a QDQ model (onnx ModelProtos) and the FP32 weights a float plan puts back
    ({weight knob name: array}). A weight knob is named after the FP32 initializer, an activation
    knob after the float tensor its QuantizeLinear reads."""
    from onnx import numpy_helper

    float_inits = {i.name: i for i in fp32.graph.initializer}
    int8_inits = {i.name: i for i in qdq.graph.initializer if i.data_type == 3 and len(i.dims) >= 2}
    knobs, weights = [], {}
    for node in qdq.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in int8_inits:
            name = node.input[0].removesuffix(QUANTIZED_SUFFIX)
            if name not in float_inits:
                raise ValueError(f"{node.input[0]}: no FP32 weight {name!r} to keep float (onnxruntime's naming changed?)")
            weights[name] = numpy_helper.to_array(float_inits[name])
            knobs.append(Knob(name, "weight", int(weights[name].size)))
        elif node.op_type == "QuantizeLinear":
            knobs.append(Knob(node.input[0], "activation", 0))
    return knobs, weights


def weight_params(model) -> tuple[int, int]:
    """(all weight elements, those stored float) of an ONNX model: constant tensors of 2+
    dimensions, as posezoo.converters.complexity's int8 weight share counts them."""
    total = floating = 0
    for init in model.graph.initializer:
        if len(init.dims) >= 2:
            n = int(np.prod(init.dims))
            total += n
            floating += n if init.data_type != 3 else 0
    return total, floating


def with_float(qdq, weights: dict[str, np.ndarray], names, int16=()) -> "onnx.ModelProto":  # noqa: F821
    """A copy of the QDQ model with the knobs `names` float and the activations `int16` in 16 bits
    (see the module's docstring)."""
    import onnx
    from onnx import numpy_helper

    names = set(names)
    model = onnx.ModelProto()
    model.CopyFrom(qdq)
    graph = model.graph
    if int16:
        _to_int16(graph, set(int16))
        if not any(o.domain == CONTRIB_DOMAIN for o in model.opset_import):
            model.opset_import.append(onnx.helper.make_opsetid(CONTRIB_DOMAIN, 1))
    rename: dict[str, str] = {}  # a dropped DequantizeLinear's output -> the float tensor it stands for
    dropped = []
    dequantizers: dict[str, list] = {}
    for node in graph.node:
        if node.op_type == "DequantizeLinear":
            dequantizers.setdefault(node.input[0], []).append(node)
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0].removesuffix(QUANTIZED_SUFFIX) in names \
                and node.input[0].endswith(QUANTIZED_SUFFIX):
            weight = node.input[0].removesuffix(QUANTIZED_SUFFIX)  # float again, under its FP32 name
            graph.initializer.append(numpy_helper.from_array(weights[weight], weight))
            rename[node.output[0]] = weight
            dropped.append(node)
        elif node.op_type == "QuantizeLinear" and node.input[0] in names:
            dropped.append(node)
            for dq in dequantizers.get(node.output[0], []):
                rename[dq.output[0]] = node.input[0]
                dropped.append(dq)
    for node in dropped:
        graph.node.remove(node)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    for output in graph.output:  # an output behind a skipped pair keeps its name
        if output.name in rename:
            graph.node.append(onnx.helper.make_node("Identity", [rename[output.name]], [output.name]))
    used = {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    return model


def compact_names(model) -> "onnx.ModelProto":  # noqa: F821
    """A copy of the QDQ model with its Q/DQ scaffolding named briefly: the Q/DQ nodes unnamed,
    their outputs and their scale and zero-point initializers `q<k>`. onnxruntime names them after
    the tensor they quantize (`<tensor>_QuantizeLinear_Output`, `<tensor>_scale`, ...): named
    briefly, EfficientPose RT's INT8 file is 0.10 MB smaller (0.77 -> 0.67 MB), and no runtime
    reads those names. The compute nodes, the float tensors (what a plan names) and the int8
    weights (`<weight>_quantized`) keep their names."""
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    outer = {v.name for v in list(graph.input) + list(graph.output)}
    taken = outer | {n for node in graph.node for n in list(node.input) + list(node.output)} | {
        i.name for i in graph.initializer}
    rename: dict[str, str] = {}

    def short(name: str) -> str:
        if name and name not in outer and name not in rename:
            new = f"q{len(rename)}"
            while new in taken:
                new = "_" + new
            rename[name] = new
        return rename.get(name, name)

    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            node.name = ""
            node.output[0] = short(node.output[0])
            for k in range(1, len(node.input)):  # scale, zero point
                node.input[k] = short(node.input[k])
    for node in graph.node:
        for k, name in enumerate(node.input):
            node.input[k] = rename.get(name, name)
    for init in graph.initializer:
        init.name = rename.get(init.name, init.name)
    for info in graph.value_info:
        info.name = rename.get(info.name, info.name)
    return model


CONTRIB_DOMAIN = "com.microsoft"  # onnxruntime's QuantizeLinear/DequantizeLinear with int16 before opset 21


def _to_int16(graph, names: set[str]) -> None:
    """Give the activations `names` int16 Q/DQ pairs over the range of their 8-bit pair: scale
    range / 65535, the zero point placing the range's low end at -32768 (onnxruntime's contrib
    ops, which run 16-bit Q/DQ at the models' opset)."""
    from onnx import numpy_helper

    inits = {i.name: i for i in graph.initializer}
    pairs = {node.output[0]: node for node in graph.node if node.op_type == "QuantizeLinear" and node.input[0] in names}
    for quantize in pairs.values():
        scale = float(numpy_helper.to_array(inits[quantize.input[1]]))
        zero = numpy_helper.to_array(inits[quantize.input[2]])
        steps = np.iinfo(zero.dtype)
        low, high = (steps.min - int(zero)) * scale, (steps.max - int(zero)) * scale
        scale16 = (high - low) / 65535
        zero16 = int(np.clip(np.round(-32768 - low / scale16), -32768, 32767))
        prefix = quantize.input[0] + "_int16"
        graph.initializer.extend([numpy_helper.from_array(np.array(scale16, np.float32), prefix + "_scale"),
                                  numpy_helper.from_array(np.array(zero16, np.int16), prefix + "_zero_point")])
        quantize.input[1], quantize.input[2] = prefix + "_scale", prefix + "_zero_point"
        quantize.domain = CONTRIB_DOMAIN
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in pairs:
            node.input[1], node.input[2] = pairs[node.input[0]].input[1], pairs[node.input[0]].input[2]
            node.domain = CONTRIB_DOMAIN


def measure_sensitivity(qdq, weights: dict[str, np.ndarray], knobs: list[Knob], fp32_path: Path,
                        feeds: list[dict[str, np.ndarray]], output: str) -> str:
    """Set each knob's sensitivity: the noise-to-signal ratio of `output` (the decoder's tensor)
    when that knob alone is quantized and everything else is float, against the FP32 model, over
    `feeds` (calibration people). Returns the measure in words (for the manifest)."""
    from posezoo.runtime import OnnxRuntime

    reference = OnnxRuntime(fp32_path)
    expected = [reference(f)[output].astype(np.float64) for f in feeds]
    signal = sum(float(np.sum(y ** 2)) for y in expected) or 1.0
    everything = [k.name for k in knobs]
    for knob in knobs:
        alone = with_float(qdq, weights, [n for n in everything if n != knob.name])
        runner = OnnxRuntime(alone.SerializeToString())
        noise = sum(float(np.sum((runner(f)[output] - y) ** 2)) for f, y in zip(feeds, expected))
        knob.sensitivity = noise / signal
    return (f"noise-to-signal ratio of {output!r} with that tensor alone int8 (all else float), against the "
            f"FP32 model, on {len(feeds)} calibration people")
