"""Learned weight rounding for INT8 files: AdaRound (Nagel et al. 2020) with Qualcomm's aimet-onnx.

Measured on BlazePose Lite (issue 14): rounding every weight to the nearest int8 step is what
costs its INT8 files their keypoints (weights alone int8, activations float: PCK@0.05 0.87 on the
gate people), and no choice of float tensors within 10 % of the weight bytes wins it back.
AdaRound chooses, per weight, the step below or above so that each layer's output on the
calibration people moves least; with it (1000 steps per layer) the same weights-only file
scores 0.999.

The result is an FP32 model whose weights lie on a per-channel symmetric grid of `bits` bits
(scale max|w| / L with L = 2^(bits-1) - 1, integers in [-L, L]; `grid_scales` gives those scales
from the FP32 weights). Each format learns on the grid its file stores: TFLite on 8 bits
(ai-edge-quantizer's per-channel quantizer derives that same grid and stores exactly the learned
integers, but for convolutions with so few weights per output channel that the TFLite file gives
them one scale, see converters/tflite_int8.py: those are rounded again onto it), ONNX on 7 bits
(its x86 kernels' range, converters/onnx_int8.py, which stores the learned integers through
onnxruntime's per-channel overrides). Rounded again onto another grid, learned weights lose most
of what they gained: BlazePose Lite's ONNX INT8, learned on 8 bits and rounded onto 7 (max|w| /
64), kept float the tensors the TFLite file did not need to. aimet's scale adjustments for
Qualcomm's HTP accumulators are turned off (our runtimes derive the bias from the weight grid
themselves).
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import random
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

from . import quiet
from .fileio import atomic_path

AIMET_CONFIG = {  # per-channel, strict symmetric weights: integers in [-L, L], as our files store them
    "defaults": {"ops": {"is_output_quantized": "True"},
                 "params": {"is_quantized": "True", "is_symmetric": "True"},
                 "strict_symmetric": "True", "per_channel_quantization": "True"},
    "params": {"bias": {"is_quantized": "False"}},
    "op_type": {}, "supergroups": [], "model_input": {"is_input_quantized": "True"}, "model_output": {},
}


def levels(bits: int) -> int:
    """L of a strict symmetric `bits`-bit grid: integers in [-L, L]."""
    return 2 ** (bits - 1) - 1


def grid_scales(weight: np.ndarray, bits: int) -> np.ndarray:
    """Per output channel (axis 0), the step of the `bits`-bit grid a weight is learned on:
    max|w| / L of the FP32 weight (1.0 for an all-zero channel)."""
    scale = np.abs(weight).reshape(weight.shape[0], -1).max(1) / levels(bits)
    return np.where(scale > 0, scale, 1.0)


def conv_grid(fp32_onnx: Path, bits: int) -> dict[str, np.ndarray]:
    """{Conv weight name: `grid_scales`} of a model: where `adaround` put its convolutions' weights."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(fp32_onnx))
    inits = {i.name: i for i in model.graph.initializer}
    return {node.input[1]: grid_scales(numpy_helper.to_array(inits[node.input[1]]), bits)
            for node in model.graph.node if node.op_type == "Conv" and node.input[1] in inits}


def adaround(fp32_onnx: Path, out: Path, feeds: list[dict[str, np.ndarray]], iterations: int, bits: int = 8) -> dict:
    """Write `out`: the model of `fp32_onnx` with its weights rounded by AdaRound on `feeds`
    (`iterations` optimizer steps per layer) onto the `bits`-bit grid (`grid_scales`). Returns
    the manifest's record of what was done."""
    import onnx
    from onnx import numpy_helper

    if not feeds:
        raise ValueError("learned rounding needs at least one calibration input")
    start = time.monotonic()
    model = onnx.load(str(fp32_onnx))
    with tempfile.TemporaryDirectory(prefix="posezoo-adaround-") as work, _quiet_aimet():
        import torch
        from aimet_onnx import QuantizationSimModel, apply_adaround
        from aimet_onnx.common.defs import qtype

        torch.manual_seed(0)  # AdaRound draws its batches and starts at random: the same file every build
        np.random.seed(0)
        random.seed(0)

        config = Path(work) / "config.json"
        config.write_text(json.dumps(AIMET_CONFIG))
        sim = QuantizationSimModel(model, param_type=qtype.int(bits), activation_type="int8", config_file=str(config))
        sim._adjust_weight_scales_against_overflow = lambda: None  # HTP's accumulators, not our runtimes'
        apply_adaround(sim, feeds, num_iterations=iterations)
        learned = {i.name: numpy_helper.to_array(i) for i in sim.model.model.graph.initializer}
    moved = total = tensors = 0
    for init in model.graph.initializer:
        if init.name not in learned or len(init.dims) < 2:
            continue
        before, soft = numpy_helper.to_array(init), learned[init.name]
        if np.array_equal(before, soft):  # a tensor AdaRound does not handle keeps nearest rounding
            continue
        # aimet leaves each weight at its soft rounding (close to the step it chose) and rounds it to
        # the nearest step on its frozen grid, max|w| / L per output channel: so do we.
        scale = grid_scales(before, bits).reshape([-1] + [1] * (before.ndim - 1))
        chosen = np.clip(np.round(soft / scale), -levels(bits), levels(bits))
        moved += int(np.sum(chosen != np.round(before / scale)))
        total += before.size
        tensors += 1
        init.CopyFrom(numpy_helper.from_array((chosen * scale).astype(np.float32), init.name))
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
    return {"method": "adaround", "library": f"aimet-onnx {version('aimet-onnx')}", "iterations": iterations,
            "grid": f"per-channel symmetric {bits}-bit, integers in [-{levels(bits)}, {levels(bits)}]",
            "inputs": len(feeds), "tensors": tensors,
            "rounded_other_way": round(moved / total, 4) if total else 0.0,
            "seconds": round(time.monotonic() - start, 1)}


@contextlib.contextmanager
def _quiet_aimet():
    """aimet logs every layer at INFO on stdout (where `--json` writes) and draws a progress bar on
    stderr: both hidden unless --verbose."""
    if quiet.verbose():
        yield
        return
    from aimet_onnx.common.utils import AimetLogger  # configures aimet's loggers on first import

    loggers = [logging.getLogger(area.value) for area in AimetLogger.LogAreas]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
