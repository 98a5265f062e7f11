"""The per-tensor mixed-precision search (converters/mixed_precision.py) and its ONNX side: knobs,
plans applied to one QDQ graph, sensitivities (converters/onnx_int8.py)."""
from pathlib import Path

import numpy as np
import pytest

from posezoo.converters.mixed_precision import Knob, candidates, int8_byte_share, search


def knobs():
    return [Knob("a", "activation", 0, 0.5), Knob("w_big", "weight", 1000, 0.9), Knob("w_small", "weight", 10, 0.7),
            Knob("b", "activation", 0, 0.1), Knob("c", "activation", 0, 0.5)]


def test_byte_share_counts_a_float_element_as_four_bytes():
    assert int8_byte_share(100, 0) == 1.0
    assert int8_byte_share(100, 20) == pytest.approx(80 / (80 + 80))
    assert int8_byte_share(0, 0) == 0.0


def test_candidates_most_sensitive_first_ties_by_name_within_the_byte_budget():
    order = [k.name for k in candidates(knobs(), total_params=10_000, fixed_float_params=0, min_share=0.0)]
    assert order == ["w_big", "w_small", "a", "c", "b"]
    # 1000 float elements of 10 000 leave 9000 / (9000 + 4000) = 69 % in int8: w_big is never floated
    assert [k.name for k in candidates(knobs(), 10_000, 0, min_share=0.9)] == ["w_small", "a", "c", "b"]
    # the heads' float weights count against the budget too
    assert [k.name for k in candidates(knobs(), 10_000, 270, min_share=0.9)] == ["a", "c", "b"]


def run_search(passes_from, items=None):
    built = []

    def build(names):
        built.append(list(names))
        return Path(f"/plan-{len(names)}")

    def score(path):
        return 1.0 if passes_from is not None and len(built[-1]) >= passes_from else 0.4

    items = items or [Knob(f"k{i:02d}", "activation", 0, 1.0 / (i + 1)) for i in range(20)]
    return search(items, 0, 0, build, score, 1.0, "test measure"), built


def test_no_float_tensor_when_full_int8_passes():
    result, built = run_search(0)
    assert result.raised == [] and [t.raised for t in result.trials] == [0] and len(built) == 2


def test_doubles_then_bisects_to_the_shortest_passing_run_and_builds_it_last():
    result, built = run_search(5)
    assert [t.raised for t in result.trials] == [0, 1, 2, 4, 8, 6, 5]
    assert result.raised == [f"k{i:02d}" for i in range(5)] and built[-1] == result.raised
    plan = result.to_dict()["plan"]
    assert plan["sensitivity"] == "test measure"
    assert [n for n, t in plan["tensors"].items() if t["precision"] == "float"] == result.raised


def test_the_heads_outputs_are_float_in_every_trial_and_not_counted_as_found():
    items = [Knob(f"k{i:02d}", "activation", 0, 1.0 / (i + 1)) for i in range(20)] + [Knob("head", "activation", 0)]
    built = []

    def build(names):
        built.append(list(names))
        return Path("/plan")

    result = search(items, 0, 0, build, lambda path: 1.0 if len(built[-1]) >= 4 else 0.5, 1.0, "m", ["head"])
    assert all(b[0] == "head" for b in built)
    assert result.raised == ["head", "k00", "k01", "k02"] and [t.raised for t in result.trials] == [1, 2, 3, 5, 4]


def test_gives_up_when_even_every_candidate_float_fails():
    result, built = run_search(None)
    assert result.path is None and result.raised == []
    assert [t.raised for t in result.trials] == [0, 1, 2, 4, 8, 10]  # at most half the tensors float


def test_a_plan_that_needs_most_tensors_float_is_not_an_int8_model():
    result, _ = run_search(11)  # 11 of 20 tensors float would pass: a float model, not tried
    assert result.path is None


def test_a_file_holding_too_few_weight_bytes_in_int8_is_rejected_with_its_numbers(tmp_path):
    """Whatever its plan says, the file itself is measured: a mostly float file is not published."""
    from posezoo.converters import formats
    from posezoo.converters.mixed_precision import SearchResult
    from posezoo.converters.pipeline import _record_int8

    path = tiny_onnx(tmp_path / "m_int8.onnx")  # all float: 0 % of its weight bytes in int8
    built = formats.Int8Build(SearchResult(path, [Knob("w1", "weight", 216)], [], [], "m"), path, "minmax", "float",
                              {"method": "nearest"}, path, "int8 per-channel", "uint8")
    candidates, extra, lines = {}, {}, []
    _record_int8(candidates, extra, "onnx", built, lines.append, "m", None)
    assert candidates == {("onnx", "int8"): path}  # judged on the people all the same, then rejected
    assert extra["onnx", "int8"]["reason"].startswith("only 0.0% of its weight bytes are int8")
    assert extra["onnx", "int8"]["quantization"]["int8_weight_share"] == 0.0


