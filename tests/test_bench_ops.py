"""`posezoo bench-ops`: every op of a TFLite file timed alone (fast: conftest's tiny float TFLite
and its float16 twin, whose weights reach the convolutions through DEQUANTIZE ops)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from posezoo.scripts.bench import ops
from posezoo.scripts.cli import main


@pytest.fixture(scope="module")
def fp16_tflite(tmp_path_factory) -> Path:
    """A small float net with float16 weights: each weight is a constant that a DEQUANTIZE op turns float."""
    import tensorflow as tf

    rng = np.random.default_rng(1)
    w1 = tf.constant(rng.normal(0, 0.3, (3, 3, 3, 8)).astype(np.float32))
    w2 = tf.constant(rng.normal(0, 0.3, (1, 1, 8, 16)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 32, 32, 3], tf.float32, name="image")])
    def net(image):
        x = tf.nn.relu6(tf.nn.conv2d(image, w1, 2, "SAME"))
        return {"features": tf.nn.conv2d(x, w2, 1, "SAME") + x[..., :1]}

    converter = tf.lite.TFLiteConverter.from_concrete_functions([net.get_concrete_function()], net)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    path = tmp_path_factory.mktemp("fp16") / "tiny_fp16.tflite"
    path.write_bytes(converter.convert())
    return path


def test_each_op_alone_computes_what_it_computes_in_the_file(tiny_tflite, tmp_path):
    """A one-op file fed the op's inputs from a run of the whole file gives the whole file's output
    of that op: the op, its weights and its quantization are the file's own."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tiny_tflite.read_bytes()))
    feed = np.random.default_rng(0).random((1, 32, 32, 3), np.float32)
    whole = Interpreter(model_path=str(tiny_tflite), experimental_preserve_all_tensors=True,
                        experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    whole.allocate_tensors()
    whole.set_tensor(whole.get_input_details()[0]["index"], feed)
    whole.invoke()
    graph = model.subgraphs[0]
    for k, op in enumerate(graph.operators):
        one = tmp_path / f"op{k}.tflite"
        one.write_bytes(ops._one_op_model(model, [k]))
        alone = Interpreter(model_path=str(one), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
        alone.allocate_tensors()
        for d in alone.get_input_details():
            alone.set_tensor(d["index"], whole.get_tensor(_index(whole, d["name"])))
        alone.invoke()
        out = alone.get_output_details()[0]
        np.testing.assert_array_equal(alone.get_tensor(out["index"]), whole.get_tensor(_index(whole, out["name"])))
        assert one.stat().st_size < tiny_tflite.stat().st_size or len(graph.operators) == 1


def _index(interpreter, name: str) -> int:
    return next(t["index"] for t in interpreter.get_tensor_details() if t["name"] == name)


def test_time_ops_lists_every_op_by_kind_and_the_whole_file(tiny_tflite):
    timing = ops.time_ops(tiny_tflite, runs=3, warmup=1)
    kinds = [op["kind"] for op in timing]
    assert len(kinds) == len(ops._read(tiny_tflite).subgraphs[0].operators)
    assert "CONV_2D 3x3 3->8 16x16" in kinds and "DEPTHWISE_CONV_2D 3x3 x8 16x16" in kinds
    assert all(op["ms"] > 0 for op in timing)
    assert all(ms > 0 for ms in ops.whole_files_ms([tiny_tflite, tiny_tflite], runs=3, warmup=1))


def test_dequantized_weights_load_once_and_their_op_is_timed_with_them(fp16_tflite):
    timing = ops.time_ops(fp16_tflite, runs=3, warmup=1)
    folded = [op for op in timing if op["type"] == "DEQUANTIZE"]
    assert folded and all(op["ms"] == 0.0 and op["kind"] == "DEQUANTIZE of constants (once, at load)" for op in folded)
    assert all(op["ms"] > 0 for op in timing if op["type"] == "CONV_2D")


def test_table_lines_files_up_by_kind_and_gives_the_ratio():
    a = {"ops": [{"kind": "CONV_2D 1x1 8->8 4x4", "type": "CONV_2D", "ms": 2.0},
                 {"kind": "ADD 1x4x4x8", "type": "ADD", "ms": 1.0}], "file_ms": 2.5}
    b = {"ops": [{"kind": "QUANTIZE 1x4x4x8", "type": "QUANTIZE", "ms": 0.1},
                 {"kind": "CONV_2D 1x1 8->8 4x4", "type": "CONV_2D", "ms": 1.0},
                 {"kind": "ADD 1x4x4x8", "type": "ADD", "ms": 0.5}], "file_ms": 1.25}
    table = ops.format_table(["fp32.tflite", "int8.tflite"], [a, b], top=2).splitlines()
    conv = next(line for line in table if line.startswith("CONV_2D"))
    assert "1 ops    2.000 ms" in conv and "1 ops    1.000 ms" in conv and conv.endswith("0.50")
    other = next(line for line in table if line.startswith("(1 other kinds)"))
    assert "-" in other.split("|")[1] and "0.100 ms" in other
    whole = next(line for line in table if line.startswith("the whole file"))
    assert whole.endswith("0.50")


def test_cli_names_the_file_it_cannot_read(tmp_path, capsys):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a tflite")
    assert main(["bench-ops", str(bad)]) == 2
    assert "model.onnx: not a .tflite file" in capsys.readouterr().err
    garbage = tmp_path / "model.tflite"
    garbage.write_bytes(b"\x00" * 64)
    assert main(["bench-ops", str(garbage)]) == 2
    assert "model.tflite: not a TFLite" in capsys.readouterr().err


def test_cli_prints_the_table(tiny_tflite, capsys):
    assert main(["bench-ops", str(tiny_tflite), str(tiny_tflite), "--runs", "2", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    assert "the whole file" in out and "sum of the ops alone" in out and "DEPTHWISE_CONV_2D" in out


def test_table_columns_fit_long_file_names():
    timing = {"ops": [{"kind": "ADD 1x4", "type": "ADD", "ms": 1.0}], "file_ms": 1.0}
    names = ["efficientpose-i-lite_fp32.tflite", "efficientpose-i-lite_int8.tflite"]
    head, _, row, *_ = ops.format_table(names, [timing, timing], top=5).splitlines()
    assert all(name in head for name in names) and len(row) == len(head)
