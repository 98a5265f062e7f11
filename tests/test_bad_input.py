"""Bad input gets a message that names the file or value and says what to do (through the CLI:
exit 2), never a traceback, a wrong result or silence: calibration photos and annotations, the
loader's image, box, keypoints and manifest, `read_manifest`, and `posezoo serve`."""
import contextlib
import hashlib
import json
import shutil
import socket
import threading
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from conftest import manifest_artifact, manifest_model
from posezoo.converters.calibration import CalibrationError, find_people, load_samples
from posezoo.scripts import site
from posezoo.scripts.cli import main
from posezoo.scripts.webserver import ServeError, make_server
from posezoo import loader
from posezoo.loader import LoaderError, Predictor, crop_matrix, warp
from posezoo.manifest import ManifestError, empty_manifest, read_manifest

BOX = {"kind": "box", "padding": 1.25}
SPEC = {"name": "image", "shape": [1, 64, 48, 3], "layout": "NHWC", "dtype": "float32", "color": "RGB",
        "normalization": {"mean": [0, 0, 0], "std": [255, 255, 255]}, "crop": BOX}
DEEP = "[" * 100_000 + "]" * 100_000


def _coco_folder(images, tmp_path, photos=None):
    """A copy of the shared COCO folder (annotations and `photos`, default all) to spoil."""
    folder = tmp_path / "coco"
    folder.mkdir()
    shutil.copy(images / "coco" / "test_coco.json", folder)
    for photo in sorted((images / "coco").glob("*.jpg"))[:photos]:
        shutil.copy(photo, folder)
    return folder


def _walk(folder, capsys):
    """`posezoo walk` cuts its inputs from the folder before it opens any model file."""
    code = main(["walk", "none.tflite", "none.onnx", "--model", "movenet-lightning", "--calibration-images",
                 str(folder)])
    return code, capsys.readouterr().err


# ---------------------------------------------------------------------------------- calibration

def test_a_truncated_photo_is_named(images, tmp_path, capsys):
    folder = _coco_folder(images, tmp_path)
    photo = sorted(folder.glob("*.jpg"))[1]
    photo.write_bytes(photo.read_bytes()[:5000])
    with pytest.raises(CalibrationError, match=f"photo {photo} cannot be read .*replace it or remove it"):
        load_samples(folder, SPEC, BOX)
    code, err = _walk(folder, capsys)
    assert code == 2 and f"posezoo walk: error: photo {photo} cannot be read" in err


def test_a_photo_that_is_not_an_image_is_named(tmp_path):
    (tmp_path / "person.jpg").write_bytes(b"not a photo")
    with pytest.raises(CalibrationError, match=f"photo {tmp_path / 'person.jpg'} cannot be read"):
        find_people(tmp_path)


def test_annotated_people_whose_photos_are_missing_are_an_error(images, tmp_path, capsys):
    folder = _coco_folder(images, tmp_path, photos=2)
    annotations = json.loads((folder / "test_coco.json").read_text())
    missing = sorted({im["file_name"] for im in annotations["images"]} - {p.name for p in folder.glob("*.jpg")})
    assert missing
    with pytest.raises(CalibrationError) as e:
        find_people(folder)
    assert f"annotation file {folder / 'test_coco.json'}" in str(e.value)
    assert all(str(folder / name) in str(e.value) for name in missing)
    assert "put the photos there or remove their annotations" in str(e.value)
    code, err = _walk(folder, capsys)
    assert code == 2 and str(folder / missing[0]) in err


def _spoil_boxes(folder, boxes):
    path = folder / "test_coco.json"
    annotations = json.loads(path.read_text())
    for a, box in zip(annotations["annotations"], boxes):
        a["bbox"] = box
    path.write_text(json.dumps(annotations))  # Python writes NaN and Infinity, as any hand-made file may hold
    return path


def test_people_with_empty_boxes_are_skipped_with_a_count(images, tmp_path):
    """Zero-size boxes occur in public datasets: skipped, counted in a warning; every other
    person's crop is exactly what it was."""
    folder = _coco_folder(images, tmp_path)
    before = load_samples(folder, SPEC, BOX)
    path = _spoil_boxes(folder, [[10, 10, 0, 50], [10, 10, 40, -5]])
    with pytest.warns(UserWarning, match=f"annotation file {path}: skipped 2 of {len(before)} people"):
        after = load_samples(folder, SPEC, BOX)
    assert len(after) == len(before) - 2
    for a, b in zip(after, before[2:]):
        np.testing.assert_array_equal(a.tensor, b.tensor)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_box_is_an_error(images, tmp_path, value):
    folder = _coco_folder(images, tmp_path)
    path = _spoil_boxes(folder, [[1, 2, 30, 40], [value, 2, 30, 40]])
    with pytest.raises(CalibrationError, match=f"annotation file {path}: person #1 .* non-finite .*fix or remove"):
        find_people(folder)


# ---------------------------------------------------------------------------------------- loader

