"""The output formats, one registry entry each: everything a build, the manifest and the runtimes
need to know about a format lives in its entry.

Every format starts from the simplified ONNX FP32 of the original (`Conversion.fp32_onnx`):
- `convert(conversion)`: the float files of the precisions asked for, {precision: path in
  `conversion.out_dir`};
- `quantize(conversion, evaluate)`: the INT8 file with its mixed-precision search
  (converters/mixed_precision.py), `evaluate(path) -> score` being the parity gate's;
- `embed(path, info)`: write the manifest's essentials into a file (converters/metadata.py);
- `info(path)`: the manifest's `format_info`; `int8_weight_share(path)`: how much of an INT8
  file's weights are int8;
- `runtime`: the class that runs its files on the runtime side (zoo/runtime.py), registered
  there with the format.

Adding a format (CoreML, ExecuTorch, ...) is `register(Format(...))`: the CLI's `--formats`, the
build, the manifest, verify and bench follow. A format not registered is refused where it is
named (`get`).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from posezoo import runtime as runtimes_side
from posezoo.errors import PosezooError

from . import complexity, metadata
from .mixed_precision import SearchResult, search


class FormatError(PosezooError):
    """A format no registry entry describes."""


@dataclass
class Conversion:
    """What every format's conversion starts from, for one model."""
    model_id: str
    fp32_onnx: Path  # the simplified ONNX FP32 of the original
    work: Path  # scratch folder
    out_dir: Path  # where candidates go (the model's staging folder)
    precisions: tuple[str, ...]
    spec: dict  # the model's input spec
    rgb: list  # the calibration crops as HxWx3 uint8 RGB
    feeds: list[dict]  # the same as the model's input tensors
    people: int  # the first `people` crops are the calibration people, the rest their robustness transforms
    int8: dict  # the recipe's INT8 options: the ONNX calibration method, the fallback precision
    decoder_output: str  # the output the keypoints are decoded from (what sensitivity is measured on)
    log: Callable[[str], None] = print
    cache: Path | None = None  # the content-addressed cache: results that take long to make are kept there
    state: dict = field(default_factory=dict)  # a format's own intermediate results (onnx2tf's SavedModel)


@dataclass(frozen=True)
class Int8Build:
    """A format's INT8 search: its result, the file it wrote (when one passed), how it calibrated
    and the precision its plan raises tensors to."""
    result: SearchResult
    path: Path
    calibration: str
    fallback: str
    rounding: dict  # how the weights were rounded (converters/learned_rounding.py)
    fp32: Path  # an FP32 file of the same format and graph it is measured against (size, latency)
    weights: str  # the weights' grid, in words (the manifest's)
    activations: str  # the activations' type, in words (the manifest's)


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    convert: Callable[[Conversion], dict[str, Path]]
    quantize: Callable[[Conversion, Callable[[Path], float]], Int8Build]
    embed: Callable[[Path, dict], None]
    info: Callable[[Path], dict]
    int8_weight_share: Callable[[Path], float]
    runtime: type


FORMATS: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    """Make `fmt` known to the build (this registry) and to the runtime side (posezoo.runtime)."""
    FORMATS[fmt.name] = fmt
    runtimes_side.register(fmt.name, fmt.suffix, fmt.runtime)
    return fmt


def get(name: str) -> Format:
    if name not in FORMATS:
        raise FormatError(f"unknown format {name!r}; posezoo converts to: {', '.join(FORMATS)}")
    return FORMATS[name]


def of_path(path: Path) -> Format:
    """The format of a file, by its suffix."""
    suffix = Path(path).suffix
    for fmt in FORMATS.values():
        if fmt.suffix == suffix:
            return fmt
    raise FormatError(f"{path}: no format has the suffix {suffix!r} (known: "
                      f"{', '.join(f.suffix for f in FORMATS.values())})")


def embed(path: Path, info: dict) -> None:
    """Embed the manifest's essentials into `path`, whatever its format."""
    of_path(path).embed(path, info)


# ONNX: FP32 is the simplified conversion itself, FP16 its float16 twin (float32 I/O), INT8 static
# QDQ from onnxruntime's quantizer.

def _onnx_convert(c: Conversion) -> dict[str, Path]:
    from .onnx_fp16 import onnx_to_fp16

    made = {}
    if "fp32" in c.precisions:
        made["fp32"] = Path(shutil.copyfile(c.fp32_onnx, c.out_dir / f"{c.model_id}_fp32.onnx"))
    if "fp16" in c.precisions:
        made["fp16"] = onnx_to_fp16(c.fp32_onnx, c.out_dir / f"{c.model_id}_fp16.onnx")
    return made


SENSITIVITY_PEOPLE = 6  # calibration people each knob's sensitivity is measured on


def _int8_start(c: Conversion) -> tuple[Path, dict]:
    """The FP32 model both formats' INT8 files are quantized from, made once: the FP32 itself
    (round to nearest) or its weights on the int8 grid by learned rounding (recipe `int8.rounding`),
    on the calibration people (not their robustness transforms: aimet caches every input's
    activations at every layer; on BlazePose Lite the people alone let its TFLite INT8 pass);
    and the manifest's record of it."""
    from .learned_rounding import adaround

    if "int8_start" not in c.state:
        if c.int8["rounding"] == "adaround":
            c.log(f"[{c.model_id}] learned weight rounding (AdaRound, {c.int8['rounding_iterations']} steps per layer)")
            rounded = c.work / f"{c.model_id}_rounded.onnx"
            c.state["int8_start"] = rounded, adaround(c.fp32_onnx, rounded, c.feeds[:c.people],
                                                        c.int8["rounding_iterations"], c.cache)
        else:
            c.state["int8_start"] = c.fp32_onnx, {"method": "nearest"}
    return c.state["int8_start"]


