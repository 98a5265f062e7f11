"""ONNX -> TFLite FP32 and FP16 (plus the intermediate SavedModel) with onnx2tf, offline.

onnx2tf runs in a subprocess (converters/onnx2tf_main.py, its command line with a fix): it
rewrites its input in place, sets TF_USE_LEGACY_KERAS for the whole process and, when every input is an RGB image, loads a calibration sample
(`calibration_image_sample_data_20x128x128x3_float32.npy`) from its working directory or else
downloads it. We run it in a scratch directory holding that file made from our real images, on
a copy of the model whose tensor names are sanitized (TFLite-derived names contain `;` and `/`,
which break its SavedModel export) and whose Tiles it misreads are Expands (`for_onnx2tf`). Graph output names are kept, input names lose characters
other than [A-Za-z0-9_].
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posezoo.errors import PosezooError

from . import quiet
from .fileio import atomic_copy
from .tflite_names import name_outputs

ONNX2TF_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"


class ConversionError(PosezooError):
    pass


@dataclass
class TFLiteOutputs:
    fp32: Path
    fp16: Path
    saved_model: Path


def _tiles_as_expands(model) -> None:
    """Write each Tile that only repeats axes of size 1 as the Expand it equals. onnx2tf 1.29.24
    indexes a Tile's constant repeats by a permutation of their own rank (`repeats[[0]]`), so
    repeats [1, 1, 17] of a [1, 6, 1] tensor become [1] and the conversion fails (MoveNet
    MultiPose); an Expand to the output shape computes the same broadcast."""
    import onnx
    from onnx import numpy_helper

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
              for v in [*inferred.graph.value_info, *inferred.graph.input]}
    constants = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "Tile" or node.input[1] not in constants:
            continue
        shape, repeats = shapes.get(node.input[0]), constants[node.input[1]]
        if not shape or None in shape or len(shape) != len(repeats):
            continue
        if all(r == 1 or d == 1 for d, r in zip(shape, repeats)):
            target = numpy_helper.from_array(np.asarray([d * r for d, r in zip(shape, repeats)], np.int64),
                                             f"{node.name or node.output[0]}_expanded_shape")
            model.graph.initializer.append(target)
            node.op_type, node.input[1] = "Expand", target.name


def for_onnx2tf(onnx_in: Path, onnx_out: Path) -> list[str]:
    """The copy of the model onnx2tf converts: Tiles it misreads written as Expands
    (`_tiles_as_expands`), every internal tensor and node renamed to [A-Za-z0-9_]; graph inputs
    only lose other characters (onnx2tf renames `serving_default_input:0` itself, and then its
    keep-NHWC option no longer finds the name we give); graph output names stay. Returns the
    input names."""
    import onnx

    model = onnx.load(str(onnx_in))
    graph = model.graph
    keep = {v.name for v in graph.output}
    inputs = {v.name: re.sub(r"[^A-Za-z0-9_]", "_", v.name) for v in graph.input}
    for v in graph.input:
        v.name = inputs[v.name]
    renamed: dict[str, str] = {}

    def clean(name: str) -> str:
        if not name or name in keep:
            return name
        if name in inputs:
            return inputs[name]
        if name not in renamed:
            renamed[name] = f"t{len(renamed)}_" + re.sub(r"[^A-Za-z0-9_]", "_", name)[-48:]
        return renamed[name]

    _tiles_as_expands(model)
    for init in graph.initializer:
        init.name = clean(init.name)
    for vi in graph.value_info:
        vi.name = clean(vi.name)
    for i, node in enumerate(graph.node):
        node.name = f"n{i}_{node.op_type}"
        node.input[:] = [clean(x) for x in node.input]
        node.output[:] = [clean(x) for x in node.output]
    onnx.save(model, str(onnx_out))
    return [v.name for v in graph.input]


def onnx2tf_sample(rgb_images: list[np.ndarray]) -> np.ndarray:
    """20x128x128x3 float32 in [0, 1] from real RGB crops (the test data onnx2tf validates with)."""
    from PIL import Image

    picks = [rgb_images[i % len(rgb_images)] for i in range(20)]
    return np.stack([np.asarray(Image.fromarray(im).resize((128, 128), Image.BILINEAR), np.float32) / 255.0
                     for im in picks])


STRICT_MODE_CRASH = "Output tensors of a Functional model must be the output of a TensorFlow `Layer`"


def onnx_to_tflite(onnx_path: Path, out_dir: Path, stem: str, sample: np.ndarray,
                   keep_nhwc_inputs: bool, timeout: int = 3600) -> TFLiteOutputs:
    """Convert; returns FP32 and FP16 .tflite files and the SavedModel, all inside `out_dir`."""
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="posezoo-onnx2tf-") as scratch:
        scratch = Path(scratch)
        model = scratch / "model.onnx"
        inputs = for_onnx2tf(onnx_path, model)
        np.save(scratch / ONNX2TF_SAMPLE, sample.astype(np.float32))
        import onnx

        cmd = [sys.executable, "-m", "posezoo.converters.onnx2tf_main", "-i", str(model), "-o", str(scratch / "saved_model"),
               "-coion", "-v", "error"]
        if keep_nhwc_inputs:
            cmd += ["-kat", *inputs]
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "3",
               "PYTHONHASHSEED": "0", "TF_DETERMINISTIC_OPS": "1"}
        proc = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True, text=True, timeout=timeout)
        fp32, fp16 = scratch / "saved_model" / "model_float32.tflite", scratch / "saved_model" / "model_float16.tflite"
        if proc.returncode != 0 and STRICT_MODE_CRASH in proc.stdout + proc.stderr:
            # onnx2tf's strict mode re-checks broadcast ops against onnxruntime on sample data and
            # crashes where such an op's result is a constant (LiteHRNet MPII 256x256: "Found: 2.0").
            # Without it the conversion is the same graph; our parity gate judges the result.
            shutil.rmtree(scratch / "saved_model", ignore_errors=True)
            proc = subprocess.run(cmd + ["-dsm"], cwd=scratch, env=env, capture_output=True, text=True,
                                  timeout=timeout)
        if quiet.verbose():
            sys.stderr.write(proc.stdout + proc.stderr)
        if proc.returncode != 0 or not fp32.exists() or not fp16.exists():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
            raise ConversionError(f"onnx2tf failed on {onnx_path} (exit {proc.returncode}):\n{tail}")
        result = TFLiteOutputs(out_dir / f"{stem}_fp32.tflite", out_dir / f"{stem}_fp16.tflite",
                               out_dir / f"{stem}_saved_model")
        outputs = [o.name for o in onnx.load(str(onnx_path), load_external_data=False).graph.output]
        atomic_copy(fp32, result.fp32)
        atomic_copy(fp16, result.fp16)
        name_outputs(result.fp32, outputs)
        name_outputs(result.fp16, outputs)
        for f in (fp32, fp16):
            f.unlink()
        if result.saved_model.exists():
            shutil.rmtree(result.saved_model)
        shutil.move(str(scratch / "saved_model"), result.saved_model)
    return result
