"""The HTTP server behind `posezoo serve` and the browser tests: a built folder and its site
(scripts/site.py writes DIR/site/), on localhost, offline.

Every file comes from the folder, nothing outside it (symlinks out of it are refused). `/` goes
to the site's index. Responses carry the cross-origin isolation headers (COOP same-origin, COEP
require-corp): the page may then use SharedArrayBuffer, which multi-threaded wasm needs.
"""
from __future__ import annotations

import posixpath
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from posezoo.errors import PosezooError

MIME = {".wasm": "application/wasm", ".mjs": "text/javascript", ".js": "text/javascript", ".md": "text/markdown",
        ".json": "application/json", ".onnx": "application/octet-stream", ".tflite": "application/octet-stream"}
# What makes a page cross-origin isolated; static hosts need the same two headers for threads.
ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}


class ServeError(PosezooError):
    pass


class Handler(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **MIME}

    def __init__(self, *args, root: Path, **kwargs):
        self.root = root
        super().__init__(*args, directory=str(root), **kwargs)

    def send_head(self):
        """`/` is the site's index. A path no file can have (a NUL byte) is the client's error: 400,
        not a dropped connection."""
        if "\0" in unquote(self.path):
            self.send_error(400, "NUL byte in the path")
            return None
        if urlsplit(self.path).path == "/":
            self.send_response(302)
            self.send_header("Location", "/site/index.html")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return super().send_head()

    def translate_path(self, path: str) -> str:
        path = posixpath.normpath(unquote(urlsplit(path).path))
        target = (self.root / path.lstrip("/")).resolve()
        return str(target if target.is_relative_to(self.root) else self.root / "__outside__")

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        for name, value in ISOLATION_HEADERS.items():
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, format, *args):  # quiet: errors only
        if args and str(args[1]).startswith(("4", "5")):
            super().log_message(format, *args)


def read_build(directory: Path) -> dict:
    """The manifest of a build folder; a ServeError or LoaderError naming it where there is none to read."""
    from posezoo.loader import read_manifest

    path = Path(directory) / "manifest.json"
    if not path.is_file():
        raise ServeError(f"{directory} has no manifest.json: pass the --out folder of a posezoo build")
    return read_manifest(path)


def make_server(directory: Path, port: int = 8000, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Serve `directory` (a build folder whose site is written) on host:port; port 0: any free port."""
    directory = Path(directory).resolve()
    read_build(directory)
    if not (directory / "site" / "try.html").is_file():
        raise ServeError(f"{directory} has no site: run `posezoo site {directory}` first")
    if not 0 <= port <= 65535:
        raise ServeError(f"port {port} is not a TCP port: pass --port from 1024 to 65535, or 0 for any free port")
    try:
        return ThreadingHTTPServer((host, port), partial(Handler, root=directory))
    except OSError as e:
        raise ServeError(f"cannot serve on {host}:{port} ({e.strerror}): pass --port with a free port, "
                         "or 0 for any free port") from None