def _onnx_quantize(c: Conversion, evaluate) -> Int8Build:
    import onnx

    from .activation_ranges import DESCRIPTION
    from .fileio import atomic_path
    from .onnx_int8 import (ACTIVATIONS, WEIGHTS, compact_names, measure_sensitivity, onnx_to_int8,
                            output_head_nodes, qdq_knobs, weight_params, with_float)

    start, rounding = _int8_start(c)
    c.log(f"[{c.model_id}] ONNX INT8 (static QDQ, {c.int8['method']}) with per-tensor mixed precision")
    full = onnx_to_int8(start, c.work / "int8_all.onnx", c.feeds, c.int8["method"])
    qdq, fp32 = onnx.load(str(full)), onnx.load(str(c.fp32_onnx))
    knobs, weights = qdq_knobs(qdq, fp32)
    heads = {t for node in fp32.graph.node if node.name in output_head_nodes(c.fp32_onnx) for t in node.output}
    always = [k.name for k in knobs if k.name in heads]  # the heads' outputs; their weights are int8 like any
    measure = measure_sensitivity(qdq, weights, knobs, c.fp32_onnx, c.feeds[:SENSITIVITY_PEOPLE], c.decoder_output)
    if c.int8["fallback"] == "a16w8":
        for knob in knobs:
            knob.raised = "int16" if knob.kind == "activation" else "float"
    raised = {k.name: k.raised for k in knobs}
    target = c.out_dir / f"{c.model_id}_int8.onnx"

    def build(names: list[str]) -> Path:
        with atomic_path(target) as tmp:
            onnx.save(compact_names(with_float(qdq, weights, [n for n in names if raised[n] == "float"],
                                               [n for n in names if raised[n] == "int16"])), str(tmp))
        return target

    result = search(knobs, *weight_params(qdq), build, evaluate, 1.0, measure, always)
    calibration = DESCRIPTION if c.int8["method"] == "mse" else f"{c.int8['method']} (onnxruntime)"
    return Int8Build(result, target, calibration, c.int8["fallback"], rounding, c.fp32_onnx, WEIGHTS,
                     ACTIVATIONS)


def _onnx_info(path: Path) -> dict:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {"opset": next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
            "ir_version": model.ir_version}


# TFLite: onnx2tf makes FP32 and FP16 (and the SavedModel the INT8 search converts with
# TFLiteConverter).

def _onnx2tf(c: Conversion, onnx_path: Path | None = None):
    """onnx2tf's files for `onnx_path` (default: this model's FP32), made once, and their input
    shape (NHWC, also for NCHW models)."""
    from .onnx_to_tflite import onnx2tf_sample, onnx_to_tflite

    onnx_path = onnx_path or c.fp32_onnx
    key = ("tflite", str(onnx_path))
    if key not in c.state:
        c.log(f"[{c.model_id}] onnx2tf -> TFLite" + (" FP32/FP16" if onnx_path == c.fp32_onnx else f" ({onnx_path.name})"))
        work = c.work if onnx_path == c.fp32_onnx else c.work / onnx_path.stem
        work.mkdir(exist_ok=True)
        files = onnx_to_tflite(onnx_path, work, c.model_id, onnx2tf_sample(c.rgb),
                               keep_nhwc_inputs=c.spec["layout"] == "NHWC")
        c.state[key] = files, runtimes_side.TFLiteRuntime(files.fp32).inputs[0]["shape"]
    return c.state[key]


def _tflite_convert(c: Conversion) -> dict[str, Path]:
    files, _ = _onnx2tf(c)  # copied, not moved: the INT8 file is measured against the FP32 one
    return {precision: Path(shutil.copyfile(path, c.out_dir / path.name))
            for precision, path in (("fp32", files.fp32), ("fp16", files.fp16)) if precision in c.precisions}


def _tflite_quantize(c: Conversion, evaluate) -> Int8Build:
    from .runtimes import fit_layout
    from .activation_ranges import DESCRIPTION
    from .tflite_int8 import ACTIVATIONS, LEARNED_WEIGHTS, WEIGHTS, Int8Quantizer

    start, rounding = _int8_start(c)
    learned = rounding["method"] != "nearest"
    files, input_shape = _onnx2tf(c, start)
    c.log(f"[{c.model_id}] TFLite INT8 (ai-edge-quantizer) with per-op mixed precision")
    target = c.out_dir / f"{c.model_id}_int8.tflite"
    outputs = [o["name"] for o in runtimes_side.OnnxRuntime(c.fp32_onnx).outputs]
    quantizer = Int8Quantizer(files.saved_model, [fit_layout(f[c.spec["name"]], input_shape) for f in c.feeds],
                              outputs, c.int8["fallback"], learned_grid=learned)
    knobs, heads = quantizer.knobs()
    measure = quantizer.measure_sensitivity([k for k in knobs if k.name not in heads], SENSITIVITY_PEOPLE,
                                            c.decoder_output)
    result = search(knobs, 0, 0, lambda names: quantizer.write(names, target), evaluate, 1.0, measure, heads)
    return Int8Build(result, target, DESCRIPTION, c.int8["fallback"], rounding, files.fp32,
                     LEARNED_WEIGHTS if learned else WEIGHTS, ACTIVATIONS)


register(Format("onnx", ".onnx", _onnx_convert, _onnx_quantize, metadata.embed_onnx, _onnx_info,
                complexity.onnx_int8_weight_share, runtimes_side.OnnxRuntime))
register(Format("tflite", ".tflite", _tflite_convert, _tflite_quantize, metadata.embed_tflite,
                lambda path: {"tflite_schema_version": 3}, complexity.tflite_int8_weight_share,
                runtimes_side.TFLiteRuntime))
