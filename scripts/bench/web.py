"""`--web`: the median latency of each artifact in the posezoo page, headless Chromium, 1 thread wasm."""
from __future__ import annotations

import statistics
from pathlib import Path

from posezoo.scripts.bench.targets import BenchError


def web_latencies(manifest_path: Path, manifest: dict, ids, runs: int, images: Path | None) -> dict[str, float]:
    """{artifact path: median ms in the page, 1 thread wasm} for the manifest's artifacts."""
    from posezoo.converters.fingerprint import photos_for
    from posezoo.scripts.browser import BrowserError, Page
    from posezoo.scripts.webserver import ServeError

    medians = {}
    try:
        images = photos_for(manifest, images, "--images")
        with Page(manifest_path.parent, images) as page:
            for model in manifest["models"]:
                if ids and model["id"] not in ids:
                    continue
                for art in model["artifacts"]:
                    times = page.latencies(model["id"], art["path"], runs)
                    medians[str(manifest_path.parent / art["path"])] = round(statistics.median(times), 2)
    except (BrowserError, ServeError) as e:
        raise BenchError(f"--web: {e}") from None
    return medians
