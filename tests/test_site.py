"""`posezoo site` (scripts/site.py): the zoo table, a page per model, the try-it page.

Fast tests read the pages as text, from hand-made manifests, and write a site with a stand-in for
zoo/web (conftest's `web`). Slow tests open the site of conftest's `zoo` manifest (MoveNet
Lightning: Google's INT8 file and our ONNX of it; EfficientPose RT-Lite FP32/INT8, ONNX and TFLite)
in headless Chromium: the index lists every model and artifact, every model page loads with its
pictures, the try-it page draws every artifact's skeleton where the Python loader puts the
keypoints, compares two artifacts, and runs the webcam on Chromium's fake camera; no page logs a
console error. Screenshots of each page kind go to $POSEZOO_SCREENSHOTS (else the test's temp folder).
"""
import base64
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import manifest_artifact, manifest_model
from posezoo.manifest import empty_manifest
from posezoo.scripts import site
from posezoo.scripts.cli import main

PARITY_FAIL = {"samples": 26, "rel_err": 0.5, "cos": 0.9, "pck@0.05": 0.9, "passed": False, "people": "gate"}


def _manifest() -> dict:
    first = manifest_model("m-1", [manifest_artifact("onnx", "fp32", "1", "m-1/m-1_fp32.onnx", 4_000_000),
                                   manifest_artifact("tflite", "int8", "2", "m-1/m-1_int8.tflite", 1_000_000)])
    first["rejected"] = [{"format": "onnx", "precision": "int8", "parity": PARITY_FAIL,
                          "reason": "INT8 gate failed on the gate people: pck@0.05 0.9 < 0.97"}]
    second = manifest_model("m-2", [manifest_artifact("onnx", "fp16", "3", "m-2/m-2_fp16.onnx", 2_000_000)])
    second["family"] = "g"
    second["source"]["derived"] = {"format": "tfjs graph model", "converted_by": "someone", "converted_from": "x",
                                   "weights": 1, "weights_stored_as": {}, "summary": "Someone's conversion."}
    return {**empty_manifest("0.1"), "models": [first, second]}


EVALS = [{"annotations": "x/test_coco.json", "metric": "AP", "people": 14, "models": [{"id": "m-1", "rows": [
    {"format": "original", "precision": "original", "origin": "original", "path": "x.tflite", "AP": 0.5, "drop": 0},
    {"format": "onnx", "precision": "fp32", "origin": "converted", "path": "m-1/m-1_fp32.onnx", "AP": 0.4,
     "drop": 0.1}]}]}]
BENCH = {("m-1/m-1_int8.tflite", 1): {"median_ms": 12.0, "web_ms": 20.0}, ("m-1/m-1_int8.tflite", 2): {"median_ms": 7.0}}


def test_the_index_lists_every_model_and_artifact_with_its_numbers():
    page = site.index_html(_manifest(), EVALS, BENCH, "size_vs_error.png")
    for mid in ("m-1", "m-2"):
        assert f'href="models/{mid}.html"' in page
    for path, size in (("m-1/m-1_fp32.onnx", "4.00 MB"), ("m-1/m-1_int8.tflite", "1.00 MB"), ("m-2/m-2_fp16.onnx", "2.00 MB")):
        assert f'<a href="../{path}" download>{size}</a>' in page
    assert "rejected: INT8 gate failed on the gate people" in page  # the onnx int8 cell of m-1
    assert "AP -0.100" in page and "1T 12.0, web 20.0 ms; 2T 7.0 ms" in page
    assert page.count("<tr data-family=") == 2 and 'data-published="onnx-fp32 tflite-int8"' in page
    assert 'src="size_vs_error.png"' in page and 'href="/' not in page  # relative links only


