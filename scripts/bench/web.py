"""`--web`: the median latency of each artifact in the site's try-it page, headless Chromium, wasm,
at each thread count (the page is cross-origin isolated, so 2 threads are 2 wasm threads)."""
from __future__ import annotations

import statistics
from pathlib import Path

from posezoo.scripts.bench.targets import BenchError


def web_latencies(manifest_path: Path, manifest: dict, ids, runs: int, images: Path | None,
                  threads: tuple[int, ...] = (1,)) -> dict[tuple[str, int], dict]:
    """{(artifact path, threads): {"ms": median, "backend": what ran it}} for the manifest's artifacts."""
    from posezoo.converters.fingerprint import photos_for
    from posezoo.scripts.browser import BrowserError, Page
    from posezoo.scripts.webserver import ServeError

    results = {}
    try:
        images = photos_for(manifest, images, "--images")
        for count in threads:
            with Page(manifest_path.parent, images, threads=count, backend="wasm") as page:
                for model in manifest["models"]:
                    if ids and model["id"] not in ids:
                        continue
                    for art in model["artifacts"]:
                        times, backend = page.latencies(model["id"], art["path"], runs)
                        results[(str(manifest_path.parent / art["path"]), count)] = {
                            "ms": round(statistics.median(times), 2), "backend": backend}
    except (BrowserError, ServeError) as e:
        raise BenchError(f"--web: {e}") from None
    return results
