"""Full-integer TFLite -> ONNX with LiteRT's integer arithmetic reproduced, and the tensor walk.

Fast tests run each rewrite on a hand-built QDQ graph against a numpy model of XNNPACK's integer
kernels (exhaustively where the input space is small). Slow tests convert a small full-integer
model made here and the genuine MoveNet Lightning INT8, and compare with the LiteRT interpreter
(default kernels) on real photos.
"""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from posezoo.converters.tflite_int8_to_onnx import _reproduce_integer_semantics, quantized_tflite_to_onnx

MOVENET = "checkpoints/movenet/lite-model_movenet_singlepose_lightning_tflite_int8_4.tflite"
MOVENET_INPUT = {"shape": [1, 192, 192, 3], "dtype": "uint8", "layout": "NHWC"}


# --------------------------------------------------------------------------------------------
# numpy models of XNNPACK's integer kernels (from its parameter-init code and scalar kernels)
# --------------------------------------------------------------------------------------------

def xnn_add(a, b, qa, qb, qo, subtract=False, lo=-128, hi=127, dtype=np.int8):
    """qs8 add/subtract: 20-bit multipliers, arithmetic shift with the rounding constant (ties up)."""
    (sa, za), (sb, zb), (so, zo) = qa, qb, qo
    ra, rb = np.float32(np.float32(sa) / np.float32(so)), np.float32(np.float32(sb) / np.float32(so))
    shift = 20 - (int(np.frexp(max(ra, rb))[1]) - 1)
    ma, mb = (int(np.rint(np.float32(r) * np.float32(2.0 ** shift))) for r in (ra, rb))
    mb = -mb if subtract else mb
    bias = (1 << (shift - 1)) - ma * za - mb * zb
    acc = bias + a.astype(np.int64) * ma + b.astype(np.int64) * mb
    return np.clip((acc >> shift) + zo, lo, hi).astype(dtype)


def xnn_convert(x, qi, qo):
    """qs8 -> qs8 convert: 8-bit multiplier lrintf(256 * si / so), arithmetic shift by 8 (ties up)."""
    (si, zi), (so, zo) = qi, qo
    mult = int(np.rint(np.float32(256.0) * np.float32(np.float32(si) / np.float32(so))))
    acc = (x.astype(np.int64) - zi) * mult + (zo << 8) + 128
    return np.clip(acc >> 8, -128, 127).astype(np.int8)


