"""The format registry (converters/formats.py): one entry per format, and nothing else to touch.

A fake format whose converter copies the ONNX file ("fakeonnx", run by ONNX Runtime) is registered
here and nowhere else; it then goes through build, manifest, verify and bench like ONNX and TFLite."""
import json
import shutil
from pathlib import Path

import pytest

from posezoo.converters import formats
from posezoo.converters.formats import Format, FormatError
from posezoo.scripts.cli import main
from posezoo import runtime


@pytest.fixture
def fake_format(monkeypatch):
    def convert(c):
        return {p: Path(shutil.copyfile(c.fp32_onnx, c.out_dir / f"{c.model_id}_{p}.fakeonnx"))
                for p in c.precisions if p == "fp32"}

    onnx = formats.get("onnx")
    fake = Format("fakeonnx", ".fakeonnx", convert, onnx.quantize, onnx.embed, onnx.info, onnx.int8_weight_share,
                  runtime.OnnxRuntime)
    monkeypatch.setitem(formats.FORMATS, fake.name, fake)
    monkeypatch.setitem(runtime.RUNTIMES, fake.name, (fake.suffix, fake.runtime))
    return fake


def test_an_unknown_format_is_refused_where_it_is_named(capsys):
    with pytest.raises(FormatError, match="unknown format 'coreml'; posezoo converts to: onnx, tflite"):
        formats.get("coreml")
    with pytest.raises(SystemExit) as exit_:
        main(["build", "efficientpose-rt-lite", "--out", "/nonexistent", "--formats", "coreml"])
    assert exit_.value.code == 2 and "choose from onnx,tflite" in capsys.readouterr().err


def test_a_file_is_known_by_its_formats_suffix():
    assert formats.of_path(Path("m_fp32.tflite")).name == "tflite"
    with pytest.raises(FormatError, match="no format has the suffix '.mlmodel'"):
        formats.of_path(Path("m.mlmodel"))


@pytest.mark.slow
def test_a_registered_format_goes_through_build_manifest_verify_and_bench(fake_format, tmp_path, shared):
    from posezoo.scripts.bench.runner import Runner
    from posezoo.scripts.bench.targets import collect_targets

    out, common = tmp_path / "zoo", ["--mirror", str(shared / "checkpoints"), "--cache", str(tmp_path / "cache"),
                                     "--offline"]
    assert main(["build", "efficientpose-rt-lite", "--formats", "fakeonnx,onnx", "--precisions", "fp32",
                 "--max-samples", "2", "--out", str(out), "--calibration-images", str(shared / "images"),
                 *common]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    (model,) = manifest["models"]
    fake = next(a for a in model["artifacts"] if a["format"] == "fakeonnx")
    assert fake["path"] == "efficientpose-rt-lite/efficientpose-rt-lite_fp32.fakeonnx"
    assert fake["parity"]["passed"] and fake["format_info"]["opset"] >= 13
    assert [a["format"] for a in model["artifacts"]] == ["onnx", "fakeonnx"]  # registration order
    assert main(["verify", str(out / "manifest.json"), "--calibration-images", str(shared / "images"), *common]) == 0

    targets = collect_targets(manifest, out)
    target = next(t for t in targets if t.format == "fakeonnx")
    runner = Runner(str(target.path), target.format, 1, target.inputs, target.shape_hint)
    runner.run()
    assert runner.info["inputs"][0]["shape"] == [1, 224, 224, 3]
