"""Each converter on a tiny model (real images as calibration), plus determinism of every step."""
import hashlib

import numpy as np
import pytest

from conftest import TINY_DECODER, TINY_INPUT
from posezoo.converters import parity
from posezoo.converters.onnx_fp16 import onnx_to_fp16
from posezoo.converters.onnx_int8 import onnx_to_int8, output_head_nodes
from posezoo.converters.onnx_to_tflite import onnx2tf_sample, onnx_to_tflite
from posezoo.converters.runtimes import open_runner
from posezoo.converters.simplify import simplify
from posezoo.converters.tflite_int8 import Int8Quantizer
from posezoo.converters.tflite_to_onnx import tflite_to_onnx
from posezoo.decoders import decode
from posezoo.converters.formats import embed
from posezoo.metadata import read_embedded

pytestmark = pytest.mark.slow


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def chain(tiny_tflite, tiny_samples, tmp_path_factory):
    out = tmp_path_factory.mktemp("chain")
    onnx = simplify(tflite_to_onnx(tiny_tflite, out / "raw.onnx"), out / "tiny_fp32.onnx")
    rgb = [np.clip(s.tensor[0] * 255, 0, 255).astype(np.uint8) for s in tiny_samples]
    tfl = onnx_to_tflite(onnx, out, "tiny", onnx2tf_sample(rgb), keep_nhwc_inputs=True)
    feeds = [{"image": s.tensor} for s in tiny_samples]
    reference = [open_runner(tiny_tflite, reference_kernels=True)(f) for f in feeds]
    return {"out": out, "onnx": onnx, "tflite": tfl, "feeds": feeds, "reference": reference, "rgb": rgb}


def report(chain, path):
    runner = open_runner(path, reference_kernels=True)
    return parity.compare(chain["reference"], [runner(f) for f in chain["feeds"]],
                          lambda o: decode(TINY_DECODER, o), 32.0)


def test_tflite_to_onnx_and_onnx2tf_match_the_original(chain):
    for path in (chain["onnx"], chain["tflite"].fp32):
        r = parity.apply_gate(report(chain, path), parity.DEFAULT_THRESHOLDS["fp32"])
        assert r.passed, (path, r.failures)
    assert parity.apply_gate(report(chain, chain["tflite"].fp16), parity.DEFAULT_THRESHOLDS["fp16"]).passed


def test_onnx_fp16_keeps_float32_io(chain):
    fp16 = onnx_to_fp16(chain["onnx"], chain["out"] / "tiny_fp16.onnx")
    io = open_runner(fp16).io_details()
    assert io["inputs"][0]["dtype"] == "float32" and io["outputs"][0]["dtype"] == "float32"
    import onnx

    weights = [i for i in onnx.load(str(fp16)).graph.initializer if len(i.dims) == 4]
    assert weights and all(w.data_type == onnx.TensorProto.FLOAT16 for w in weights)
    assert report(chain, fp16).summary()["cos"] > 0.9999


def test_onnx_int8_is_qdq_and_float_nodes_stay_float(chain):
    import onnx

    path = onnx_to_int8(chain["onnx"], chain["out"] / "q.onnx", chain["feeds"])
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    assert report(chain, path).pck["0.05"] > 0.5
    first_conv = next(n for n in onnx.load(str(chain["onnx"])).graph.node if n.op_type == "Conv")
    partial = onnx_to_int8(chain["onnx"], chain["out"] / "q2.onnx", chain["feeds"], float_nodes=[first_conv.name])
    graph = onnx.load(str(partial)).graph
    conv = next(n for n in graph.node if n.name == first_conv.name)
    assert conv.input[1] in {i.name for i in graph.initializer}  # float weight, no DequantizeLinear
    quantized_conv = next(n for n in onnx.load(str(path)).graph.node if n.name == first_conv.name)
    assert quantized_conv.input[1] not in {i.name for i in onnx.load(str(path)).graph.initializer}


def test_output_heads_are_the_ops_that_write_the_outputs(chain):
    import onnx

    graph = onnx.load(str(chain["onnx"])).graph
    heads = output_head_nodes(chain["onnx"])
    producers = {o: n.name for n in graph.node for o in n.output}
    assert heads[0] == producers[graph.output[0].name]
    assert set(heads) <= {n.name for n in graph.node}


