"""TensorFlow.js graph model originals (converters/tfjs_graph.py) on a small graph written the way
the tfjs converter writes one: fused ops, weights stored as float16 and as uint8 (affine), an int32
input. Google's own bundles are built end to end in tests/test_e2e_tfjs.py."""
from __future__ import annotations

import json

import numpy as np
import pytest

from posezoo.converters import tfjs_graph
from posezoo.converters.originals import open_in_process
from posezoo.converters.tfjs_graph import TfjsGraphError, graph_function

RNG = np.random.default_rng(7)
W1 = RNG.normal(0, 0.3, (3, 3, 3, 4)).astype(np.float32)
B1 = RNG.normal(0, 0.1, 4).astype(np.float32)
DW = RNG.uniform(-0.5, 0.5, (3, 3, 4, 1)).astype(np.float32)
DB = RNG.normal(0, 0.1, 4).astype(np.float32)
SHAPE = np.array([1, 64], np.int32)
DW_SCALE, DW_MIN = 1.0 / 255, -0.5


def _node(graph, name, op, inputs=(), **attrs):
    node = graph.node.add(name=name, op=op)
    node.input.extend(inputs)
    for key, value in attrs.items():
        node.attr[key].CopyFrom(value)
    return node


def _graph(fused_ops=(b"BiasAdd", b"Relu6"), extra_op=None):
    import tensorflow as tf
    from tensorflow.core.framework import attr_value_pb2 as av, graph_pb2

    f32, i32 = av.AttrValue(type=tf.float32.as_datatype_enum), av.AttrValue(type=tf.int32.as_datatype_enum)
    ints = lambda *v: av.AttrValue(list=av.AttrValue.ListValue(i=v))  # noqa: E731
    conv = dict(T=f32, strides=ints(1, 1, 1, 1), padding=av.AttrValue(s=b"SAME"), data_format=av.AttrValue(s=b"NHWC"),
                dilations=ints(1, 1, 1, 1), explicit_paddings=ints(), num_args=av.AttrValue(i=1))
    g = graph_pb2.GraphDef()
    _node(g, "input", "Placeholder", dtype=i32, shape=av.AttrValue(shape=tf.TensorShape([1, 8, 8, 3]).as_proto()))
    _node(g, "cast", "Cast", ["input"], SrcT=i32, DstT=f32, Truncate=av.AttrValue(b=False))
    for name, dtype in (("w1", f32), ("b1", f32), ("dw", f32), ("db", f32), ("shape", i32)):
        _node(g, name, "Const", dtype=dtype)  # the tfjs converter leaves Const values to the weight files
    _node(g, "conv", "_FusedConv2D", ["cast", "w1", "b1"], **conv, epsilon=av.AttrValue(f=0.0),
          use_cudnn_on_gpu=av.AttrValue(b=True), fused_ops=av.AttrValue(list=av.AttrValue.ListValue(s=list(fused_ops))))
    _node(g, "dwconv", "FusedDepthwiseConv2dNative", ["conv", "dw", "db"], **{**conv, "strides": ints(1, 2, 2, 1)},
          fused_ops=av.AttrValue(list=av.AttrValue.ListValue(s=[b"BiasAdd", b"Relu"])))
    _node(g, "reshape", "Reshape", ["dwconv", "shape"], T=f32, Tshape=i32)
    _node(g, "Identity", "Identity", ["reshape"], T=f32)
    if extra_op:
        _node(g, "evil", extra_op, ["shape"])
    return g


def write_model(folder, graph=None, weights_name="group1-shard1of1.bin", format="graph-model", data=None):
    """model.json + one weight file, as the tfjs converter writes them; returns model.json's path."""
    from google.protobuf import json_format

    dw_q = np.round((DW - DW_MIN) / DW_SCALE).astype(np.uint8)
    data = data if data is not None else (W1.astype(np.float16).tobytes() + B1.tobytes() + dw_q.tobytes()
                                          + DB.tobytes() + SHAPE.tobytes())
    weights = [
        {"name": "w1", "shape": list(W1.shape), "dtype": "float32",
         "quantization": {"dtype": "float16", "original_dtype": "float32"}},
        {"name": "b1", "shape": [4], "dtype": "float32"},
        {"name": "dw", "shape": list(DW.shape), "dtype": "float32",
         "quantization": {"dtype": "uint8", "scale": DW_SCALE, "min": DW_MIN, "original_dtype": "float32"}},
        {"name": "db", "shape": [4], "dtype": "float32"},
        {"name": "shape", "shape": [2], "dtype": "int32"},
    ]
    model = {"format": format, "generatedBy": "a test graph", "convertedBy": "tests/test_tfjs_graph.py",
             "signature": {"inputs": {"input:0": {"name": "input:0", "dtype": "DT_INT32"}},
                           "outputs": {"Identity:0": {"name": "Identity:0", "dtype": "DT_FLOAT"}}},
             "modelTopology": json_format.MessageToDict(graph or _graph()),
             "weightsManifest": [{"paths": [weights_name], "weights": weights}]}
    (folder / "model.json").write_text(json.dumps(model))
    if "/" not in weights_name:
        (folder / weights_name).write_bytes(data)
    return folder / "model.json"