def test_warp_samples_only_the_pixels_it_needs():
    """A 3000x3000 photo: the old warp widened all of it to int64 (216 MB); now memory follows
    the 64x48 input grid."""
    photo = np.random.default_rng(0).integers(0, 256, (3000, 3000, 3), dtype=np.uint8)
    matrix = np.array([[40.0, 3.0, 100.0], [-2.0, 45.0, 50.0]])
    tracemalloc.start()
    out = warp(photo, matrix, 48, 64)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2_000_000
    expected = Image.fromarray(photo).transform((48, 64), Image.AFFINE, tuple(matrix.ravel()),
                                               resample=Image.BILINEAR, fillcolor=(0, 0, 0))
    np.testing.assert_array_equal(out, np.asarray(expected))


@pytest.mark.parametrize("shape", [(0, 0, 3), (0, 20, 3), (20, 0, 3)])
def test_an_empty_image_is_refused(shape):
    model = {"id": "m", "input": SPEC, "decoder": {}, "keypoints": {"names": []}, "outputs": []}
    artifact = {"io": {"inputs": [{"name": "image", "dtype": "float32"}], "outputs": []}, "input_layout": "NHWC"}
    predict = Predictor(model, artifact, run=None)
    with pytest.raises(LoaderError, match=rf"non-empty HxWx3 uint8 RGB image, got uint8 \({shape[0]}, {shape[1]}, 3"):
        predict(np.zeros(shape, np.uint8), box=(0, 0, 10, 10))


@pytest.mark.parametrize("box", [(float("nan"), 0, 10, 10), (0, 0, float("inf"), 10), (0, 0, 0, 10),
                                 (0, 0, 10, -4), (0, 0, 10)])
def test_a_box_that_is_not_finite_and_positive_is_refused(box):
    with pytest.raises(LoaderError, match=r"box .* is not a person box: pass box=\(x, y, w, h\).*w > 0 and h > 0"):
        crop_matrix(BOX, 48, 64, (100, 100), box=box)


def test_non_finite_keypoints_are_refused():
    roi = {"kind": "rotated_roi", "center_keypoints": ["lh", "rh"], "up_keypoints": ["ls", "rs"]}
    keypoints = {"lh": (10, 50), "rh": (20, 50), "ls": (10, 20), "rs": (20, 20), "nose": (15, float("nan"))}
    with pytest.raises(LoaderError, match="keypoints {'nose': .*} are not finite"):
        crop_matrix(roi, 64, 64, (100, 100), keypoints=keypoints)


@pytest.mark.parametrize("text,why", [(None, "does not exist"), ("{ not json", "is not valid JSON"),
                                      (DEEP, "is nested too deeply"), ("[]", "is not a JSON object"),
                                      ('{"schema_version": 2}', "has schema_version 2; this posezoo reads version 1")])
def test_an_unreadable_manifest_is_named(tmp_path, text, why):
    path = tmp_path / "manifest.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(LoaderError, match=f"manifest {path} {why}"):
        loader.load(path, "m")


@pytest.mark.parametrize("relative", ["../x.onnx", "m/../../x.onnx", "/ABS/x.onnx"])
def test_artifact_paths_outside_the_manifests_folder_are_refused(tmp_path, relative):
    """Even where the file outside is the one the manifest lists, byte for byte: by the schema
    when the manifest is read, and by the loader's own check on the path it opens."""
    outside = tmp_path / "x.onnx"
    outside.write_bytes(b"model")
    relative = relative.replace("/ABS", str(tmp_path))
    folder = tmp_path / "zoo"
    (folder / "m").mkdir(parents=True)
    artifact = manifest_artifact("onnx", "fp32", hashlib.sha256(b"model").hexdigest(), relative, 5)
    (folder / "manifest.json").write_text(json.dumps({**empty_manifest("0.1"), "models": [
        manifest_model("m", [artifact])]}))
    with pytest.raises(LoaderError, match=f"invalid at models/0/artifacts/0/path: '{relative}' does not match .*"
                                          "never leaving it"):
        loader.load(folder / "manifest.json", "m", "onnx", "fp32")
    with pytest.raises(LoaderError, match=f"artifact path '{relative}' leads outside the manifest's folder {folder}"):
        loader.artifact_path(folder, relative)


# ------------------------------------------------------------------------------------- manifest

def test_a_deeply_nested_manifest_is_a_manifest_error(tmp_path, capsys):
    path = tmp_path / "manifest.json"
    path.write_text(DEEP)
    with pytest.raises(ManifestError, match=f"{path} is nested too deeply to be a manifest"):
        read_manifest(path)
    assert main(["verify", str(path)]) == 2
    assert f"posezoo verify: error: manifest {path} is nested too deeply" in capsys.readouterr().err