def test_onnx_int8_activation_ranges_are_the_least_error_ones_unless_a_calibrator_is_named(chain):
    import onnx
    from onnx import numpy_helper

    from posezoo.converters.activation_ranges import least_error_ranges
    from posezoo.converters.onnx_int8 import every_activation

    chosen = least_error_ranges(every_activation(chain["onnx"], chain["feeds"]))
    scales = {}
    for method in ("mse", "minmax"):
        graph = onnx.load(str(onnx_to_int8(chain["onnx"], chain["out"] / f"{method}.onnx", chain["feeds"], method))).graph
        constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        scales[method] = {n.input[0]: float(constants[n.input[1]]) for n in graph.node
                          if n.op_type == "QuantizeLinear" and n.input[0] in chosen}
    assert len(scales["mse"]) > 3
    for name, scale in scales["mse"].items():
        low, high = chosen[name]
        assert scale == pytest.approx((high - low) / 255, rel=1e-5), name
    assert any(scales["minmax"][n] > scales["mse"][n] * 1.01 for n in scales["mse"])  # some tail was clipped


def test_tflite_int8_is_integer_kernels_with_float_io_named_like_onnx(chain):
    """Integer kernels inside, float32 input and output (LiteRT.js cannot feed an int8 input)."""
    calib = [f["image"] for f in chain["feeds"]]
    path = Int8Quantizer(chain["tflite"].saved_model, calib, ["Identity"]).write([], chain["out"] / "q.tflite")
    io = open_runner(path).io_details()
    assert [o["name"] for o in io["outputs"]] == ["Identity"]  # named like the ONNX output
    assert io["inputs"][0]["dtype"] == "float32" and io["outputs"][0]["dtype"] == "float32"
    ops = open_runner(path).runtime.interpreter._get_ops_details()
    assert ops[0]["op_name"] == "QUANTIZE" and {"CONV_2D", "DEPTHWISE_CONV_2D"} <= {op["op_name"] for op in ops}
    assert [op["op_name"] for op in ops].count("DEQUANTIZE") == 1  # the output's; every kernel is integer
    assert report(chain, path).pck["0.05"] > 0.5


def test_tflite_int8_weights_take_one_scale_only_where_a_channel_has_few_weights(chain):
    """The tiny net's 1x1 conv (8 weights per output channel) gets one weight scale and one bias
    scale; its 3x3 conv (27) and its depthwise conv (9, but depthwise) keep one per channel."""
    calib = [f["image"] for f in chain["feeds"]]
    path = Int8Quantizer(chain["tflite"].saved_model, calib, ["Identity"]).write([], chain["out"] / "q.tflite")
    interpreter = open_runner(path).runtime.interpreter
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    scales = {}
    for op in interpreter._get_ops_details():
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            weight, bias = (details[i] for i in op["inputs"][1:3])
            per_channel = int(np.prod(weight["shape"])) // (weight["shape"][0] if op["op_name"] == "CONV_2D"
                                                            else weight["shape"][-1])
            scales[op["op_name"], per_channel] = (len(weight["quantization_parameters"]["scales"]),
                                                  len(bias["quantization_parameters"]["scales"]))
    assert scales == {("CONV_2D", 27): (8, 8), ("DEPTHWISE_CONV_2D", 9): (8, 8), ("CONV_2D", 8): (1, 1)}
    # weights whose rounding was learned keep the per-channel grid they were learned on, everywhere
    learned = Int8Quantizer(chain["tflite"].saved_model, calib, ["Identity"], learned_grid=True)
    assert not learned.per_tensor and Int8Quantizer(chain["tflite"].saved_model, calib, ["Identity"]).per_tensor


def test_tflite_plan_floats_ops_on_int8_weights_and_gives_the_same_bytes_twice(chain):
    from posezoo.converters.complexity import tflite_int8_weight_share

    calib = [f["image"] for f in chain["feeds"]]
    quantizer = Int8Quantizer(chain["tflite"].saved_model, calib, ["Identity"])
    knobs, heads = quantizer.knobs()
    assert heads and heads[0] == knobs[-1].name  # the op writing the output
    plan = [k.name for k in knobs[:2]] + heads
    path = quantizer.write(plan, chain["out"] / "plan.tflite")
    assert tflite_int8_weight_share(path) == 1.0  # floated ops keep int8 weights
    assert "DEQUANTIZE" in {op["op_name"] for op in open_runner(path).runtime.interpreter._get_ops_details()}
    assert quantizer.quantize(plan) == quantizer.quantize(plan) != quantizer.quantize([])
    again = Int8Quantizer(chain["tflite"].saved_model, calib, ["Identity"])
    assert again.quantize(plan) == quantizer.quantize(plan)  # calibration is deterministic too