def expected(x: np.ndarray) -> np.ndarray:
    """The graph in plain TensorFlow ops, with the weights as tfjs loads them."""
    import tensorflow as tf

    dw = np.round((DW - DW_MIN) / DW_SCALE).astype(np.float32) * np.float32(DW_SCALE) + np.float32(DW_MIN)
    y = tf.nn.relu6(tf.nn.conv2d(tf.cast(x, tf.float32), W1.astype(np.float16).astype(np.float32), 1, "SAME") + B1)
    y = tf.nn.relu(tf.nn.depthwise_conv2d(y, dw, [1, 2, 2, 1], "SAME") + DB)
    return tf.reshape(y, SHAPE).numpy()


SPEC = {"name": "pixels", "shape": [1, 8, 8, 3], "dtype": "uint8"}


def test_a_tfjs_graph_runs_in_tensorflow_as_tfjs_computes_it(tmp_path):
    path = write_model(tmp_path)
    forward = graph_function(path, SPEC, ["heatmaps"])
    x = RNG.integers(0, 256, (1, 8, 8, 3)).astype(np.uint8)
    got = forward(x)["heatmaps"].numpy()
    assert got.shape == (1, 64)
    np.testing.assert_allclose(got, expected(x), rtol=1e-5, atol=1e-5)
    graph, _ = tfjs_graph.load_graph(path)
    assert not {n.op for n in graph.node} & set(tfjs_graph.FUSED_OPS)  # plain TF ops only
    assert [n.name for n in graph.node if n.name.startswith("conv")] == ["conv/unfused_Conv2D", "conv/unfused_BiasAdd",
                                                                          "conv"]


def test_the_original_opens_like_every_other_format(tmp_path):
    path = write_model(tmp_path)
    recipe = {"input": SPEC, "outputs": [{"name": "heatmaps"}]}
    original = open_in_process("tfjs_graph", None, "v", recipe, path)
    x = RNG.integers(0, 256, (1, 8, 8, 3)).astype(np.uint8)
    np.testing.assert_allclose(original.run({"pixels": x})["heatmaps"], expected(x), rtol=1e-5, atol=1e-5)
    onnx_path = original.to_onnx(tmp_path / "model.onnx")
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x})
    np.testing.assert_allclose(got, expected(x), rtol=1e-4, atol=1e-4)


def test_provenance_says_who_converted_it_and_what_is_rounded(tmp_path):
    p = tfjs_graph.provenance(write_model(tmp_path))
    assert p["converted_by"] == "tests/test_tfjs_graph.py" and p["converted_from"] == "a test graph"
    assert p["weights"] == 5 and p["weights_stored_as"] == {"float16": 1, "uint8": 1}
    assert "not the publisher's own file" in p["summary"] and "1 are stored as float16" in p["summary"]


@pytest.mark.parametrize("case, message", [
    ("op", r"op 'ReadFile' \(node 'evil'\) is not a pure compute op"),
    ("path", r"weight file '\.\./outside\.bin' is not a plain file name"),
    ("short", r"the weight files end inside weight 'shape'"),
    ("long", r"hold \d+ bytes, the manifest describes \d+"),
    ("layers", r"not a TensorFlow.js graph model \(format 'layers-model'"),
    ("library", r"has a function library"),
    ("fused", r"fuses \['BiasAdd', 'Prelu'\]"),
    ("missing", r"weight file group1-shard1of1.bin is missing"),
    ("no shape", r"at weightsManifest/0/weights/0: 'shape' is a required property"),
])
def test_a_malformed_or_unsafe_model_is_refused_with_the_reason(tmp_path, case, message):
    full = write_model(tmp_path).parent.joinpath("group1-shard1of1.bin").read_bytes()
    graph = _graph(extra_op="ReadFile") if case == "op" else _graph((b"BiasAdd", b"Prelu")) if case == "fused" else None
    if case == "library":
        graph = _graph()
        graph.library.function.add().signature.name = "f"
    path = write_model(tmp_path, graph, weights_name="../outside.bin" if case == "path" else "group1-shard1of1.bin",
                       format="layers-model" if case == "layers" else "graph-model",
                       data=full[:-2] if case == "short" else full + b"\0" * 4 if case == "long" else full)
    if case == "missing":
        (tmp_path / "group1-shard1of1.bin").unlink()
    if case == "no shape":
        model = json.loads(path.read_text())
        del model["weightsManifest"][0]["weights"][0]["shape"]
        path.write_text(json.dumps(model))
    with pytest.raises(TfjsGraphError, match=message):
        graph_function(path, SPEC, ["heatmaps"])


def test_outputs_are_matched_to_the_recipe_by_name(tmp_path):
    signature = {"inputs": {"x": {"name": "image:0", "dtype": "DT_FLOAT"}},
                 "outputs": {"b": {"name": "net/offset:0"}, "a": {"name": "net/heatmap:0"}}}
    (_, _), outputs = tfjs_graph.signature_tensors(signature, ["net/heatmap", "net/offset"], tmp_path)
    assert outputs == ["net/heatmap:0", "net/offset:0"]
    with pytest.raises(TfjsGraphError, match="no output 'net/other'"):
        tfjs_graph.signature_tensors(signature, ["net/heatmap", "net/other"], tmp_path)