def test_an_int8_file_over_its_size_target_is_rejected_with_its_numbers(quantized, tmp_path, monkeypatch):
    """A three-conv model's INT8 file is mostly QDQ bookkeeping, far over 0.40x the size of its FP32
    file: rejected for that even where its weights count as int8."""
    import dataclasses
    import shutil

    from posezoo.converters import formats
    from posezoo.converters.mixed_precision import SearchResult
    from posezoo.converters.pipeline import _record_int8

    monkeypatch.setitem(formats.FORMATS, "onnx", dataclasses.replace(formats.get("onnx"), int8_weight_share=lambda p: 1.0))
    fp32, qdq_path = quantized[:2]
    path = Path(shutil.copy(qdq_path, tmp_path / "m_int8.onnx"))
    built = formats.Int8Build(SearchResult(path, [Knob("w1", "weight", 216)], [], [], "m"), path, "minmax", "float",
                              {"method": "nearest"}, fp32, "int8 per-channel", "uint8")
    candidates, extra = {}, {}
    _record_int8(candidates, extra, "onnx", built, lambda line: None, "m", None)
    quantization = extra["onnx", "int8"]["quantization"]
    assert candidates == {("onnx", "int8"): path} and quantization["int8_weight_share"] == 1.0
    assert quantization["size"]["vs_fp32"] > 0.4 and quantization["size"]["target"] == 0.4
    assert "an INT8 file is at most 0.40x" in extra["onnx", "int8"]["reason"]


# ONNX: a three-conv graph (conv, Clip, conv, Relu, conv), quantized by onnxruntime.

def tiny_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, shape).astype(np.float32), name) for name, shape in
             (("w1", (8, 3, 3, 3)), ("b1", (8,)), ("w2", (8, 8, 3, 3)), ("b2", (8,)), ("w3", (4, 8, 1, 1)),
              ("b3", (4,)))]
    inits += [numpy_helper.from_array(np.float32(v), n) for n, v in (("lo", 0.0), ("hi", 6.0))]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Clip", ["c1", "lo", "hi"], ["r1"], name="clip1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("Conv", ["r2", "w3", "b3"], ["y"], name="conv3")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])], inits)
    onnx.save(helper.make_opset_model(graph, [helper.make_opsetid("", 17)]) if hasattr(helper, "make_opset_model")
              else helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    import onnx

    from posezoo.converters.onnx_int8 import onnx_to_int8, qdq_knobs

    folder = tmp_path_factory.mktemp("qdq")
    fp32 = tiny_onnx(folder / "fp32.onnx")
    rng = np.random.default_rng(1)
    feeds = [{"x": rng.uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)} for _ in range(4)]
    qdq_path = onnx_to_int8(fp32, folder / "int8.onnx", feeds, "minmax", ["conv3"])
    qdq = onnx.load(str(qdq_path))
    found, weights = qdq_knobs(qdq, onnx.load(str(fp32)))
    return fp32, qdq_path, qdq, found, weights, feeds


def run(model, feeds):
    from posezoo.runtime import OnnxRuntime

    runner = OnnxRuntime(model if isinstance(model, Path) else model.SerializeToString())
    return [runner(f)["y"] for f in feeds]


def test_knobs_are_the_quantized_weights_and_activations_the_heads_excluded(quantized):
    _, _, _, found, weights, _ = quantized
    assert {(k.name, k.kind, k.params) for k in found if k.kind == "weight"} == {("w1", "weight", 216),
                                                                                 ("w2", "weight", 576)}
    assert {k.kind for k in found} == {"weight", "activation"} and set(weights) == {"w1", "w2"}


def test_a_plan_with_every_knob_float_is_the_fp32_model(quantized):
    from posezoo.converters.onnx_int8 import weight_params, with_float

    fp32, _, qdq, found, weights, feeds = quantized
    everything = with_float(qdq, weights, [k.name for k in found])
    assert not [n for n in everything.graph.node if n.op_type == "QuantizeLinear"]
    assert {n.op_type for n in everything.graph.node} >= {"Clip", "Relu"}  # kept in the QDQ graph, so floats clip
    for got, want in zip(run(everything, feeds), run(fp32, feeds)):
        np.testing.assert_allclose(got, want, atol=1e-3)  # only the int32 biases remain quantized
    assert weight_params(everything) == (216 + 576 + 32, 216 + 576 + 32)
    assert weight_params(qdq) == (824, 32)  # the head's weights (conv3) stay float


