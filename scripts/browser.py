"""Drive the posezoo page (zoo/web, served by scripts/serve.py) in headless Chromium.

Uses the system's browser (Debian's `chromium` and its matching `chromium-driver`) through
Selenium; nothing is downloaded. POSEZOO_CHROMIUM and POSEZOO_CHROMEDRIVER override the paths.
"""
from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

CHROMIUM = os.environ.get("POSEZOO_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("POSEZOO_CHROMEDRIVER", "/usr/bin/chromedriver")


class BrowserError(RuntimeError):
    pass


def available() -> str | None:
    """None when a browser can be driven here, else what is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        return f"not installed: {', '.join(missing)} (Debian: apt-get install chromium chromium-driver)"
    return None


class Page:
    """The page for one built folder: `with Page(DIR, images) as page: page.predict(...)`."""

    def __init__(self, directory: Path, images: Path, width: int = 1280, height: int = 1000):
        self.directory, self.images, self.size = Path(directory), Path(images), (width, height)

    def __enter__(self) -> "Page":
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service

        from scripts.serve import make_server

        if (why := available()) is not None:
            raise BrowserError(why)
        self.server = make_server(self.directory, self.images, port=0)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        options = Options()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    f"--window-size={self.size[0]},{self.size[1]}"):
            options.add_argument(arg)
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_script_timeout(600)
        self.driver.get(f"http://127.0.0.1:{self.server.server_address[1]}/")
        deadline = time.time() + 60
        while time.time() < deadline:
            status = self.driver.execute_script("return document.getElementById('status').textContent")
            if self.driver.execute_script("return !!window.posezoo"):
                break
            if self.driver.execute_script("return document.getElementById('status').className") == "error":
                status = self.driver.execute_script("return document.getElementById('status').textContent")
                raise BrowserError(f"the page failed: {status}")
            time.sleep(0.1)
        else:
            raise BrowserError(f"the page did not start within 60 s: {status}")
        self.samples = self.driver.execute_script("return window.posezoo.samples")
        return self

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

    def latencies(self, model_id: str, artifact_path: str, runs: int, sample: int = 0, person: int = 0) -> list[float]:
        """Inference milliseconds of `runs` real runs, after one warm-up run."""
        self.predict(model_id, artifact_path, sample, person)
        return self.call("time", model_id, artifact_path, sample, person, runs)

    def screenshot(self, model_id: str, artifact_path: str, sample: int, person: int, path: Path) -> Path:
        """The page as a person sees it after pressing run on that choice."""
        self.call("show", model_id, artifact_path, sample, person)
        status = self.driver.execute_script("return document.getElementById('status').textContent")
        if "ms" not in status:
            raise BrowserError(f"the page did not run {model_id} {artifact_path}: {status}")
        self.driver.save_screenshot(str(path))
        return Path(path)