def test_a_model_page_has_provenance_downloads_and_its_card():
    first, second = _manifest()["models"]
    page = site.model_html(first, EVALS, BENCH, ["m-1_test_coco.png"])
    for art in first["artifacts"]:
        assert f'href="../../{art["path"]}" download' in page and art["sha256"] in page
        assert f'href="../try.html?model=m-1&amp;artifact={art["path"]}"' in page
    assert first["source"]["sha256"] in page and "rejected: INT8 gate failed" in page
    assert 'src="m-1_test_coco.png"' in page and "AP 0.400 (-0.100) on test_coco.json" in page
    other = site.model_html(second, [], {}, [])
    assert "not the publisher's file" in other and "Someone&#x27;s conversion." in other
    assert "No pictures yet" in other


@pytest.fixture
def built(tmp_path):
    folder = tmp_path / "zoo"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(_manifest()))
    return folder


def test_the_site_is_written_whole_with_runtimes_and_sample_photos(web, built, images):
    index = site.write_site(built, images / "single")
    out = index.parent
    assert out == built / "site"
    assert {p.name for p in (out / "models").iterdir()} == {"m-1.html", "m-1.md", "m-2.html", "m-2.md"}
    for name in site.PAGE_FILES:
        assert (out / name).read_text() == (web / name).read_text()
    assert (out / "vendor" / "onnxruntime-web" / "ort.wasm.min.mjs").is_file()
    assert (out / "vendor" / "litertjs-core" / "wasm" / "x").is_file()
    samples = json.loads((out / "samples.json").read_text())
    assert {s["name"] for s in samples} == {"squat.bmp", "two_people_walking.bmp"}
    for s in samples:
        assert (out / s["url"]).read_bytes() == (images / "single" / s["name"]).read_bytes() and s["people"]
    assert (out / "samples" / "LICENSE-coral-test-data").is_file()  # the photos' terms travel with them
    assert "# m-1" in (out / "models" / "m-1.md").read_text()


def test_a_big_photo_folder_gives_a_handful_of_samples(web, built, images):
    site.write_site(built, images, max_photos=2)
    samples = json.loads((built / "site" / "samples.json").read_text())
    assert len(samples) == 2 and all(s["people"] for s in samples)
    assert sorted(p.name for p in (built / "site" / "samples").rglob("*.jpg")) == sorted(
        Path(s["name"]).name for s in samples)


