"""Drive the site's pages (scripts/site.py, served by scripts/webserver.py) in headless Chromium.

Uses the system's browser (Debian's `chromium` and its matching `chromium-driver`) through
Selenium; nothing is downloaded. POSEZOO_CHROMIUM and POSEZOO_CHROMEDRIVER override the paths.
"""
from __future__ import annotations

import os
import re
import shutil
import threading
import time
from pathlib import Path

from posezoo.errors import PosezooError

CHROMIUM = os.environ.get("POSEZOO_CHROMIUM", "/usr/bin/chromium")
# The page must reproduce the Python loader: FP32/FP16 keypoints within 1 % of the crop's side, all
# of them; INT8 (where float rounding can tip a quantized value) 95 % within 2 %.
WEB_GATES = {"fp32": (0.01, 1.0), "fp16": (0.01, 1.0), "int8": (0.02, 0.95)}
CHROMEDRIVER = os.environ.get("POSEZOO_CHROMEDRIVER", "/usr/bin/chromedriver")
# A log line of LiteRT.js's wasm module (glog format) as Chromium reports a console.error of it.
LITERT_LOG_LINE = re.compile(r'/vendor/litertjs-core/wasm/litert_wasm_\w+\.js \d+:\d+ "(INFO|WARNING): ')


class BrowserError(PosezooError):
    pass


