"""End-to-end on the PyTorch families: `posezoo build <id> --checkpoint FILE` for one LiteHRNet and
one EfficientPose-NAS variant.

The official checkpoints cannot be downloaded here, so each test writes a checkpoint with exactly
the official structure (key names, shapes and nesting from tests/data/official_keys, dumped from
the publishers' own code) filled with random weights, and converts it through the same loading
code a genuine file takes. Random weights give flat heatmaps: where the artifact's peak ties with
the original's within float noise (parity.heatmap_ties) the keypoint agrees, so FP32 and FP16 pass
every gate and are published. INT8 quality can only be judged on genuine weights (a flat heatmap's
keypoints agree only as ties, which its gate refuses), so these builds skip INT8: its path is
tested on genuine originals (tests/test_e2e_blazepose.py, test_e2e_efficientpose.py).
"""
import json
from pathlib import Path

import pytest

from posezoo.recipes.torch_checkpoint import write_random_official_checkpoint
from posezoo.scripts.cli import main
from posezoo.manifest import read_manifest

pytestmark = pytest.mark.slow
KEYS = Path(__file__).parent / "data" / "official_keys"
CASES = {"litehrnet-18-coco-256x192": ("litehrnet-18-coco", "state_dict"),
         "efficientposenas-a-coco-256x192": ("efficientposenas-a-coco-256x192", None)}


@pytest.fixture(scope="module", params=sorted(CASES))
def built(request, tmp_path_factory, images):
    model_id = request.param
    table, nest = CASES[model_id]
    work = tmp_path_factory.mktemp(model_id)
    checkpoint = write_random_official_checkpoint(json.loads((KEYS / f"{table}.json").read_text())["keys"],
                                                  work / "checkpoint.pth", nest=nest)
    code = main(["build", model_id, "--checkpoint", str(checkpoint), "--out", str(work / "zoo"),
                 "--calibration-images", str(images), "--max-samples", "12", "--precisions", "fp32,fp16",
                 "--keep-going"])
    return model_id, work, checkpoint, code


def test_fp32_and_fp16_pass_every_gate_and_are_published(built):
    model_id, work, _, code = built
    (model,) = read_manifest(work / "zoo" / "manifest.json")["models"]
    assert code == 0 and model["id"] == model_id
    entries = {(e["format"], e["precision"]): e for e in model["artifacts"] + model["rejected"]}
    assert set(entries) == {(f, p) for f in ("onnx", "tflite") for p in ("fp32", "fp16")}
    for fmt in ("onnx", "tflite"):
        assert entries[fmt, "fp32"]["parity"]["rel_err"] <= 1e-4
        assert entries[fmt, "fp16"]["parity"]["cos"] >= 0.9999
    published = {(a["format"], a["precision"]) for a in model["artifacts"]}
    assert {(f, p) for f in ("onnx", "tflite") for p in ("fp32", "fp16")} <= published, model.get("rejected")
    for fmt, precision in published:
        assert (work / "zoo" / model_id / f"{model_id}_{precision}.{fmt}").is_file()
    tflite = [a for a in model["artifacts"] if a["format"] == "tflite"]
    assert all(a["input_layout"] == "NHWC" for a in tflite)  # onnx2tf makes NCHW models NHWC


def test_user_checkpoint_is_recorded_as_user_supplied_provenance(built):
    import hashlib

    _, work, checkpoint, _ = built
    (model,) = read_manifest(work / "zoo" / "manifest.json")["models"]
    assert model["source"]["user_supplied"] and model["source"]["origin"] == "user"
    assert model["source"]["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert model["complexity"]["params"] > 1_000_000


def test_a_checkpoint_with_a_missing_key_is_refused_naming_it(tmp_path, images, capsys):
    keys = json.loads((KEYS / "litehrnet-18-coco.json").read_text())["keys"]
    missing = next(k for k in keys if k.startswith("keypoint_head."))
    del keys[missing]
    checkpoint = write_random_official_checkpoint(keys, tmp_path / "bad.pth")
    code = main(["build", "litehrnet-18-coco-256x192", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "zoo"),
                 "--calibration-images", str(images)])
    assert code == 2 and missing in capsys.readouterr().err