def test_tflite_activation_ranges_do_not_depend_on_the_order_of_the_calibration_inputs(chain):
    """The quantizer's own calibration (a moving average of each input's min/max) weighs the last
    inputs most; ours reads them all alike."""
    calib = [f["image"] for f in chain["feeds"]]
    forward, backward = (Int8Quantizer(chain["tflite"].saved_model, inputs, ["Identity"]).ranges
                         for inputs in (calib, calib[::-1]))
    activations = [n for n in forward if "min" in forward[n] and np.asarray(forward[n]["min"]).size == 1]
    assert len(activations) > 3
    for name in activations:
        assert np.allclose([forward[name]["min"], forward[name]["max"]],
                           [backward[name]["min"], backward[name]["max"]], rtol=0.02, atol=1e-6), name


def test_tflite_sensitivity_is_each_ops_error_alone(chain):
    calib = [f["image"] for f in chain["feeds"]]
    quantizer = Int8Quantizer(chain["tflite"].saved_model, calib, ["Identity"])
    knobs, heads = quantizer.knobs()
    measure = quantizer.measure_sensitivity([k for k in knobs if k.name not in heads], 3, "Identity")
    assert "3 calibration people" in measure
    assert any(k.sensitivity > 0 for k in knobs)
    conv = next(k for k in knobs if "conv" in k.name.lower() or "Conv" in k.name)
    assert conv.sensitivity > 0
    assert [k.sensitivity for k in knobs if k.name in heads] == [0.0] * len(heads)  # raised in every plan


def test_every_conversion_is_deterministic(chain, tiny_tflite, tmp_path):
    again = simplify(tflite_to_onnx(tiny_tflite, tmp_path / "raw.onnx"), tmp_path / "tiny_fp32.onnx")
    assert digest(again) == digest(chain["onnx"])
    tfl = onnx_to_tflite(again, tmp_path, "tiny", onnx2tf_sample(chain["rgb"]), keep_nhwc_inputs=True)
    assert digest(tfl.fp32) == digest(chain["tflite"].fp32) and digest(tfl.fp16) == digest(chain["tflite"].fp16)
    assert digest(onnx_to_fp16(again, tmp_path / "a.onnx")) == digest(onnx_to_fp16(again, tmp_path / "b.onnx"))
    q = [digest(onnx_to_int8(again, tmp_path / f"q{i}.onnx", chain["feeds"])) for i in range(2)]
    assert q[0] == q[1]
    calib = [f["image"] for f in chain["feeds"]]
    t = [digest(Int8Quantizer(tfl.saved_model, calib, ["Identity"]).write([], tmp_path / f"t{i}.tflite"))
         for i in range(2)]
    assert t[0] == t[1]


def test_metadata_embedded_in_both_formats(chain, tmp_path):
    import shutil

    for src in (chain["onnx"], chain["tflite"].fp32):
        dst = tmp_path / src.name
        shutil.copy(src, dst)
        embed(dst, {"id": "tiny", "input": TINY_INPUT})
        assert read_embedded(dst) == {"id": "tiny", "input": TINY_INPUT}
        (output,) = open_runner(dst)({"image": chain["feeds"][0]["image"]}).values()
        assert output.shape == (1, 10)


