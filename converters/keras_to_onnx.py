"""TensorFlow function -> ONNX with tf2onnx, variables frozen into constants, deterministic bytes:
a Keras model (tf_keras, in memory; outputs named after the Keras outputs) or a SavedModel's
serving function (converters/saved_model.py)."""
from __future__ import annotations

import logging
from pathlib import Path

from .fileio import atomic_path
from .tflite_to_onnx import OPSET, canonicalize


def keras_to_onnx(model, input_spec: dict, onnx_path: Path, opset: int = OPSET) -> Path:
    import tensorflow as tf

    names = model.output_names
    signature = [tf.TensorSpec(input_spec["shape"], tf.float32, name=input_spec["name"])]

    @tf.function
    def forward(x):
        outputs = model(x, training=False)
        return dict(zip(names, outputs if isinstance(outputs, (list, tuple)) else [outputs]))

    return function_to_onnx(forward, signature, onnx_path, opset)


def function_to_onnx(forward, input_signature, onnx_path: Path, opset: int = OPSET) -> Path:
    import onnx
    from tf2onnx import convert, utils

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    utils.INTERNAL_NAME = 1
    onnx_model, _ = convert.from_function(forward, input_signature=input_signature, opset=opset)
    canonicalize(onnx_model)
    with atomic_path(onnx_path) as tmp:
        onnx.save(onnx_model, tmp)
    return onnx_path