def test_a_plan_is_applied_to_the_same_graph_the_same_way_every_time(quantized):
    from posezoo.converters.onnx_int8 import with_float

    _, qdq_path, qdq, found, weights, feeds = quantized
    assert with_float(qdq, weights, []).SerializeToString() == qdq.SerializeToString()
    one = with_float(qdq, weights, ["w1"]).SerializeToString()
    assert one == with_float(qdq, weights, ["w1"]).SerializeToString()
    floated = with_float(qdq, weights, ["w1"])
    assert "w1_quantized" not in {i.name for i in floated.graph.initializer}


def test_onnxruntime_quantizes_the_same_bytes_twice(quantized, tmp_path):
    from posezoo.converters.onnx_int8 import onnx_to_int8

    fp32, qdq_path, _, _, _, feeds = quantized
    again = onnx_to_int8(fp32, tmp_path / "again.onnx", feeds, "minmax", ["conv3"])
    assert again.read_bytes() == qdq_path.read_bytes()


def test_sensitivity_is_the_error_of_each_knob_alone(quantized):
    from posezoo.converters.onnx_int8 import measure_sensitivity

    fp32, _, qdq, found, weights, feeds = quantized
    measure = measure_sensitivity(qdq, weights, found, fp32, feeds, "y")
    assert "4 calibration people" in measure and all(k.sensitivity > 0 for k in found)
    by_name = {k.name: k.sensitivity for k in found}
    again = [Knob(k.name, k.kind, k.params) for k in found]
    measure_sensitivity(qdq, weights, again, fp32, feeds, "y")
    assert {k.name: k.sensitivity for k in again} == by_name


def test_int16_activations_keep_the_calibrated_range_in_16_bits(quantized):
    """The a16w8 fallback: an activation's int8 pair becomes a 16-bit pair over the same range,
    which onnxruntime runs, and which is closer to float than int8 is."""
    from posezoo.converters.onnx_int8 import CONTRIB_DOMAIN, with_float

    fp32, _, qdq, found, weights, feeds = quantized
    activations = [k.name for k in found if k.kind == "activation"]
    wide = with_float(qdq, weights, [], activations)
    pairs = [n for n in wide.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
             and n.input[0] in activations or n.op_type == "DequantizeLinear" and n.domain == CONTRIB_DOMAIN]
    assert pairs and {n.domain for n in wide.graph.node if n.op_type == "QuantizeLinear"} == {CONTRIB_DOMAIN}
    want = run(fp32, feeds)
    float_weights = [k.name for k in found if k.kind == "weight"]  # the activations' own error, not the weights'
    error = {name: np.mean([np.abs(g - w).mean() for g, w in zip(run(m, feeds), want)])
             for name, m in (("int8", with_float(qdq, weights, float_weights)),
                             ("int16", with_float(qdq, weights, float_weights, activations)))}
    assert error["int16"] < error["int8"] / 2, error
    weights_still_int8 = [i for i in wide.graph.initializer if i.data_type == 3 and len(i.dims) >= 2]
    assert {i.name for i in weights_still_int8} == {i.name for i in qdq.graph.initializer
                                                   if i.data_type == 3 and len(i.dims) >= 2}


def test_compact_names_shrink_the_file_and_change_nothing_it_computes(quantized):
    """The Q/DQ scaffolding's names are bytes no runtime reads: named briefly, the file is smaller
    and computes the same outputs bit for bit; the plan's tensors and the int8 weights keep their names."""
    from posezoo.converters.onnx_int8 import compact_names, with_float

    _, _, qdq, found, weights, feeds = quantized
    plan = with_float(qdq, weights, ["w1"])
    compact = compact_names(plan)
    assert len(compact.SerializeToString()) < len(plan.SerializeToString())
    for got, want in zip(run(compact, feeds), run(plan, feeds)):
        np.testing.assert_array_equal(got, want)
    names = {n for node in compact.graph.node for n in list(node.input) + list(node.output)}
    assert {k.name for k in found if k.kind == "activation"} <= names and "w2_quantized" in names
    assert not [n for n in names if n.endswith(("_QuantizeLinear_Output", "_DequantizeLinear_Output", "_scale",
                                                "_zero_point"))]
    assert compact_names(plan).SerializeToString() == compact.SerializeToString()  # the same bytes every time