def available() -> str | None:
    """None when a browser can be driven here, else what is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        return f"not installed: {', '.join(missing)} (Debian: apt-get install chromium chromium-driver)"
    return None


class Page:
    """The try-it page of one built folder's site: `with Page(DIR, images) as page: page.predict(...)`.
    Entering writes the site (photos from `images`) and serves the folder cross-origin isolated;
    `threads` and `backend` are the page's (its URL parameters)."""

    def __init__(self, directory: Path, images: Path | None, width: int = 1280, height: int = 1000,
                 threads: int = 1, backend: str = "auto", software_webgpu: bool = False):
        self.directory, self.images, self.size = Path(directory), images and Path(images), (width, height)
        self.threads, self.backend, self.software_webgpu = threads, backend, software_webgpu

    def __enter__(self) -> "Page":
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service

        from posezoo.scripts.site import write_site
        from posezoo.scripts.webserver import make_server

        if (why := available()) is not None:
            raise BrowserError(why)
        write_site(self.directory, self.images)
        self.server = make_server(self.directory, port=0)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        options = Options()
        options.binary_location = CHROMIUM
        # Chromium's fake camera (a moving test pattern) answers getUserMedia without asking.
        # `software_webgpu`: a WebGPU adapter on SwiftShader (Vulkan on the CPU; slow, but the WebGPU
        # code path runs as on a GPU); otherwise no GPU, so the page takes wasm.
        gpu = (("--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader", "--enable-features=Vulkan",
                "--use-angle=swiftshader") if self.software_webgpu else ("--disable-gpu",))
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", *gpu,
                    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                    f"--window-size={self.size[0]},{self.size[1]}"):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_script_timeout(600)
        self.open_try()
        self.samples = self.driver.execute_script("return window.posezoo.samples")
        return self

    def open_try(self, query: str = "") -> None:
        """Load the try-it page (`query`: more of its URL parameters, e.g. `model=ID`) and wait until
        it has drawn its first run (`window.posezoo` is set)."""
        self.open(f"try.html?threads={self.threads}&backend={self.backend}" + (f"&{query}" if query else ""))
        deadline = time.time() + 120
        while time.time() < deadline:
            status = self.driver.execute_script("return document.getElementById('status').textContent")
            if self.driver.execute_script("return !!window.posezoo"):
                return
            if self.driver.execute_script("return document.getElementById('status').className") == "error":
                raise BrowserError(f"the page failed: {status}")
            time.sleep(0.1)
        raise BrowserError(f"the page did not start within 120 s: {status}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/site/"

    def open(self, relative: str) -> None:
        """Load a page of the site (e.g. `index.html`, `models/ID.html`)."""
        self.driver.get(self.url + relative)

    def console_errors(self) -> list[str]:
        """The browser console's errors since the last call (Chromium's SEVERE entries). LiteRT.js's
        wasm writes its own INFO and WARNING log lines to stderr, which lands in console.error: those
        lines are not errors and are left out; anything else from it counts."""
        return [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"
                and not LITERT_LOG_LINE.search(e["message"])]

    def __exit__(self, *exc) -> None:
        self.driver.quit()
        self.server.shutdown()
        self.server.server_close()

    def call(self, function: str, *args):
        """`await window.posezoo.<function>(...args)` in the page; a JavaScript error becomes a BrowserError."""
        from selenium.common.exceptions import WebDriverException

        try:
            return self.driver.execute_script(f"return await window.posezoo.{function}(...arguments)", *args)
        except WebDriverException as e:
            raise BrowserError(f"{function}{args}: {str(e.msg or e).splitlines()[0]}") from None

    def predict(self, model_id: str, artifact_path: str, sample: int, person: int, crop: dict | None = None) -> dict:
        return self.call("predict", model_id, artifact_path, sample, person, crop)

    def latencies(self, model_id: str, artifact_path: str, runs: int, sample: int = 0,
                  person: int = 0) -> tuple[list[float], str]:
        """Inference milliseconds of `runs` real runs after one warm-up run, and the backend that ran them."""
        backend = self.predict(model_id, artifact_path, sample, person)["backend"]
        return self.call("time", model_id, artifact_path, sample, person, runs), backend

    def screenshot(self, path: Path) -> Path:
        """The page as it shows now, as a PNG."""
        self.driver.save_screenshot(str(path))
        return Path(path)

    def agreement(self, manifest_path: Path, ids=None) -> list[dict]:
        """Every artifact (of the models `ids`) run in the page and by posezoo.loader on the same
        photos: whole frames as the manifest's crop says, and each annotated person by the
        model's `calibration_crop` where it has one (or its own box/ROI crop). Errors are in units
        of the crop's longer side; a keypoint the decoder finds in neither agrees, as in parity
        (posezoo.decoders.keypoint_errors). `web_ms_median`: the page's inference time (1 thread
        wasm), median over the runs after the first."""
        import json

        import numpy as np
        from PIL import Image

        from posezoo.loader import LoaderError, load

        manifest = json.loads(Path(manifest_path).read_text())
        photos = [np.asarray(Image.open(self.images / s["name"]).convert("RGB")) for s in self.samples]
        rows = []
        for model in manifest["models"]:
            if ids and model["id"] not in ids:
                continue
            people_crop = model.get("calibration_crop") if model["input"]["crop"]["kind"] == "whole_image" else None
            for art in model["artifacts"]:
                py = load(manifest_path, model["id"], art["format"], art["precision"], art["origin"])
                errors, start, milliseconds = [], time.time(), []
                for s, sample in enumerate(self.samples):
                    runs = [(0, None)] if model["input"]["crop"]["kind"] == "whole_image" else []
                    if people_crop or not runs:
                        runs += [(k, people_crop) for k in range(len(sample["people"]))]
                    for person, crop in runs:
                        p = sample["people"][person]
                        py.crop = crop or model["input"]["crop"]
                        try:
                            expected = py(photos[s], box=p["box"], keypoints=p["keypoints"])
                        except LoaderError:
                            continue  # e.g. a rotated ROI without visible hips and shoulders
                        got = self.predict(model["id"], art["path"], s, person, crop)
                        errors.append(_errors(model, expected, got, py.height, py.width))
                        milliseconds.append(got["milliseconds"])
                errors = np.concatenate(errors)
                radius, need = WEB_GATES[art["precision"]]
                share = float(np.mean(errors <= radius))
                rows.append({"model": model["id"], "artifact": art["path"], "format": art["format"],
                             "precision": art["precision"], "origin": art["origin"], "keypoints": len(errors),
                             "pck@0.01": round(float(np.mean(errors <= 0.01)), 4),
                             "pck@0.02": round(float(np.mean(errors <= 0.02)), 4),
                             "worst": round(float(errors.max()), 5), "gate": f"pck@{radius} >= {need}",
                             "passed": share >= need, "seconds": round(time.time() - start, 1),
                             "web_ms_median": round(float(np.median(milliseconds[1:] or milliseconds)), 1)})
        return rows


def _errors(model: dict, expected, got: dict, height: int, width: int):
    from posezoo.decoders import keypoint_errors
    from posezoo.loader import crop_side

    if got["names"] != expected.names:
        raise BrowserError(f"{model['id']}: the page names the keypoints {got['names'][:3]}..., "
                           f"the loader {expected.names[:3]}...")
    return keypoint_errors(expected.keypoints, expected.scores, got["keypoints"], got["scores"], model["decoder"],
                           crop_side(expected.matrix, width, height))


def agreement_table(rows: list[dict]) -> str:
    lines = [f"{'model':28s} {'artifact':48s} {'keypoints':>9s} {'PCK@0.01':>8s} {'PCK@0.02':>8s} {'worst':>8s} "
             f"{'web ms':>7s}  gate"]
    for r in rows:
        lines.append(f"{r['model']:28s} {r['artifact']:48s} {r['keypoints']:9d} {r['pck@0.01']:8.4f} "
                     f"{r['pck@0.02']:8.4f} {r['worst']:8.5f} {r['web_ms_median']:7.1f}  "
                     f"{'pass' if r['passed'] else 'FAIL'} ({r['gate']})")
    return "\n".join(lines)
