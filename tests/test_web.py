"""The try-it page (zoo/web, in the site) in headless Chromium: the JavaScript twin of zoo/loader.py.

Fast-ish tests compare the page's crop matrices and warp with the Python loader's, exactly. The
slow test runs every artifact of the `zoo` manifest of conftest (MoveNet Lightning: Google's INT8
file and our ONNX of it; EfficientPose RT-Lite FP32/INT8, ONNX and TFLite, from the authors' Keras
file) in the page on every shared photo and every annotated person (by the model's calibration
crop, a box) and checks the keypoints against the Python loader's on the same artifact
(scripts/browser.Page.agreement: FP32/FP16 PCK@0.01 = 1.0, INT8 PCK@0.02 >= 0.95).

Needs Debian's chromium and chromium-driver and `npm ci` in zoo/web (the Makefile and .ci/run do
both); skipped where they are missing unless POSEZOO_REQUIRE_BROWSER=1 (CI sets it)."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from posezoo.scripts import browser
from posezoo.scripts.site import WEB
from posezoo.loader import crop_matrix, warp
from posezoo.manifest import empty_manifest

MISSING = browser.available() or (None if (WEB / "node_modules" / "onnxruntime-web").is_dir()
                                  else f"npm ci has not run in {WEB}")
if MISSING and os.environ.get("POSEZOO_REQUIRE_BROWSER") == "1":
    raise RuntimeError(f"POSEZOO_REQUIRE_BROWSER=1 but {MISSING}")
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"browser test: {MISSING}")


@pytest.fixture(scope="module")
def page(zoo, images):
    with browser.Page(zoo.parent, images) as p:
        yield p


@pytest.fixture(scope="module")
def empty_page(tmp_path_factory, images):
    """The page over a manifest with no models: enough for its geometry."""
    directory = tmp_path_factory.mktemp("empty")
    (directory / "manifest.json").write_text(json.dumps(empty_manifest("0.1")))
    with browser.Page(directory, images) as p:
        yield p


def test_crop_matrices_match_the_python_loader(empty_page):
    page = empty_page
    rng = np.random.default_rng(1)
    roi = {"kind": "rotated_roi", "center_keypoints": ["lh", "rh"], "up_keypoints": ["ls", "rs"], "expand": 1.25}
    for _ in range(20):
        kp = {n: rng.uniform(0, 400, 2).tolist() for n in ("lh", "rh", "ls", "rs", "nose")}
        box = rng.uniform(10, 300, 4).tolist()
        for crop in ({"kind": "whole_image"}, {"kind": "whole_image", "resize": "stretch"},
                     {"kind": "box", "padding": 1.25}, roi):
            js = page.call("cropMatrix", crop, 192, 256, [640, 480], box, kp)
            np.testing.assert_allclose(js, crop_matrix(crop, 192, 256, (640, 480), box, kp), rtol=1e-12, atol=1e-9)


def test_warp_is_the_python_warp_bit_for_bit(empty_page):
    page = empty_page
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)
    rgba = np.concatenate([image, np.full((23, 31, 1), 255, np.uint8)], axis=2)
    for _ in range(10):
        matrix = np.c_[rng.normal(0, 1.5, (2, 2)), rng.uniform(-10, 40, 2)]
        js = page.call("warp", rgba.ravel().tolist(), 31, 23, matrix.tolist(), 17, 13)
        np.testing.assert_array_equal(np.asarray(js, np.uint8).reshape(13, 17, 3), warp(image, matrix, 17, 13))


@pytest.mark.slow
def test_every_artifact_in_the_page_agrees_with_the_python_loader(zoo, page):
    rows = page.agreement(zoo)
    manifest = json.loads(zoo.read_text())
    assert len(rows) == sum(len(m["artifacts"]) for m in manifest["models"])
    for r in rows:
        assert r["passed"], browser.agreement_table([r])
        assert r["keypoints"] >= 19 * 16  # every shared photo, at least


@pytest.mark.slow
def test_every_artifact_in_the_page_passes_its_golden_vectors(zoo, page):
    """The page's own steps (crop, warp, tensor, wasm runtime, decoder) against the numbers the
    build recorded with the Python loader (zoo/golden.py), within the artifact's tolerances."""
    manifest = json.loads(zoo.read_text())
    for model in manifest["models"]:
        for art in model["artifacts"]:
            report = page.call("checkGolden", model["id"], art["path"])
            assert report["passed"] and report["cases"] == 2, (art["path"], report)
            assert report["matrix_abs"] <= 1e-9 and report["keypoints_within"] >= 0.95, (art["path"], report)