def _report(errors_per_sample):
    from posezoo.converters import parity

    errors = [np.asarray(e, float) for e in errors_per_sample]
    flat = np.concatenate(errors)
    return parity.ParityReport(len(errors), {"out": {"rel_err": 0.0, "cos": 1.0, "snr_db": 60.0}},
                               {"0.05": float(np.mean(flat <= 0.05))}, float(flat.max()), errors=errors)


def test_the_search_reads_pck_as_the_calibration_photos_vouch_for_it():
    """A trial passes the search only when the PCK bound holds with SEARCH_CONFIDENCE over
    resamples of the calibration photos: the same share of misses passes among many photos and
    fails among few; misses gathered in one photo (its people, their robustness crops) weigh more
    than the same misses spread over photos; the reading is the same on every call. The gates stay."""
    from types import SimpleNamespace

    from posezoo.converters import parity
    from posezoo.converters.pipeline import SEARCH_CONFIDENCE, search_reading

    def bench(photos, people=1):
        return SimpleNamespace(samples=[SimpleNamespace(person=SimpleNamespace(image=f"p{k}.jpg", box=(j, 0, 9, 9)))
                                        for k in range(photos) for j in range(people)])

    def gated(errors):
        return parity.apply_gate(_report(errors), {"pck@0.05_min": 0.97})

    one_miss_in_50 = [[0.0] * 49 + [0.5]]  # PCK 0.98 on each photo
    few, many = one_miss_in_50 * 4, one_miss_in_50 * 60
    assert gated(few).passed and gated(many).passed  # the gate itself reads 0.98 on both
    assert search_reading(bench(60), gated(many), {"pck@0.05_min": 0.97}) == 1.0
    assert search_reading(bench(4), gated(few), {"pck@0.05_min": 0.97}) == 1.0  # no photo worse than 0.98

    spread = [[0.0] * 16] * 15 + [[0.0] * 15 + [0.5]] * 5  # 5 misses over 5 of 20 photos: 0.984
    gathered = [[0.0] * 16] * 19 + [[0.5] * 5 + [0.0] * 11]  # the same 5 misses in one photo
    assert gated(spread).pck == gated(gathered).pck
    photos = bench(20)
    assert search_reading(photos, gated(spread), {"pck@0.05_min": 0.97}) == 1.0
    low = search_reading(photos, gated(gathered), {"pck@0.05_min": 0.97})
    assert 0.9 < low < 1.0  # the point value passes, what 20 photos vouch for does not
    assert search_reading(photos, gated(gathered), {"pck@0.05_min": 0.97}) == low  # seeded: the same plan each build

    # the people of one photo are drawn together: 4 people in each of 5 photos, one photo's people all missing
    crowd = [[0.0] * 16] * 16 + [[0.5] * 2 + [0.0] * 14] * 4
    assert search_reading(bench(5, people=4), gated(crowd), {"pck@0.05_min": 0.97}) < search_reading(
        bench(20), gated(crowd), {"pck@0.05_min": 0.97}) < 1.0
    assert 0.5 < SEARCH_CONFIDENCE < 1.0 and parity.ROBUSTNESS_THRESHOLDS == {"pck@0.05_min": 0.95}


def test_a_pck_lower_bound_is_below_the_point_value_and_tightens_with_more_photos():
    from posezoo.converters.parity import pck_lower_bound

    misses = [[0.0] * 9 + [0.2]] * 2 + [[0.0] * 10] * 8  # PCK 0.98 over 10 photos
    few = pck_lower_bound(_report(misses), list(range(10)), "0.05", 0.9)
    many = pck_lower_bound(_report(misses * 10), list(range(100)), "0.05", 0.9)
    assert few < many < 0.98
    assert pck_lower_bound(_report([[0.0] * 10] * 3), [0, 1, 2], "0.05", 0.9) == 1.0


def test_onnxruntime_runs_the_quantized_convolutions_as_integer_kernels(quantized, tmp_path):
    """uint8 activations: onnxruntime's CPU provider fuses each quantized Conv with its Q/DQ pairs
    into QLinearConv (with int8 activations it left most of them float Conv, 2.3x slower than the
    FP32 file on EfficientPose RT); the head (conv3, kept float) stays a Conv."""
    import onnx
    import onnxruntime as ort

    from posezoo.converters.onnx_int8 import compact_names, with_float

    _, _, qdq, _, weights, _ = quantized
    assert {onnx.TensorProto.UINT8} == {i.data_type for i in qdq.graph.initializer if i.name.endswith("_zero_point")
                                        and not i.name.startswith(("w1", "w2", "b1", "b2"))}
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(compact_names(with_float(qdq, weights, [])).SerializeToString(), options,
                         providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
    assert ops.count("QLinearConv") == 2 and ops.count("Conv") + ops.count("FusedConv") == 1, ops