def xnn_conv(x, w, b, sx, zx, sw, sy, zy, stride=1, pad=0, group=1, lo=-128, hi=127, dtype=np.int8):
    """qs8/qu8 conv (NCHW here; `w` with its zero point removed): exact int accumulator, then
    f32(acc) * f32(f32(sx * sw) / sy), clamped, lrintf, + zy."""
    xp = np.pad(x.astype(np.int64) - zx, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, c, hgt, wid = xp.shape
    cout, cin_g, kh, kw = w.shape
    oh, ow = (hgt - kh) // stride + 1, (wid - kw) // stride + 1
    acc = np.zeros((n, cout, oh, ow), np.int64)
    per_group = cout // group
    for o in range(cout):
        g = o // per_group
        for i in range(cin_g):
            for dy in range(kh):
                for dx in range(kw):
                    patch = xp[:, g * cin_g + i, dy:dy + stride * oh:stride, dx:dx + stride * ow:stride]
                    acc[:, o] += patch * int(w[o, i, dy, dx])
    acc += b.reshape(1, -1, 1, 1)
    sw = np.broadcast_to(np.asarray(sw, np.float32), (cout,))
    scale = ((np.float32(sx) * sw).astype(np.float32) / np.float32(sy)).astype(np.float32)
    y = acc.astype(np.float32) * scale.reshape(1, -1, 1, 1)
    y = np.clip(y, lo - zy, hi - zy)
    return (np.rint(y) + zy).astype(dtype)


# --------------------------------------------------------------------------------------------
# hand-built QDQ graphs, shaped like tf2onnx's output
# --------------------------------------------------------------------------------------------

class QDQ:
    def __init__(self):
        self.nodes, self.inits, self.k = [], [], 0

    def const(self, value, dtype):
        self.k += 1
        name = f"c{self.k}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def dq(self, x, scale, zero_point, zp_dtype=np.int8, axis=None):
        self.k += 1
        out = f"dq{self.k}"
        attrs = {} if axis is None else {"axis": axis}
        self.nodes.append(helper.make_node("DequantizeLinear", [x, self.const(scale, np.float32),
                                                                self.const(zero_point, zp_dtype)], [out], **attrs))
        return out

    def op(self, op_type, inputs, **attrs):
        self.k += 1
        out = f"{op_type.lower()}{self.k}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def q(self, x, scale, zero_point, out="y", zp_dtype=np.int8):
        self.nodes.append(helper.make_node("QuantizeLinear", [x, self.const(scale, np.float32),
                                                              self.const(zero_point, zp_dtype)], [out]))
        return out

    def model(self, inputs, elem_type=TensorProto.INT8):
        graph = helper.make_graph(self.nodes, "qdq", [helper.make_tensor_value_info(n, elem_type, s)
                                                      for n, s in inputs],
                                  [helper.make_empty_tensor_value_info("y")], self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model, feeds):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(
        None, feeds)[0]


ALL_INT8 = np.arange(-128, 128, dtype=np.int8)


@pytest.mark.parametrize("op,qa,qb,qo,relu", [
    ("Add", (0.0235, -3), (0.0412, 7), (0.0530, -10), False),
    ("Add", (0.5, 0), (0.0039, -128), (0.0201, 5), True),
    ("Sub", (0.0171, 12), (0.0309, -5), (0.0402, 2), False),
])
def test_add_sub_rewrite_matches_xnnpack_on_every_int8_pair(op, qa, qb, qo, relu):
    g = QDQ()
    y = g.op(op, [g.dq("a", *qa), g.dq("b", *qb)])
    if relu:
        y = g.op("Relu", [y])
    g.q(y, *qo)
    model = g.model([("a", [256, 1]), ("b", [1, 256])])
    a, b = ALL_INT8.reshape(256, 1), ALL_INT8.reshape(1, 256)
    report = _reproduce_integer_semantics(model)
    assert report["rewrites"]["add_sub"] == 1
    expected = xnn_add(a, b, qa, qb, qo, subtract=op == "Sub", lo=qo[1] if relu else -128)
    assert np.array_equal(run(model, {"a": a, "b": b}), expected)


@pytest.mark.parametrize("qi,qo", [((0.0235, -3), (0.0172, 9)), ((0.1, 0), (0.3333, -128)), ((0.01, 5), (0.0027, 0))])
def test_requantize_rewrite_matches_xnnpack_on_every_int8_value(qi, qo):
    g = QDQ()
    g.q(g.dq("a", *qi), *qo)
    model = g.model([("a", [256])])
    assert _reproduce_integer_semantics(model)["rewrites"]["requantize"] == 1
    assert np.array_equal(run(model, {"a": ALL_INT8}), xnn_convert(ALL_INT8, qi, qo))


@pytest.mark.parametrize("wide", [False, True])
def test_conv_rewrite_matches_integer_reference(wide):
    """A 3x3 conv, a depthwise conv (ReLU6 folded into the clamp) and, with `wide`, a conv whose
    static accumulator bound exceeds 2^24 (the ConvInteger path)."""
    rng = np.random.default_rng(1)
    cin, cout = (512, 4) if wide else (6, 5)
    x = rng.integers(-128, 128, (2, cin, 9, 9)).astype(np.int8)
    w = rng.choice([-127, 127], (cout, cin, 3, 3)) if wide else rng.integers(-127, 128, (cout, cin, 3, 3))
    w = w.astype(np.int8)
    sx, zx, sy, zy = 0.02, -7, 0.05 if not wide else 40.0, 3
    sw = rng.uniform(0.002, 0.01, cout).astype(np.float32)
    b = rng.integers(-2000, 2000, cout).astype(np.int32)
    dw = rng.integers(-127, 128, (cout, 1, 3, 3)).astype(np.int8)
    sdw = rng.uniform(0.002, 0.01, cout).astype(np.float32)
    bdw = rng.integers(-500, 500, cout).astype(np.int32)
    s2, z2 = 0.023, -128

    g = QDQ()
    wq, dwq = g.const(w, np.int8), g.const(dw, np.int8)
    conv = g.op("Conv", [g.dq("x", sx, zx), g.dq(wq, sw, np.zeros(cout), axis=0),
                         g.dq(g.const(b, np.int32), sx * sw, np.zeros(cout), np.int32, axis=0)], pads=[1, 1, 1, 1])
    h = g.q(conv, sy, zy, out="h")
    depthwise = g.op("Conv", [g.dq(h, sy, zy), g.dq(dwq, sdw, np.zeros(cout), axis=0),
                              g.dq(g.const(bdw, np.int32), np.float32(sy) * sdw, np.zeros(cout), np.int32, axis=0)],
                     group=cout, strides=[2, 2], pads=[1, 1, 1, 1])
    g.q(g.op("Clip", [depthwise, g.const(0.0, np.float32), g.const(6.0, np.float32)]), s2, z2)
    model = g.model([("x", list(x.shape))])

    report = _reproduce_integer_semantics(model)
    assert report["rewrites"]["conv"] == 2
    assert report["rewrites"].get("conv_integer_accumulator", 0) == (1 if wide else 0)
    hidden = xnn_conv(x, w, b, sx, zx, sw, sy, zy, pad=1)
    relu6_hi = min(127, int(np.rint(np.float32(6.0) / np.float32(s2) + z2)))
    expected = xnn_conv(hidden, dw, bdw, sy, zy, sdw, s2, z2, stride=2, pad=1, group=cout, lo=z2, hi=relu6_hi)
    assert np.array_equal(run(model, {"x": x}), expected)


def test_uint8_conv_and_add_match_xnnpack():
    """Older quantized TFLite models are uint8 throughout, with per-tensor weight zero points."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (2, 4, 7, 7)).astype(np.uint8)
    w = rng.integers(0, 256, (4, 4, 3, 3)).astype(np.uint8)
    b = rng.integers(-3000, 3000, 4).astype(np.int32)
    (sx, zx), (sw, zw), (sy, zy), (so, zo) = (0.02, 128), (0.004, 131), (0.06, 10), (0.05, 120)
    g = QDQ()
    conv = g.op("Conv", [g.dq("x", sx, zx, np.uint8), g.dq(g.const(w, np.uint8), sw, zw, np.uint8),
                         g.dq(g.const(b, np.int32), np.float32(sx) * np.float32(sw), 0, np.int32)], pads=[1, 1, 1, 1])
    h = g.q(g.op("Relu", [conv]), sy, zy, "h", np.uint8)
    g.q(g.op("Add", [g.dq(h, sy, zy, np.uint8), g.dq("x", sx, zx, np.uint8)]), so, zo, "y", np.uint8)
    model = g.model([("x", list(x.shape))], TensorProto.UINT8)
    report = _reproduce_integer_semantics(model)
    assert report["rewrites"]["conv"] == 1 and report["rewrites"]["add_sub"] == 1
    hidden = xnn_conv(x, w.astype(np.int64) - zw, b, sx, zx, sw, sy, zy, pad=1, lo=zy, hi=255, dtype=np.uint8)
    expected = xnn_add(hidden, x, (sy, zy), (sx, zx), (so, zo), lo=0, hi=255, dtype=np.uint8)
    assert np.array_equal(run(model, {"x": x}), expected)


@pytest.mark.parametrize("scale,rewritten", [(2.0, True), (4.0, True), (3.0, False)])
def test_resize_rewrite_only_where_exact(scale, rewritten):
    rng = np.random.default_rng(2)
    x = rng.integers(-128, 128, (1, 3, 5, 6)).astype(np.int8)
    g = QDQ()
    resized = g.op("Resize", [g.dq("x", 0.04, -2), "", g.const([1, 1, scale, scale], np.float32)],
                   mode="linear", coordinate_transformation_mode="half_pixel")
    g.q(resized, 0.04, -2)
    model = g.model([("x", list(x.shape))])
    report = _reproduce_integer_semantics(model)
    assert report["rewrites"]["resize"] == int(rewritten)
    if not rewritten:
        assert report["left_alone"] == {"Resize(linear): interpolation weights not dyadic": 1}
        return
    # XNNPACK: the bilinear value with 11-bit weights, rounded half up; dyadic weights are exact
    assert np.array_equal(run(model, {"x": x}), np.clip(np.floor(bilinear(x, scale) + 0.5), -128, 127))


def bilinear(x, scale):
    """Half-pixel bilinear resize of the last two axes in float64 (exact for dyadic weights)."""
    out = x.astype(np.float64)
    for axis in (2, 3):
        n = out.shape[axis]
        src = np.clip((np.arange(int(n * scale)) + 0.5) / scale - 0.5, 0, n - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n - 1)
        shape = [1] * out.ndim
        shape[axis] = -1
        frac = (src - lo).reshape(shape)
        out = np.take(out, lo, axis=axis) * (1 - frac) + np.take(out, hi, axis=axis) * frac
    return out


# --------------------------------------------------------------------------------------------
# real conversions (slow)
# --------------------------------------------------------------------------------------------

def interpreter_outputs(tflite_path, inputs):
    from posezoo.converters.runtimes import open_runner

    runner = open_runner(tflite_path)  # default kernels: XNNPACK
    return [next(iter(runner({"input": x}).values())) for x in inputs]


def onnx_outputs(onnx_path, inputs):
    from posezoo.converters.runtimes import open_runner

    runner = open_runner(onnx_path)
    return [next(iter(runner({"input": x}).values())) for x in inputs]


@pytest.fixture(scope="module")
def tiny_int8(tmp_path_factory, images):
    """A small full-integer model: conv + ReLU6, depthwise, residual ADD, a wide 3x3 conv (128
    input channels, +-1 weights: static accumulator bound over 2^24), SUB, 2x bilinear resize."""
    import tensorflow as tf

    from posezoo.converters.calibration import load_samples

    rng = np.random.default_rng(0)
    w1 = tf.constant(rng.normal(0, 0.3, (3, 3, 3, 8)).astype(np.float32))
    dw = tf.constant(rng.normal(0, 0.3, (3, 3, 8, 1)).astype(np.float32))
    w2 = tf.constant(rng.normal(0, 0.3, (1, 1, 8, 8)).astype(np.float32))
    w3 = tf.constant(rng.normal(0, 0.3, (1, 1, 8, 128)).astype(np.float32))
    w4 = tf.constant(rng.choice([-0.02, 0.02], (3, 3, 128, 8)).astype(np.float32))
    w5 = tf.constant(rng.normal(0, 0.3, (3, 3, 8, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 64, 64, 3], tf.float32, name="image")])
    def net(image):
        c1 = tf.nn.relu6(tf.nn.conv2d(image, w1, 2, "SAME"))
        d1 = tf.nn.relu6(tf.nn.depthwise_conv2d(c1, dw, [1, 1, 1, 1], "SAME"))
        r = c1 + tf.nn.conv2d(d1, w2, 1, "SAME")
        e = tf.nn.relu(tf.nn.conv2d(r, w3, 1, "SAME"))
        s = tf.nn.conv2d(e, w4, 1, "SAME") - r
        u = tf.image.resize(s, (64, 64), "bilinear")
        return {"out": tf.nn.conv2d(u, w5, 1, "SAME")}

    spec = {"shape": [1, 64, 64, 3], "dtype": "float32", "layout": "NHWC",
            "normalization": {"mean": [0, 0, 0], "std": [255, 255, 255]}}
    samples = [s.tensor for s in load_samples(images / "coco", spec, {"kind": "box", "padding": 1.25})]
    converter = tf.lite.TFLiteConverter.from_concrete_functions([net.get_concrete_function()], net)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x] for x in samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    out = tmp_path_factory.mktemp("tiny_int8")
    (out / "tiny_int8.tflite").write_bytes(converter.convert())
    inputs = [np.round(x * 255).astype(np.uint8) for x in samples]
    return out / "tiny_int8.tflite", inputs


@pytest.mark.slow
def test_small_full_integer_model_is_bit_exact(tiny_int8, tmp_path):
    from posezoo.converters.tensor_walk import first_departures

    tflite, inputs = tiny_int8
    report = quantized_tflite_to_onnx(tflite, tmp_path / "tiny.onnx")
    assert report["rewrites"]["conv"] == 6 and report["rewrites"]["conv_integer_accumulator"] == 1
    assert report["rewrites"]["add_sub"] == 2 and report["rewrites"]["resize"] == 1
    ref, got = interpreter_outputs(tflite, inputs), onnx_outputs(tmp_path / "tiny.onnx", inputs)
    assert all(np.array_equal(r, g) for r, g in zip(ref, got))
    assert first_departures(tflite, tmp_path / "tiny.onnx", inputs[:4], steps=0) == []


def pck(ref, got, alpha):
    """MoveNet outputs (y, x, score) normalized to the input: distance over the input size."""
    d = np.concatenate([np.linalg.norm(r[0, 0, :, :2] - g[0, 0, :, :2], axis=-1) for r, g in zip(ref, got)])
    return float(np.mean(d <= alpha))


def output_step(tflite_path):
    """Quantization step of the int8 tensor the model dequantizes into its output."""
    from ai_edge_litert.tools import flatbuffer_utils

    sub = flatbuffer_utils.read_model(str(tflite_path)).subgraphs[0]
    out = int(sub.outputs[0])
    producer = next(op for op in sub.operators if out in list(op.outputs))
    return float(sub.tensors[int(producer.inputs[0])].quantization.scale[0])


@pytest.fixture(scope="module")
def movenet(shared, images, tmp_path_factory):
    from posezoo.converters.calibration import load_samples
    from posezoo.converters.tflite_to_onnx import tflite_to_onnx

    tflite = shared / MOVENET
    assert tflite.is_file(), f"genuine MoveNet Lightning INT8 missing: {tflite}"
    sets = {"single": [s.tensor for s in load_samples(images / "single", MOVENET_INPUT,
                                                      {"kind": "whole_image", "resize": "stretch"})],
            "coco": [s.tensor for s in load_samples(images / "coco", MOVENET_INPUT, {"kind": "box", "padding": 1.25})
                     if s.person.keypoints]}
    out = tmp_path_factory.mktemp("movenet")
    report = quantized_tflite_to_onnx(tflite, out / "fixed.onnx")
    tflite_to_onnx(tflite, out / "plain.onnx")  # tf2onnx alone
    ref = {k: interpreter_outputs(tflite, v) for k, v in sets.items()}
    got = {name: {k: onnx_outputs(out / f"{name}.onnx", v) for k, v in sets.items()} for name in ("fixed", "plain")}
    return {"tflite": tflite, "out": out, "report": report, "sets": sets, "ref": ref, "got": got}


@pytest.mark.slow
def test_movenet_report_names_the_rewrites(movenet):
    report = movenet["report"]
    assert report["rewrites"]["conv"] == 74  # 50 CONV_2D + 24 DEPTHWISE_CONV_2D
    assert report["rewrites"]["add_sub"] >= 19 and report["rewrites"]["resize"] == 3
    assert report["rewrites"]["requantize"] >= 1
    assert "Mul" in report["left_alone"]  # the decoder's quantized MUL ops stay as tf2onnx wrote them


@pytest.mark.slow
def test_movenet_output_equals_the_interpreter(movenet):
    step = output_step(movenet["tflite"])
    for name in movenet["sets"]:
        for r, g in zip(movenet["ref"][name], movenet["got"]["fixed"][name]):
            assert np.abs(r - g).max() <= step * 1.001
        assert pck(movenet["ref"][name], movenet["got"]["fixed"][name], 0.02) >= 0.90
        assert pck(movenet["ref"][name], movenet["got"]["fixed"][name], 0.05) >= 0.98


@pytest.mark.slow
def test_plain_tf2onnx_is_measurably_worse(movenet):
    ref = sum(movenet["ref"].values(), [])
    fixed, plain = (sum(movenet["got"][n].values(), []) for n in ("fixed", "plain"))
    step = output_step(movenet["tflite"])
    assert max(np.abs(r - g).max() for r, g in zip(ref, plain)) > 10 * step
    assert sum(np.array_equal(r, g) for r, g in zip(ref, plain)) < sum(np.array_equal(r, g) for r, g in zip(ref, fixed))
    assert pck(ref, plain, 0.01) <= pck(ref, fixed, 0.01) - 0.2
    assert pck(ref, plain, 0.02) < pck(ref, fixed, 0.02)


@pytest.mark.slow
def test_movenet_conversion_is_deterministic(movenet, tmp_path):
    quantized_tflite_to_onnx(movenet["tflite"], tmp_path / "again.onnx")
    assert (tmp_path / "again.onnx").read_bytes() == (movenet["out"] / "fixed.onnx").read_bytes()


@pytest.mark.slow
def test_tensor_walk_finds_the_departure_only_in_the_plain_model(movenet):
    from posezoo.converters.tensor_walk import first_departures, walk

    feeds = movenet["sets"]["single"] + movenet["sets"]["coco"][:4]
    fixed = walk(movenet["tflite"], movenet["out"] / "fixed.onnx", feeds)
    assert not fixed.unmatched and len(fixed.rows) > 150  # every op output found despite canonical names
    assert fixed.departures() == []
    plain = first_departures(movenet["tflite"], movenet["out"] / "plain.onnx", feeds, max_report=3)
    assert len(plain) == 3
    first = plain[0]
    assert first["units"] == "steps" and first["max_off"] > 1 and 0 < first["share_off"] <= 1
    assert first["op"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "SUB", "MUL", "RESIZE_BILINEAR", "QUANTIZE")