def test_recursion_in_the_schema_check_is_a_manifest_error(tmp_path, monkeypatch):
    """The schema check recurses too (on a nested value it reports, a few levels short of json's limit)."""
    from posezoo import schema

    def deep(*args):
        raise RecursionError("maximum recursion depth exceeded")

    path = tmp_path / "manifest.json"
    path.write_text('{"schema_version": 1}')
    monkeypatch.setattr(schema, "validate", deep)
    with pytest.raises(ManifestError, match=f"{path} is nested too deeply"):
        read_manifest(path)


# ---------------------------------------------------------------------------------------- serve

@pytest.fixture
def built(tmp_path):
    folder = tmp_path / "zoo"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(empty_manifest("0.1")))
    return folder


def _serve(capsys, *args):
    code = main(["serve", *map(str, args)])
    return code, capsys.readouterr().err


def test_serve_on_a_busy_port_names_it(web, built, images, capsys):
    site.write_site(built, images / "single")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ServeError, match=f"cannot serve on 127.0.0.1:{port} .*pass --port with a free port"):
            make_server(built, port)
        code, err = _serve(capsys, built, "--images", images / "single", f"--port={port}")
    assert code == 2 and f"posezoo serve: error: cannot serve on 127.0.0.1:{port}" in err


@pytest.mark.parametrize("port", [70000, -1])
def test_serve_on_an_invalid_port_names_it(web, built, images, capsys, port):
    code, err = _serve(capsys, built, "--images", images / "single", f"--port={port}")
    assert code == 2 and f"port {port} is not a TCP port: pass --port from 1024 to 65535, or 0" in err


def test_serve_on_a_folder_without_a_manifest(web, tmp_path, images, capsys):
    with pytest.raises(ServeError, match="has no manifest.json: pass the --out folder of a posezoo build"):
        make_server(tmp_path, 0)
    code, err = _serve(capsys, tmp_path)  # without --images: the photos would come from the manifest
    assert code == 2 and f"error: {tmp_path} has no manifest.json" in err


@pytest.mark.parametrize("text,why", [("{ not json", "is not valid JSON"), (DEEP, "is nested too deeply")])
def test_serve_on_a_manifest_that_is_not_json(web, built, images, capsys, text, why):
    (built / "manifest.json").write_text(text)
    for extra in ([], ["--images", images / "single"]):
        code, err = _serve(capsys, built, *extra)
        assert code == 2 and f"error: manifest {built / 'manifest.json'} {why}" in err


def test_serve_on_a_missing_photo_folder(web, built, tmp_path, capsys):
    code, err = _serve(capsys, built, "--images", tmp_path / "none")
    assert code == 2 and f"photo folder {tmp_path / 'none'} does not exist: pass --images DIR" in err


def _get(port, path: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET " + path + b" HTTP/1.0\r\n\r\n")
        response = b""
        while chunk := s.recv(65536):
            response += chunk
    return response


@contextlib.contextmanager
def _serving(built, images):
    """The folder's site written and served on a free port; yields the port."""
    site.write_site(built, images / "single")
    server = make_server(built, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_a_nul_byte_in_a_url_is_a_bad_request(web, built, images):
    with _serving(built, images) as port:
        for path in (b"/manifest%00.json", b"/site/samples/%00", b"/site/try.html\x00"):
            assert _get(port, path).startswith(b"HTTP/1.0 400 "), path
        assert _get(port, b"/manifest.json").startswith(b"HTTP/1.0 200 ")  # and it still serves


def test_the_server_stays_inside_the_folder_and_isolates_the_page(web, built, images, tmp_path):
    """A symlink out of the folder and a climbing path answer 404; every answer carries COOP/COEP, so
    the page is cross-origin isolated (multi-threaded wasm); `/` goes to the site's index."""
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    (built / "link.txt").symlink_to(secret)
    with _serving(built, images) as port:
        for path in (b"/link.txt", b"/../secret.txt", b"/site/../../secret.txt"):
            answer = _get(port, path)
            assert answer.startswith(b"HTTP/1.0 404 ") and b"not yours" not in answer, path
        answer = _get(port, b"/site/try.html")
        assert answer.startswith(b"HTTP/1.0 200 ")
        assert b"Cross-Origin-Opener-Policy: same-origin" in answer
        assert b"Cross-Origin-Embedder-Policy: require-corp" in answer
        assert b"Location: /site/index.html" in _get(port, b"/")


def test_a_stopped_command_unwinds_and_leaves_no_work_folder(tmp_path, monkeypatch):
    """SIGTERM (kill, a scheduler, a CI timeout) exits like Ctrl-C: with-blocks close, so a build's
    temporary work folder goes; the previous handler is back afterwards."""
    import os
    import signal
    import tempfile
    import time

    from posezoo.scripts import cli

    def stopped_midway(args):
        with tempfile.TemporaryDirectory(dir=tmp_path):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        return 0

    monkeypatch.setattr(cli, "cmd_verify", stopped_midway)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stop:
        cli.main(["verify", str(tmp_path / "manifest.json")])
    assert stop.value.code == 128 + signal.SIGTERM and list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is before
