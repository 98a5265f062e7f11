"""`posezoo bench` and its report, on tiny models built here (fast: a few seconds of timing)."""
from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from posezoo.scripts import bench_report
from posezoo.scripts.bench import add_arguments, main
from posezoo.scripts.bench.measure import Measurement, measure
from posezoo.scripts.bench.rows import make_rows
from posezoo.scripts.bench.runner import Runner, make_input
from posezoo.scripts.bench.table import COLUMNS, format_table, int8_choice_text, targets_text
from posezoo.scripts.bench.targets import BenchError, Target, collect_targets
from posezoo.scripts.bench.web import web_latencies
from posezoo.errors import RunError
from posezoo.scripts.bench.worker import Worker, baseline_kb


# --------------------------------------------------------------------------------------------
# tiny files and a minimal manifest


def _tflite_files(folder: Path) -> dict[str, Path]:
    """fp32, full-integer int8 (uint8 input) and a dynamic-shape float copy (the 'publisher's')."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    w1 = tf.constant(rng.normal(0, 0.3, (3, 3, 3, 8)).astype(np.float32))
    w2 = tf.constant(rng.normal(0, 0.3, (1, 1, 8, 4)).astype(np.float32))

    def body(image):
        x = tf.nn.relu6(tf.nn.conv2d(image, w1, 2, "SAME"))
        return tf.reduce_mean(tf.nn.conv2d(x, w2, 1, "SAME"), axis=[1, 2])

    fixed = tf.function(body, input_signature=[tf.TensorSpec([1, 32, 32, 3], tf.float32, name="image")])
    dynamic = tf.function(body, input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32, name="image")])
    out = {}
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fixed.get_concrete_function()], fixed)
    out["fp32"] = folder / "tiny_fp32.tflite"
    out["fp32"].write_bytes(conv.convert())

    conv = tf.lite.TFLiteConverter.from_concrete_functions([fixed.get_concrete_function()], fixed)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rng.uniform(0, 1, (1, 32, 32, 3)).astype(np.float32)] for _ in range(8))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.uint8
    out["int8"] = folder / "tiny_int8.tflite"
    out["int8"].write_bytes(conv.convert())

    conv = tf.lite.TFLiteConverter.from_concrete_functions([dynamic.get_concrete_function()], dynamic)
    out["vendor_dynamic"] = folder / "Tiny_authors.tflite"
    out["vendor_dynamic"].write_bytes(conv.convert())
    return out


def _onnx_file(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(1).normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
        "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 32, 32])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _artifact(root: Path, path: Path, fmt, precision, origin="converted", pck=1.0, dtype="float32",
              shape=(1, 32, 32, 3), layout="NHWC", quantization=None) -> dict:
    a = {"format": fmt, "precision": precision, "path": str(path.relative_to(root)), "sha256": _sha(path),
         "bytes": path.stat().st_size, "origin": origin, "input_layout": layout,
         "io": {"inputs": [{"name": "image", "dtype": dtype, "shape": list(shape), "quantization": None}],
                "outputs": []},
         "parity": {"pck@0.02": pck, "passed": True}, "verified_with": {}}
    if quantization:
        a["quantization"] = quantization
    return a


def _model(mid, artifacts, source_file="tiny.h5", source_sha="0" * 64) -> dict:
    return {"id": mid, "family": "tiny", "variant": "v", "source": {"file": source_file, "sha256": source_sha,
                                                                    "bytes": 1, "origin": "mirror", "urls": []},
            "input": {"name": "image", "shape": [1, 32, 32, 3], "layout": "NHWC", "dtype": "float32"},
            "artifacts": artifacts}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """DIR/manifest.json with model `tiny` (ours: ONNX FP32, TFLite FP32 and INT8; the publisher's
    INT8 TFLite published as is) and model `tiny-b` (ours: TFLite FP32; its original, a dynamic-shape
    .tflite, sits in a content-addressed cache)."""
    root = tmp_path_factory.mktemp("zoo")
    files = _tflite_files(root)
    (root / "tiny").mkdir()
    (root / "tiny-b").mkdir()
    fp32 = root / "tiny" / "tiny_fp32.tflite"
    fp32.write_bytes(files["fp32"].read_bytes())
    int8 = root / "tiny" / "tiny_int8.tflite"
    int8.write_bytes(files["int8"].read_bytes())
    vendor = root / "tiny" / "tiny_int8_vendor.tflite"
    vendor.write_bytes(files["int8"].read_bytes() + b"\0" * 16)  # other bytes, same graph
    onnx_fp32 = _onnx_file(root / "tiny" / "tiny_fp32.onnx")
    b_fp32 = root / "tiny-b" / "tiny-b_fp32.tflite"
    b_fp32.write_bytes(files["fp32"].read_bytes())
    original = files["vendor_dynamic"]
    cache = tmp_path_factory.mktemp("cache")
    sha = _sha(original)
    (cache / "sha256" / sha[:2] / sha).mkdir(parents=True)
    (cache / "sha256" / sha[:2] / sha / original.name).write_bytes(original.read_bytes())
    manifest = {"schema_version": 1, "generator": {"name": "posezoo", "version": "0"}, "models": [
        _model("tiny", [
            _artifact(root, onnx_fp32, "onnx", "fp32", shape=("N", 3, 32, 32), layout="NCHW"),
            _artifact(root, fp32, "tflite", "fp32"),
            _artifact(root, int8, "tflite", "int8", pck=0.9, dtype="uint8",
                      quantization={"weights": "int8 per-channel (symmetric)", "activations": "int8",
                                    "raised_tensors": 3, "trials": []}),
            _artifact(root, vendor, "tflite", "int8", origin="vendor", dtype="uint8"),
        ], source_file="tiny_int8_vendor.tflite", source_sha=_sha(vendor)),  # the original is the vendor file
        _model("tiny-b", [_artifact(root, b_fp32, "tflite", "fp32")], source_file=original.name, source_sha=sha),
    ]}
    path = root / "manifest.json"
    path.write_text(json.dumps(manifest))
    return {"root": root, "manifest": path, "data": manifest, "cache": cache, "original": original,
            "files": files}


# --------------------------------------------------------------------------------------------
# pure parts


def test_input_is_deterministic_zero_free_and_of_the_dtype():
    for dtype in ("uint8", "int8", "float32", "float16", "int32"):
        x = make_input([1, 7, 5, 3], dtype)
        assert x.shape == (1, 7, 5, 3) and x.dtype == np.dtype(dtype)
        assert np.count_nonzero(x) == x.size
        assert np.array_equal(x, make_input((1, 7, 5, 3), dtype))
        assert len(np.unique(x)) > 50
    assert make_input([2, 3], "float32").max() <= 1.0


def test_targets_collect_ours_vendor_original_and_vendor_files(zoo, tmp_path):
    notes = []
    targets = collect_targets(zoo["data"], zoo["root"], cache_dir=zoo["cache"], notes=notes)
    got = [(t.model, t.name, t.origin, t.vendor_source) for t in targets]
    assert got == [("tiny", "tiny_fp32.onnx", "converted", None), ("tiny", "tiny_fp32.tflite", "converted", None),
                   ("tiny", "tiny_int8.tflite", "converted", None),
                   ("tiny", "tiny_int8_vendor.tflite", "vendor", "manifest"),  # its original: the same bytes, once
                   ("tiny-b", "tiny-b_fp32.tflite", "converted", None),
                   ("tiny-b", zoo["original"].name, "vendor", "original")]
    assert targets[-1].shape_hint == [1, 32, 32, 3] and targets[-1].pck02 == 1.0
    assert targets[0].shape_hint == [1, 3, 32, 32]  # the model's NHWC shape in the ONNX file's NCHW

    # not in the cache: found in a mirror by file name, sha256-verified
    mirror = tmp_path / "mirror"
    (mirror / "sub").mkdir(parents=True)
    (mirror / "sub" / zoo["original"].name).write_bytes(zoo["original"].read_bytes())
    targets = collect_targets(zoo["data"], zoo["root"], ids=["tiny-b"], cache_dir=tmp_path / "empty",
                              mirror_dir=mirror)
    assert [t.path for t in targets][-1] == mirror / "sub" / zoo["original"].name
    (mirror / "sub" / zoo["original"].name).write_bytes(b"not the original")
    notes = []
    targets = collect_targets(zoo["data"], zoo["root"], ids=["tiny-b"], cache_dir=tmp_path / "empty",
                              mirror_dir=mirror, notes=notes)
    assert [t.origin for t in targets] == ["converted"]
    assert any("sha256 is not the original's" in n for n in notes) and any("neither the cache" in n for n in notes)

    # --vendor-file MODEL=PATH
    targets = collect_targets(zoo["data"], zoo["root"], ids=["tiny"], cache_dir=zoo["cache"],
                              vendor_files={"tiny": [zoo["original"]]})
    assert [(t.name, t.vendor_source) for t in targets][-1] == (zoo["original"].name, "vendor-file")
    assert targets[-1].pck02 is None
    with pytest.raises(BenchError, match="not in the manifest: nope"):
        collect_targets(zoo["data"], zoo["root"], ids=["nope"])
    with pytest.raises(BenchError, match="not in the manifest: nope"):
        collect_targets(zoo["data"], zoo["root"], vendor_files={"nope": [zoo["original"]]})
    with pytest.raises(BenchError, match="does not exist"):
        collect_targets(zoo["data"], zoo["root"], ids=["tiny"], vendor_files={"tiny": [tmp_path / "x.tflite"]})
    broken = json.loads(json.dumps(zoo["data"]))
    broken["models"][0]["artifacts"][0]["path"] = "tiny/gone.onnx"
    with pytest.raises(BenchError, match="gone.onnx is missing"):
        collect_targets(broken, zoo["root"])


def _fake(model, name, fmt, precision, origin, ms, nbytes, threads=1, quantization=None, source=None):
    t = Target(model, Path(f"/z/{model}/{name}"), fmt, precision, origin, source, None, None, nbytes,
               None, 1.0, quantization)
    return Measurement(t, threads, [ms * 0.9, ms, ms * 1.2], 1024 * 10, {})


def test_rows_ratios_vendor_pairing_and_targets():
    q = {"activations": "int8", "raised_tensors": 3}
    ms = [_fake("m", "m_fp32.tflite", "tflite", "fp32", "converted", 10.0, 1000),
          _fake("m", "m_int8.tflite", "tflite", "int8", "converted", 6.0, 280, quantization=q),
          _fake("m", "m_fp32.onnx", "onnx", "fp32", "converted", 20.0, 900),
          _fake("m", "m_int8.onnx", "onnx", "int8", "converted", 5.0, 400, quantization=q),
          _fake("m", "M_authors.tflite", "tflite", "fp16", "vendor", 8.0, 500, source="vendor-file"),
          _fake("m", "m_int8_vendor.tflite", "tflite", "int8", "vendor", 5.0, 300, source="manifest"),
          _fake("m", "m_int8.tflite", "tflite", "int8", "converted", 4.0, 280, threads=2, quantization=q),
          _fake("m", "m_fp32.tflite", "tflite", "fp32", "converted", 5.0, 1000, threads=2)]
    rows = make_rows(ms)
    by = {(r["file"], r["threads"]): r for r in rows}
    fp32, int8 = by["m_fp32.tflite", 1], by["m_int8.tflite", 1]
    assert fp32["median_ms"] == 10.0 and fp32["p90_ms"] == pytest.approx(float(np.percentile([9, 10, 12], 90)))
    assert fp32["lat_vs_fp32"] == 1.0 and fp32["peak_mb"] == 10.0 and fp32["targets"] is None
    assert int8["lat_vs_fp32"] == 0.6 and int8["size_vs_fp32"] == 0.28 and int8["fp32_ref"] == "m_fp32.tflite"
    assert int8["vendor_ref"] == "m_int8_vendor.tflite" and int8["lat_vs_vendor"] == 1.2  # same format+precision first
    assert by["m_int8.onnx", 1]["lat_vs_fp32"] == 0.25  # against the ONNX FP32, not the TFLite one
    assert by["m_int8.onnx", 1]["vendor_ref"] == "m_int8_vendor.tflite"
    assert by["m_fp32.onnx", 1]["vendor_ref"] == "M_authors.tflite"  # a float file for a float one
    assert by["m_int8_vendor.tflite", 1]["lat_vs_vendor"] is None and by["m_int8_vendor.tflite", 1]["targets"] is None
    assert int8["raised_tensors"] == 3 and int8["activation_bits"] == 8
    assert int8_choice_text(int8) == "r=3 a8"
    assert int8["targets"] == {"latency_0.8x_fp32_at_1_thread": True, "not_slower_than_vendor": False,
                               "size_0.35x_fp32": True}
    assert targets_text(int8["targets"]) == "speed:ok vendor:MISS size:ok"
    two = by["m_int8.tflite", 2]  # the speed target is judged at 1 thread; no vendor timed at 2 threads
    assert two["lat_vs_fp32"] == 0.8 and two["targets"]["latency_0.8x_fp32_at_1_thread"] is True
    assert two["targets"]["not_slower_than_vendor"] is None and "vendor:n/a" in targets_text(two["targets"])

    table = format_table(rows).splitlines()
    assert table[0].split()[:3] == ["model", "file", "fmt/prec/origin"] and set(table[1]) <= {"-", " "}
    assert len(table) == 2 + len(rows)
    col = table[0].index("median ms") + len("median ms")  # right-aligned numbers end under their header
    assert all(line[col - 1] != " " for line in table[2:])
    assert "tflite/fp16/vendor:vendor-file" in table[2 + 4]


def test_markdown_and_svg(tmp_path):
    ms = [_fake("m", "m_fp32.tflite", "tflite", "fp32", "converted", 10.0, 1000),
          _fake("m", "m_int8.tflite", "tflite", "int8", "converted", 6.0, 280),
          _fake("m", "m_fp32.onnx", "onnx", "fp32", "converted", 120.0, 900),
          _fake("m", "M_authors.tflite", "tflite", "fp16", "vendor", 8.0, 500, source="vendor-file")]
    ms[1].target.pck02 = 0.875
    ms[3].target.pck02 = None  # a publisher file without parity numbers: not plotted, named
    rows = make_rows(ms)
    md = bench_report.markdown_table(rows)
    lines = md.splitlines()
    table = [x for x in lines if x.startswith("|")]
    assert len(table) == 2 + len(rows) and all(x.count("|") == len(COLUMNS) + 1 for x in table)
    assert "| m | m_int8.tflite | tflite/int8/converted | 1 | 6.000 |" in md
    timed = [r if k != 1 else {**r, "web_ms": 12.0, "web_vs_native": 2.0} for k, r in enumerate(rows)]  # --web
    web = [x for x in bench_report.markdown_table(timed).splitlines() if x.startswith("|")]
    assert all(x.count("|") == len(COLUMNS) + 3 for x in web) and web[3].endswith("| 12.0 | 2.00 |")

    points, left_out = bench_report.scatter_points(rows)
    assert [(p["x"], p["y"]) for p in points] == [(10.0, 0.0), (6.0, 0.125), (120.0, 0.0)]
    assert left_out == ["M_authors.tflite"]
    svg = ET.fromstring(bench_report.scatter_svg(rows))
    ns = "{http://www.w3.org/2000/svg}"
    marks = [e for e in svg.iter() if e.get("class") == "point"]
    assert len(marks) == 3 and {e.tag for e in marks} == {ns + "circle", ns + "rect"}
    texts = " ".join(e.text or "" for e in svg.iter(ns + "text"))
    assert "log scale" in texts and "M_authors.tflite" in texts and "1 - PCK@0.02" in texts

    src = tmp_path / "rows.json"
    src.write_text(json.dumps(rows))
    assert bench_report.main([str(src)]) == 0
    assert (tmp_path / "rows.md").read_text() == md
    ET.parse(tmp_path / "rows.svg")
    src.write_text("{}")
    assert bench_report.main([str(src)]) == 2


def test_arguments_thread_counts_and_vendor_files():
    import argparse

    p = add_arguments(argparse.ArgumentParser())
    args = p.parse_args(["m.json", "--threads", "1,2", "--vendor-file", "tiny=/x/a.tflite",
                         "--vendor-file", "b=c.onnx"])
    assert args.threads == (1, 2) and args.vendor_file == [("tiny", Path("/x/a.tflite")), ("b", Path("c.onnx"))]
    assert p.parse_args(["m.json"]).threads == (1,) and p.parse_args(["m.json"]).runs == 30
    for bad in (["--threads", "0,1"], ["--threads", "x"], ["--vendor-file", "tiny"], ["--vendor-file", "=a.tflite"]):
        with pytest.raises(SystemExit):
            p.parse_args(["m.json", *bad])


def test_web_failures_are_bad_input(monkeypatch, tmp_path):
    from posezoo.scripts import browser

    class NoBrowser:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            raise browser.BrowserError("no chromium here")

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(browser, "Page", NoBrowser)
    with pytest.raises(BenchError, match="--web: no chromium here"):
        web_latencies(tmp_path / "manifest.json", {"models": []}, None, 2, tmp_path)


# --------------------------------------------------------------------------------------------
# real runs, in this process and in child processes


def test_runner_feeds_each_file_its_own_input(zoo):
    root = zoo["root"]
    int8 = Runner(str(root / "tiny" / "tiny_int8.tflite"), "tflite", 1, None, None)
    int8.run()
    assert int8.info == {"inputs": [{"name": int8.info["inputs"][0]["name"], "shape": [1, 32, 32, 3],
                                     "dtype": "uint8"}], "precision": "int8", "resized": False}
    dyn = Runner(str(zoo["original"]), "tflite", 1, None, [1, 32, 32, 3])  # dynamic: the model's shape
    dyn.run()
    assert dyn.info["resized"] and dyn.info["inputs"][0]["shape"] == [1, 32, 32, 3] and dyn.notes
    spec = [{"name": "image", "shape": ["N", 3, 32, 32], "dtype": "uint8"}]  # the manifest disagrees: noted
    onnx = Runner(str(root / "tiny" / "tiny_fp32.onnx"), "onnx", 2, spec, [1, 3, 32, 32])
    onnx.run()
    assert onnx.info["inputs"] == [{"name": "image", "shape": [1, 3, 32, 32], "dtype": "float32"}]
    assert onnx.notes == ["input image: the file takes float32, the manifest says uint8"]
    with pytest.raises(RunError, match="no runtime"):
        Runner(str(root / "tiny" / "tiny_fp32.onnx"), "coreml", 1, None, None)


def test_worker_reports_what_it_cannot_load_and_the_baseline_is_measured(tmp_path):
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"not a model")
    w = Worker(Target("m", bad, "tflite", "fp32", "converted"), 1)
    w.load()
    assert w.error and w.send(cmd="run") is None  # a failed file answers nothing more
    w.close()
    assert w.maxrss_kb is None and w.proc.returncode is not None
    assert baseline_kb("onnx") > 0


def test_measure_interleaves_and_times_every_file(zoo):
    targets = collect_targets(zoo["data"], zoo["root"], cache_dir=zoo["cache"])
    trace = []
    ms = measure(targets, threads=(1, 2), runs=3, warmup=1, pause_ms=0, progress=False, trace=trace)
    assert [(m.target.name, m.threads) for m in ms] == [(t.name, th) for t in targets for th in (1, 2)]
    assert all(m.error is None and len(m.times_ms) == 3 and all(x > 0 for x in m.times_ms) for m in ms)
    n = len(targets)
    # round-robin: per thread count, repetition after repetition, every file once, in the same order
    assert [(i, th, rep) for i, th, rep, _ in trace] == [(i, th, rep) for th in (1, 2) for rep in range(3)
                                                         for i in range(n)]
    starts = [s for *_, s in trace]
    assert starts == sorted(starts)  # the children's own clocks agree with that order
    info = {m.target.name: m.info for m in ms if m.threads == 1}
    assert info["tiny_int8.tflite"]["inputs"][0]["dtype"] == "uint8" and info["tiny_int8.tflite"]["precision"] == "int8"
    dyn = info[zoo["original"].name]
    assert dyn["resized"] and dyn["inputs"][0]["shape"] == [1, 32, 32, 3] and dyn["precision"] == "fp32"
    assert info["tiny_fp32.onnx"]["inputs"][0]["shape"] == [1, 3, 32, 32]
    assert all(m.peak_kb is not None and m.peak_kb > 0 for m in ms), [(m.target.name, m.threads, m.peak_kb) for m in ms]
    rows = make_rows(ms)
    assert next(r for r in rows if r["file"] == "tiny_int8.tflite")["vendor_ref"] == "tiny_int8_vendor.tflite"
    assert next(r for r in rows if r["file"] == "tiny-b_fp32.tflite")["vendor_ref"] == zoo["original"].name


def test_main_json_and_text(zoo, capsys):
    argv = [str(zoo["manifest"]), "--ids", "tiny-b", "--runs", "2", "--warmup", "1", "--cache", str(zoo["cache"])]
    assert main(argv + ["--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["file"], r["origin"], r["threads"]) for r in rows] == [
        ("tiny-b_fp32.tflite", "converted", 1), (zoo["original"].name, "vendor", 1)]
    assert rows[0]["runs"] == 2 and rows[0]["lat_vs_vendor"] is not None and rows[1]["precision"] == "fp32"
    assert main(argv + ["--threads", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("model") and "tiny-b_fp32.tflite" in out[2] and out[-1].startswith("note: machine")
    assert main([str(zoo["manifest"]), "--ids", "nope"]) == 2
    assert "not in the manifest" in capsys.readouterr().err
    assert main([str(zoo["root"] / "missing.json")]) == 2


def test_saved_rows_are_what_the_site_shows(zoo, capsys):
    """`--save` writes DIR/bench.json with each row's artifact path as the manifest names it; the
    publisher's file (not in the folder) has none."""
    from posezoo.scripts.site import read_bench

    argv = [str(zoo["manifest"]), "--ids", "tiny-b", "--runs", "2", "--warmup", "0", "--cache", str(zoo["cache"])]
    assert main(argv + ["--save", "--threads", "1,2"]) == 0
    capsys.readouterr()
    saved = json.loads((zoo["manifest"].parent / "bench.json").read_text())
    artifacts = {a["path"] for m in json.loads(zoo["manifest"].read_text())["models"] for a in m["artifacts"]}
    assert {r["artifact"] for r in saved["rows"] if r["origin"] == "converted"} <= artifacts
    assert all(r["artifact"] is None for r in saved["rows"] if r["origin"] == "vendor")
    shown = read_bench(zoo["manifest"].parent)
    assert {threads for _, threads in shown} == {1, 2} and all(r["median_ms"] > 0 for r in shown.values())
    assert saved["notes"][0].startswith("machine:")
    (zoo["manifest"].parent / "bench.json").unlink()


def test_the_size_target_allows_040x_only_under_3_mb_of_fp32():
    q = {"activations": "int8"}
    for fp32_bytes, met in ((2_000_000, True), (4_000_000, False)):
        rows = make_rows([_fake("m", "m_fp32.tflite", "tflite", "fp32", "converted", 10.0, fp32_bytes),
                          _fake("m", "m_int8.tflite", "tflite", "int8", "converted", 7.0, int(0.38 * fp32_bytes),
                                quantization=q)])
        int8 = next(r for r in rows if r["file"] == "m_int8.tflite")
        assert int8["targets"]["size_0.35x_fp32"] is met and int8["targets"]["latency_0.8x_fp32_at_1_thread"]
