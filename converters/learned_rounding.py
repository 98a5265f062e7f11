"""Learned weight rounding for INT8 files: AdaRound (Nagel et al. 2020) with Qualcomm's aimet-onnx.

Measured on BlazePose Lite (issue 14): rounding every weight to the nearest int8 step is what
costs its INT8 files their keypoints (weights alone int8, activations float: PCK@0.05 0.87 on the
gate people), and no choice of float tensors within 10 % of the weight bytes wins it back.
AdaRound chooses, per weight, the step below or above so that each layer's output on the
calibration people moves least; with it (1000 steps per layer) the same weights-only file
scores 0.999.

The result is an FP32 model whose weights lie on their per-channel symmetric int8 grid (scale
max|w| / 127, integers in [-127, 127]): ai-edge-quantizer's per-channel quantizer derives that same
grid from it and stores exactly the learned integers in the TFLite INT8 file (every weight keeps its per-channel
scale there, converters/tflite_int8.py, even where a file rounded to nearest takes one scale per
tensor). The ONNX INT8 file
keeps its weights in 7 bits (converters/onnx_int8.py), so onnxruntime rounds the learned weights
again onto max|w| / 64: the ONNX file gains less from the learned rounding than the TFLite one.
aimet's scale adjustments for Qualcomm's HTP accumulators are turned off for that reason (our
runtimes derive the bias from the weight grid themselves).

Learning takes long (19 minutes for BlazePose Lite on one core of the build machine, hours for Full
and Heavy) and gives the same file every time, so a build keeps the result in its content-addressed
cache under a key of everything the result depends on (`cache_key`, this module's code included): a
rebuild after a change further down the line (the INT8 search, the gates) reuses it instead of
learning again.
"""
from __future__ import annotations

import contextlib
import hashlib
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
from .sources import sha256_of

AIMET_CONFIG = {  # per-channel, strict symmetric int8 weights: the grid onnxruntime and ai-edge-quantizer use
    "defaults": {"ops": {"is_output_quantized": "True"},
                 "params": {"is_quantized": "True", "is_symmetric": "True"},
                 "strict_symmetric": "True", "per_channel_quantization": "True"},
    "params": {"bias": {"is_quantized": "False"}},
    "op_type": {}, "supergroups": [], "model_input": {"is_input_quantized": "True"}, "model_output": {},
}


def adaround(fp32_onnx: Path, out: Path, feeds: list[dict[str, np.ndarray]], iterations: int,
             cache: Path | None = None) -> dict:
    """Write `out`: the model of `fp32_onnx` with its weights rounded by AdaRound on `feeds`
    (`iterations` optimizer steps per layer). Returns the manifest's record of what was done.
    `cache`: the content-addressed cache folder where the result is kept and looked up
    (`from_cache` in the record says it was reused)."""
    if not feeds:
        raise ValueError("learned rounding needs at least one calibration input")
    entry = Path(cache) / "adaround" / (key := cache_key(fp32_onnx, feeds, iterations))[:2] / key if cache else None
    if entry is not None and (record := _reuse(entry, out)) is not None:
        return record
    record = _learn(fp32_onnx, out, feeds, iterations)
    if entry is not None:
        with atomic_path(entry / "rounded.onnx") as tmp:
            tmp.write_bytes(Path(out).read_bytes())
        with atomic_path(entry / "record.json") as tmp:  # written last: an entry with it is complete
            tmp.write_text(json.dumps({**record, "onnx_sha256": sha256_of(out)}, indent=1))
    return record


def cache_key(fp32_onnx: Path, feeds: list[dict[str, np.ndarray]], iterations: int) -> str:
    """sha256 of what the learned weights depend on: the FP32 model's bytes, every input (names,
    dtypes, shapes, values, in order: AdaRound draws its batches from them), the steps, aimet's
    configuration, the versions of the libraries that learn and this module's own code."""
    h = hashlib.sha256(Path(fp32_onnx).read_bytes())
    for feed in feeds:
        for name in sorted(feed):
            x = np.ascontiguousarray(feed[name])
            h.update(f"{name} {x.dtype.str} {x.shape}".encode())
            h.update(x.tobytes())
    libraries = {lib: version(lib) for lib in ("aimet-onnx", "torch", "onnx", "onnxruntime", "numpy")}
    h.update(json.dumps([iterations, AIMET_CONFIG, libraries], sort_keys=True).encode())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()


def _reuse(entry: Path, out: Path) -> dict | None:
    """The record of a complete cache entry whose file is intact, after copying that file to `out`;
    None where there is none (or it was damaged: then it is learned again and replaced)."""
    try:
        record = json.loads((entry / "record.json").read_text())
        if sha256_of(entry / "rounded.onnx") != record.pop("onnx_sha256"):
            return None
    except (OSError, ValueError, KeyError):
        return None
    with atomic_path(out) as tmp:
        tmp.write_bytes((entry / "rounded.onnx").read_bytes())
    return {**record, "from_cache": True}


def _learn(fp32_onnx: Path, out: Path, feeds: list[dict[str, np.ndarray]], iterations: int) -> dict:
    import onnx
    from onnx import numpy_helper

    start = time.monotonic()
    model = onnx.load(str(fp32_onnx))
    with tempfile.TemporaryDirectory(prefix="posezoo-adaround-") as work, _quiet_aimet():
        import torch
        from aimet_onnx import QuantizationSimModel, apply_adaround

        torch.manual_seed(0)  # AdaRound draws its batches and starts at random: the same file every build
        np.random.seed(0)
        random.seed(0)

        config = Path(work) / "config.json"
        config.write_text(json.dumps(AIMET_CONFIG))
        sim = QuantizationSimModel(model, param_type="int8", activation_type="int8", config_file=str(config))
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
        # the nearest step on its frozen grid, max|w| / 127 per output channel: so do we.
        scale = np.abs(before).reshape(before.shape[0], -1).max(1) / 127
        scale = np.where(scale > 0, scale, 1.0).reshape([-1] + [1] * (before.ndim - 1))
        chosen = np.clip(np.round(soft / scale), -127, 127)
        moved += int(np.sum(chosen != np.round(before / scale)))
        total += before.size
        tensors += 1
        init.CopyFrom(numpy_helper.from_array((chosen * scale).astype(np.float32), init.name))
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
    return {"method": "adaround", "library": f"aimet-onnx {version('aimet-onnx')}", "iterations": iterations,
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
