"""The HTTP server behind `posezoo serve` and the browser test: the web page of zoo/web and a
built folder, on localhost, offline.

Routes: `/` the page (zoo/web), `/node_modules/...` its runtimes (installed by `npm ci` in
zoo/web from the lockfile), `/zoo/...` the built folder (manifest.json and artifacts),
`/images/...` the sample photos and `/samples.json` the people in them (boxes and keypoints
from the folder's annotation files, as the build reads them), for the page's person picker.
"""
from __future__ import annotations

import json
import posixpath
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from posezoo.errors import PosezooError

WEB = Path(__file__).resolve().parents[1] / "zoo" / "web"
MIME = {".wasm": "application/wasm", ".mjs": "text/javascript", ".js": "text/javascript",
        ".json": "application/json", ".onnx": "application/octet-stream", ".tflite": "application/octet-stream"}


class ServeError(PosezooError):
    pass


def samples(images: Path) -> list[dict]:
    """Every photo under `images` with its people: box (x, y, w, h) and visible keypoints."""
    from posezoo.converters.calibration import find_people

    by_image: dict[Path, list] = {}
    for person in find_people(images):
        by_image.setdefault(person.image, []).append(
            {"box": [float(v) for v in person.box], "keypoints": {k: list(v) for k, v in person.keypoints.items()}})
    return [{"name": str(path.relative_to(images)), "url": "/images/" + path.relative_to(images).as_posix(),
             "people": people} for path, people in by_image.items()]


class Handler(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **MIME}

    def __init__(self, *args, zoo_dir: Path, images: Path, samples_json: bytes, **kwargs):
        self.zoo_dir, self.images, self.samples_json = zoo_dir, images, samples_json
        super().__init__(*args, directory=str(WEB), **kwargs)

    def do_GET(self):
        if urlsplit(self.path).path == "/samples.json":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(self.samples_json)))
            self.end_headers()
            self.wfile.write(self.samples_json)
            return
        super().do_GET()

    def send_head(self):
        """A path no file can have (a NUL byte) is the client's error: 400, not a dropped connection."""
        if "\0" in unquote(self.path):
            self.send_error(400, "NUL byte in the path")
            return None
        return super().send_head()

    def translate_path(self, path: str) -> str:
        """`/zoo/` and `/images/` from their folders, the rest from zoo/web; nothing outside them."""
        path = posixpath.normpath(unquote(urlsplit(path).path))
        for prefix, root in (("/zoo/", self.zoo_dir), ("/images/", self.images)):
            if path.startswith(prefix):
                return str(_inside(root, path[len(prefix):]))
        return str(_inside(WEB, path.lstrip("/")))

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format, *args):  # quiet: errors only
        if args and str(args[1]).startswith(("4", "5")):
            super().log_message(format, *args)


def _inside(root: Path, relative: str) -> Path:
    target = (root / relative).resolve()
    return target if target.is_relative_to(root.resolve()) else root / "__outside__"


def read_build(directory: Path) -> dict:
    """The manifest of a build folder; a ServeError or LoaderError naming it where there is none to read."""
    from posezoo.loader import read_manifest

    path = Path(directory) / "manifest.json"
    if not path.is_file():
        raise ServeError(f"{directory} has no manifest.json: pass the --out folder of a posezoo build")
    return read_manifest(path)


def make_server(directory: Path, images: Path, port: int = 8000, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    directory, images = Path(directory).resolve(), Path(images).resolve()
    read_build(directory)
    if not (WEB / "node_modules" / "onnxruntime-web").is_dir():
        raise ServeError(f"the page's runtimes are not installed: run `npm ci` in {WEB} (npm registry, once)")
    if not images.is_dir():
        raise ServeError(f"photo folder {images} does not exist: pass --images DIR with photos of people "
                         "(and their annotation files) for the page")
    if not 0 <= port <= 65535:
        raise ServeError(f"port {port} is not a TCP port: pass --port from 1024 to 65535, or 0 for any free port")
    payload = json.dumps(samples(images)).encode()
    handler = partial(Handler, zoo_dir=directory, images=images, samples_json=payload)
    try:
        return ThreadingHTTPServer((host, port), handler)
    except OSError as e:
        raise ServeError(f"cannot serve on {host}:{port} ({e.strerror}): pass --port with a free port, "
                         "or 0 for any free port") from None