@pytest.mark.slow
def test_the_page_draws_the_pose_and_reports_its_latency(zoo, page, tmp_path):
    import json

    model = next(m for m in json.loads(zoo.read_text())["models"] if m["id"] == "efficientpose-rt-lite")
    art = next(a for a in model["artifacts"] if a["format"] == "tflite" and a["precision"] == "int8")
    sample = next(i for i, s in enumerate(page.samples) if s["name"] == "single/squat.bmp")
    shown = page.call("show", model["id"], art["path"], sample, 0)
    assert not shown["error"] and " ms" in shown["status"], shown
    shot = page.screenshot(tmp_path / "page.png")
    shutil.copy(shot, Path(os.environ.get("POSEZOO_SCREENSHOTS", tmp_path)) / "page_efficientpose-rt-lite_int8.png")
    assert shot.stat().st_size > 50_000
    times, _ = page.latencies(model["id"], art["path"], runs=3, sample=sample)
    assert len(times) == 3 and all(0 < t < 10_000 for t in times)


@pytest.mark.slow
def test_bench_gains_a_web_column(zoo, images, capsys):
    from posezoo.scripts.bench import main

    assert main([str(zoo), "--ids", "efficientpose-rt-lite", "--runs", "2", "--warmup", "0", "--web",
                 "--threads", "1,2", "--images", str(images), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    converted = [r for r in rows if r["origin"] == "converted"]
    assert {r["threads"] for r in converted} == {1, 2}
    for r in converted:
        assert r["web_ms"] > 0 and r["web_vs_native"] == round(r["web_ms"] / r["median_ms"], 2)
        assert f"{r['threads']} thread" in r["web_backend"] and "wasm" in r["web_backend"], r["web_backend"]


def test_multi_pose_decoding_in_the_page_matches_python(empty_page):
    from test_decoders import _two_people

    from posezoo.decoders import decode_multi_pose

    spec, outputs, _ = _two_people()
    expected = decode_multi_pose(spec, outputs)
    got = empty_page.call("decodeMultiPose", spec, {k: {"data": v.ravel().tolist(), "shape": list(v.shape)}
                                                    for k, v in outputs.items()})
    assert len(got) == len(expected) == 2
    for pose, (xy, scores, score) in zip(got, expected):
        np.testing.assert_allclose(pose["xy"], xy, atol=1e-4)
        np.testing.assert_allclose(pose["scores"], scores, atol=1e-6)
        assert pose["score"] == pytest.approx(score, abs=1e-6)


def test_multipose_regression_in_the_page_matches_python(empty_page):
    from test_decoders import _multipose_instances

    from posezoo.decoders import decode, decode_multi_pose

    spec, outputs = _multipose_instances()
    js_outputs = {k: {"data": v.ravel().tolist(), "shape": list(v.shape)} for k, v in outputs.items()}
    got, expected = empty_page.call("decodeMultiPose", spec, js_outputs), decode_multi_pose(spec, outputs)
    assert [p["score"] for p in got] == pytest.approx([score for _, _, score in expected])
    for pose, (xy, scores, _) in zip(got, expected):
        np.testing.assert_allclose(pose["xy"], xy, atol=1e-4)
    np.testing.assert_allclose(empty_page.call("decode", spec, js_outputs)["xy"], decode(spec, outputs)[0], atol=1e-4)


def test_an_fp16_onnx_file_widened_in_the_page_is_its_float32_twin(empty_page, tmp_path):
    """What the page runs on wasm for an FP16 ONNX file: every float16 tensor, Cast and type
    widened to float32 (its weights exactly the float16 values), so ONNX Runtime's float32
    kernels run it instead of emulating half precision; it computes what the FP16 file computes."""
    import base64

    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from posezoo.converters.onnx_fp16 import onnx_to_fp16

    rng = np.random.default_rng(3)
    weight = numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.normal(0, 0.1, 4).astype(np.float32), "b")
    scale = helper.make_node("Constant", [], ["s"], value=numpy_helper.from_array(np.float32([1.5, 0.5, 2.0, 1.0]).reshape(1, 4, 1, 1)))
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
         scale, helper.make_node("Mul", ["r", "s"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [weight, bias])
    fp32 = tmp_path / "fp32.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), fp32)
    fp16 = onnx_to_fp16(fp32, tmp_path / "fp16.onnx")
    widened = base64.b64decode(empty_page.call("widen", base64.b64encode(fp16.read_bytes()).decode()))
    model = onnx.load_from_string(widened)
    onnx.checker.check_model(model)
    half = onnx.load(fp16)
    assert any(t.data_type == TensorProto.FLOAT16 for t in half.graph.initializer)  # there was float16 to widen
    assert all(t.data_type == TensorProto.FLOAT for t in model.graph.initializer)
    for t in half.graph.initializer:
        widened_t = next(w for w in model.graph.initializer if w.name == t.name)
        np.testing.assert_array_equal(numpy_helper.to_array(widened_t), numpy_helper.to_array(t).astype(np.float32))
    for node in model.graph.node:
        for a in node.attribute:
            assert not (a.name == "to" and a.i == TensorProto.FLOAT16), node
            assert not (a.type == onnx.AttributeProto.TENSOR and a.t.data_type == TensorProto.FLOAT16), node
    x = rng.normal(0, 1, (1, 3, 8, 8)).astype(np.float32)
    run = lambda data: ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    want, got = run(fp16.read_bytes()), run(widened)
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3 * np.abs(want).max())  # fp16 activations only
