"""SavedModel -> INT8 TFLite: static quantization of weights and activations, calibrated on real inputs.

Without `float_nodes` the result is full-integer (only integer kernels). With `float_nodes`
(TFLite op output-tensor names, chosen by the sensitivity search) those ops stay float and the
rest is integer: TFLite's selective quantization (QuantizationDebugger denylist).
I/O dtype is float32, int8 or uint8; the file's own I/O scale/zero-point go to the manifest.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .fileio import atomic_path
from .tflite_names import name_outputs


def _converter(saved_model: Path, calibration: list[np.ndarray], io_dtype: str, full_integer: bool):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]

    def representative():  # integer inputs (MoveNet's uint8 pixels) are given as they are
        for x in calibration:
            yield [x if np.issubdtype(x.dtype, np.integer) else x.astype(np.float32)]

    converter.representative_dataset = representative
    if full_integer:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io_dtype != "float32":
        converter.inference_input_type = {"int8": tf.int8, "uint8": tf.uint8}[io_dtype]
        converter.inference_output_type = converter.inference_input_type
    return converter


def saved_model_to_int8(saved_model: Path, tflite_out: Path, calibration: list[np.ndarray], output_names: list[str],
                        io_dtype: str = "float32", float_nodes: list[str] = ()) -> Path:
    """`output_names`: the ONNX outputs, in order (onnx2tf's SavedModel keys them output_<i>)."""
    import tensorflow as tf

    if not calibration:
        raise ValueError("INT8 quantization needs at least one calibration input")
    if float_nodes:
        converter = _converter(saved_model, calibration, io_dtype, full_integer=False)
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=lambda: ([x] for x in calibration[:1]),
            debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(float_nodes)))
        model = debugger.get_nondebug_quantized_model()
    else:
        model = _converter(saved_model, calibration, io_dtype, full_integer=True).convert()
    with atomic_path(tflite_out) as tmp:
        tmp.write_bytes(model)
    return name_outputs(tflite_out, output_names)


PASS_THROUGH_OPS = {"RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS", "LOGISTIC", "RELU", "RELU6"}


def float_op_order(saved_model: Path) -> tuple[list[str], list[str]]:
    """Output-tensor names of the float model's ops in execution order (denylist candidates), and
    those of the output heads: each output's producers back through reshapes and activations to
    the first computing op (kept float for the reason given in `onnx_int8.output_head_nodes`)."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    data = tf.lite.TFLiteConverter.from_saved_model(str(saved_model)).convert()
    interpreter = Interpreter(model_content=data)
    ops = interpreter._get_ops_details()
    name = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    order = [name[t] for op in ops for t in op["outputs"]]
    producer = {t: op for op in ops for t in op["outputs"]}
    heads: list[str] = []
    for output in interpreter.get_output_details():
        op = producer.get(output["index"])
        while op is not None:
            heads.extend(name[t] for t in op["outputs"] if name[t] not in heads)
            if op["op_name"] not in PASS_THROUGH_OPS or len(op["inputs"]) == 0:
                break
            op = producer.get(op["inputs"][0])
    return order, heads