def test_int8_weight_share_counts_kernel_bytes_stored_in_int8(tmp_path):
    """A float kernel and an int8 kernel of equal size: a fifth of the weight bytes are int8 (4 bytes
    a float, 1 an int8); 1-D tensors (biases, shapes) do not count."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from posezoo.converters.complexity import onnx_int8_weight_share

    inits = [numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.float32), "w_float"),
             numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.int8), "w_int8"),
             numpy_helper.from_array(np.zeros(1000, np.float32), "bias")]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], inits)
    onnx.save(helper.make_model(graph), tmp_path / "m.onnx")
    assert onnx_int8_weight_share(tmp_path / "m.onnx") == 0.2


def test_onnx_fp16_points_the_graphs_own_casts_to_float16(tmp_path):
    """uint8 pixels cast to float inside the graph (MoveNet): onnxconverter-common alone leaves
    the cast at float32 and onnxruntime refuses the file; ours runs and keeps float32 I/O."""
    import onnx
    from onnx import TensorProto, helper

    scale = helper.make_tensor("scale", TensorProto.FLOAT, [1], [0.5])
    graph = helper.make_graph(
        [helper.make_node("Cast", ["pixels"], ["as_float"], to=TensorProto.FLOAT),
         helper.make_node("Mul", ["as_float", "scale"], ["half"])], "g",
        [helper.make_tensor_value_info("pixels", TensorProto.UINT8, [1, 4])],
        [helper.make_tensor_value_info("half", TensorProto.FLOAT, [1, 4])], [scale])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    out = onnx_to_fp16(tmp_path / "m.onnx", tmp_path / "m16.onnx")
    y = open_runner(out)({"pixels": np.array([[0, 1, 2, 255]], np.uint8)})["half"]
    assert y.dtype == np.float32 and y.tolist() == [[0, 0.5, 1, 127.5]]


def test_tflite_a16w8_fallback_raises_ops_to_int16_activations_on_int8_weights(chain):
    from posezoo.converters.complexity import tflite_int8_weight_share

    calib = [f["image"] for f in chain["feeds"]]
    quantizer = Int8Quantizer(chain["tflite"].saved_model, calib, ["Identity"], fallback="a16w8")
    knobs, heads = quantizer.knobs()
    assert {k.raised for k in knobs if k.name not in heads[:1]} == {"a16w8"}
    path = quantizer.write([k.name for k in knobs], chain["out"] / "a16w8.tflite")
    io = open_runner(path).io_details()
    assert io["inputs"][0]["dtype"] == "float32" and io["outputs"][0]["dtype"] == "float32"
    interpreter = open_runner(path).runtime.interpreter
    int16 = {t["name"] for t in interpreter.get_tensor_details() if t["dtype"] == np.int16}
    assert len(int16) > 2  # the raised ops write int16 activations
    assert tflite_int8_weight_share(path) == 1.0
    assert report(chain, path).pck["0.05"] > 0.5


def test_tiles_of_size_one_axes_reach_onnx2tf_as_the_expands_they_equal(tmp_path):
    """onnx2tf 1.29.24 misreads a Tile's constant repeats (MoveNet MultiPose's [1, 1, 17] became
    [1]); for_onnx2tf hands it an Expand instead where the Tile only repeats axes of size 1, and
    leaves a Tile that repeats a longer axis alone."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from posezoo.converters.onnx_to_tflite import for_onnx2tf

    graph = helper.make_graph(
        [helper.make_node("Tile", ["x", "r1"], ["y1"], name="tile_ones"),
         helper.make_node("Tile", ["y1", "r2"], ["y2"], name="tile_long")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 1])],
        [helper.make_tensor_value_info("y2", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array([1, 1, 17], np.int64), "r1"),
         numpy_helper.from_array(np.array([1, 2, 1], np.int64), "r2")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "in.onnx")
    for_onnx2tf(tmp_path / "in.onnx", tmp_path / "out.onnx")
    assert [n.op_type for n in onnx.load(tmp_path / "out.onnx").graph.node] == ["Expand", "Tile"]
    x = np.arange(6, dtype=np.float32).reshape(1, 6, 1)
    before, after = (ort.InferenceSession(str(tmp_path / f), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
                     for f in ("in.onnx", "out.onnx"))
    assert after.shape == (1, 12, 17) and np.array_equal(before, after)


def test_fp16_gives_a_constant_shared_with_a_float32_op_its_own_copy(tmp_path):
    """onnxconverter-common keeps Min in float32 and with it the constant Min shares with Sub; the
    float16 Sub would then mix types and onnxruntime refuses the file (MoveNet MultiPose)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Sub", ["one", "x"], ["a"]), helper.make_node("Min", ["a", "one"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(np.array(1.0, np.float32), "one")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "fp32.onnx")
    onnx_to_fp16(tmp_path / "fp32.onnx", tmp_path / "fp16.onnx")
    session = ort.InferenceSession(str(tmp_path / "fp16.onnx"), providers=["CPUExecutionProvider"])
    x = np.array([[0.25, 0.5, -2.0, 3.0]], np.float32)
    np.testing.assert_allclose(session.run(None, {"x": x})[0], np.minimum(1 - x, 1), atol=1e-3)


def test_int8_knobs_of_a_graph_with_an_op_of_two_outputs(tmp_path):
    """MoveNet's graphs split and unpack tensors: ops with several outputs get one knob, by their first."""
    import tensorflow as tf

    class Net(tf.Module):
        weights = tf.constant(np.random.default_rng(0).normal(0, 0.3, (3, 3, 3, 4)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
        def __call__(self, x):
            first, second = tf.split(tf.nn.conv2d(x, self.weights, 1, "SAME"), 2, axis=-1)
            return {"Identity": first * second}

    net = Net()
    tf.saved_model.save(net, str(tmp_path / "net"), signatures=net.__call__)
    calib = [np.random.default_rng(k).random((1, 8, 8, 3), np.float32) for k in range(4)]
    quantizer = Int8Quantizer(tmp_path / "net", calib, ["Identity"])
    knobs, heads = quantizer.knobs()
    ops = {op["op_name"] for op in quantizer.interpreter._get_ops_details()}
    assert "SPLIT" in ops and len(knobs) == len(ops) and heads