def test_a_failed_site_leaves_the_previous_one(web, built, images, monkeypatch):
    site.write_site(built, images / "single")
    before = {p: p.read_bytes() for p in (built / "site").rglob("*") if p.is_file()}

    def broken(*args):
        raise RuntimeError("disk full")

    works = site.model_html
    monkeypatch.setattr(site, "model_html", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        site.write_site(built, None)
    assert {p: p.read_bytes() for p in (built / "site").rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in built.iterdir()) == ["manifest.json", "site"]  # no staging folder left
    (built / ".site-killed").mkdir()  # a killed run's staging folder goes with the next run
    monkeypatch.setattr(site, "model_html", works)
    site.write_site(built, None)
    assert sorted(p.name for p in built.iterdir()) == ["manifest.json", "site"]


def test_bad_input_is_named(web, built, tmp_path, capsys):
    (built / "bench.json").write_text("{ no")
    with pytest.raises(site.SiteError, match=f"{built / 'bench.json'} is not a `posezoo bench --save` file"):
        site.read_bench(built)
    assert main(["site", str(tmp_path)]) == 2
    assert f"{tmp_path} has no manifest.json" in capsys.readouterr().err
    (built / "bench.json").unlink()
    assert main(["site", str(built), "--images", str(tmp_path / "none")]) == 2
    assert f"photo folder {tmp_path / 'none'} does not exist" in capsys.readouterr().err


# --- in headless Chromium ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def site_page(zoo, shared, tmp_path_factory):
    from test_web import MISSING

    if MISSING:
        pytest.skip(f"browser test: {MISSING}")
    from posezoo.scripts.browser import Page

    if not (zoo.parent / "eval").is_dir():  # tests/test_evaluate.py writes it in a whole run
        images = shared / "images" / "mpii"
        assert main(["eval", str(zoo), "--images", str(images), "--annotations", str(images / "test_mpii.json"),
                     "--mirror", str(shared / "checkpoints"), "--offline"]) == 0
    with Page(zoo.parent, shared / "images") as page:
        yield page


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("POSEZOO_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _canvas(page) -> np.ndarray:
    from PIL import Image

    url = page.driver.execute_script("return document.getElementById('canvas').toDataURL('image/png')")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")).astype(int)


def _rt_lite(zoo: Path, *kinds: tuple[str, str]) -> tuple:
    """EfficientPose RT-Lite's manifest entry and the paths of its artifacts of these (format, precision)."""
    model = next(m for m in json.loads(zoo.read_text())["models"] if m["id"] == "efficientpose-rt-lite")
    return model, *(next(a["path"] for a in model["artifacts"] if (a["format"], a["precision"]) == k) for k in kinds)


def _dots(rgb: np.ndarray) -> np.ndarray:
    """Where the page drew a keypoint: its fill is hsl(0..60, 100 %, 50 %), red to yellow."""
    return (rgb[..., 0] >= 220) & (rgb[..., 2] <= 50)


@pytest.mark.slow
def test_the_index_lists_every_model_and_artifact(site_page, zoo, shots):
    page = site_page
    page.open("index.html")
    links = page.driver.execute_script("return [...document.querySelectorAll('#zoo a')].map(a => a.getAttribute('href'))")
    manifest = json.loads(zoo.read_text())
    for model in manifest["models"]:
        assert f"models/{model['id']}.html" in links
        assert all(f"../{a['path']}" in links for a in model["artifacts"])
    page.driver.execute_script("const f = document.getElementById('filter'); f.value = 'movenet';"
                               "f.dispatchEvent(new Event('input'))")
    visible = page.driver.execute_script("return [...document.querySelectorAll('#zoo tbody tr')].filter(r => !r.hidden)"
                                         ".map(r => r.cells[0].textContent)")
    assert visible == ["movenet-lightning"]
    page.screenshot(shots / "site_index.png")
    assert page.console_errors() == []


@pytest.mark.slow
def test_every_model_page_loads_with_its_pictures(site_page, zoo, shots):
    page = site_page
    for model in json.loads(zoo.read_text())["models"]:
        page.open(f"models/{model['id']}.html")
        images = page.driver.execute_script(
            "return [...document.images].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])")
        assert all(loaded for _, loaded in images), images
        if model["id"] == "efficientpose-rt-lite":  # evaluated on MPII: the pictures of real people
            assert any(src == "efficientpose-rt-lite_test_mpii.png" for src, _ in images), images
        page.screenshot(shots / f"site_model_{model['id']}.png")
        assert page.console_errors() == []


@pytest.mark.slow
def test_try_it_draws_every_artifact_where_the_loader_puts_the_keypoints(site_page, zoo, shared, shots):
    from PIL import Image

    from posezoo.loader import load

    from posezoo.decoders import found

    page = site_page
    page.open_try()
    photo = np.asarray(Image.open(shared / "images" / "single" / "squat.bmp").convert("RGB"))
    sample = [s["name"] for s in page.samples].index("single/squat.bmp")
    for model in json.loads(zoo.read_text())["models"]:
        for art in model["artifacts"]:
            shown = page.call("show", model["id"], art["path"], sample, 0)
            assert not shown["error"], shown["status"]
            expected = load(zoo, model["id"], art["format"], art["precision"], art["origin"])(photo)
            canvas = _canvas(page)
            assert canvas.shape == photo.shape
            hits = []
            for (x, y), seen in zip(expected.keypoints, found(expected.scores, model["decoder"])):
                if not seen:
                    continue
                x, y = int(x), int(y)
                window = (slice(max(y - 2, 0), y + 3), slice(max(x - 2, 0), x + 3))
                hits.append(bool(_dots(canvas[window]).any()) and not _dots(photo[window].astype(int)).any())
            assert len(hits) >= 5 and np.mean(hits) >= 0.9, (art["path"], hits)
    page.screenshot(shots / "site_try.png")
    assert page.console_errors() == []


@pytest.mark.slow
def test_try_it_compares_two_artifacts(site_page, zoo, shots):
    page = site_page
    model, fp32, int8 = _rt_lite(zoo, ("onnx", "fp32"), ("tflite", "int8"))
    page.open_try()
    sample = [s["name"] for s in page.samples].index("single/squat.bmp")
    shown = page.call("show", model["id"], fp32, sample, 0, int8)
    assert shown["a"] and shown["b"] and not shown["error"]
    assert shown["rows"] == len(model["keypoints"]["names"]) + 1
    rgb = _canvas(page)
    magenta = (rgb[..., 0] >= 230) & (np.abs(rgb[..., 1] - 60) <= 40) & (rgb[..., 2] >= 170)
    cyan = (rgb[..., 0] <= 40) & (np.abs(rgb[..., 1] - 200) <= 40) & (rgb[..., 2] >= 220)
    assert magenta.sum() > 50 and cyan.sum() > 50  # both skeletons
    page.screenshot(shots / "site_compare.png")
    assert page.console_errors() == []


@pytest.mark.slow
def test_the_webcam_runs_on_chromiums_fake_camera(site_page, zoo, shots):
    page = site_page
    model, art = _rt_lite(zoo, ("tflite", "fp32"))
    page.open_try(f"model={model['id']}")
    # picked first: the file browsers run fastest
    assert page.driver.execute_script("return document.getElementById('artifact').value") == art
    result = page.call("webcam", model["id"], art, 4)
    assert not result["error"], result["status"]
    assert result["frames"] >= 3 and result["fps"] > 0 and "FPS" in result["status"], result
    page.screenshot(shots / "site_webcam.png")
    assert page.console_errors() == []



@pytest.mark.slow
def test_the_webgpu_path_agrees_with_the_loader_or_falls_back(zoo, shared):
    """On a WebGPU adapter (SwiftShader's, on the CPU: the same code path as a GPU's) the page picks
    WebGPU by itself; each artifact runs there, or falls back to wasm and says why, and its
    keypoints agree with the Python loader's as on wasm (browser.WEB_GATES)."""
    from PIL import Image

    from posezoo.decoders import keypoint_errors
    from posezoo.loader import crop_side, load
    from posezoo.scripts.browser import WEB_GATES, Page
    from test_web import MISSING

    if MISSING:
        pytest.skip(f"browser test: {MISSING}")
    photo = np.asarray(Image.open(shared / "images" / "single" / "squat.bmp").convert("RGB"))
    model = _rt_lite(zoo)[0]
    with Page(zoo.parent, shared / "images" / "single", backend="auto", software_webgpu=True) as page:
        if page.driver.execute_script("return window.posezoo.setup")["backend"] != "webgpu":
            pytest.skip("this Chromium gives no WebGPU adapter on SwiftShader")
        sample = [s["name"] for s in page.samples].index("squat.bmp")
        backends = []
        for art in model["artifacts"]:
            got = page.predict(model["id"], art["path"], sample, 0)
            predictor = load(zoo, model["id"], art["format"], art["precision"], art["origin"])
            want = predictor(photo)
            errors = keypoint_errors(want.keypoints, want.scores, got["keypoints"], got["scores"], model["decoder"],
                                     crop_side(want.matrix, predictor.width, predictor.height))
            radius, need = WEB_GATES[art["precision"]]
            assert np.mean(errors <= radius) >= need, (art["path"], got["backend"], errors.max())
            assert "webgpu" in got["backend"], got["backend"]  # ran there, or names why it fell back
            backends.append(got["backend"])
        assert any("webgpu failed" not in b for b in backends), backends  # at least one ran on WebGPU
