"""What a variant's build depends on, as one sha256: a rebuild with the same fingerprint and its
artifacts intact on disk has nothing to do.

Inputs: the recipe entry, the original's and the publisher's files (by sha256), the build options
that change artifacts (formats, precisions, sample limit), the calibration photos and annotation
files (by content), the toolchain's versions and posezoo's own code (converters/, zoo/, the
family's recipe folder)."""
from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path

from .calibration import IMAGE_SUFFIXES

REPO = Path(__file__).resolve().parents[1]
TOOLS = ("tf2onnx", "onnx2tf", "onnx", "onnxsim", "onnxruntime", "onnxconverter-common", "tensorflow-cpu",
         "ai-edge-litert", "ai-edge-quantizer", "aimet-onnx")


def tool_versions() -> dict[str, str]:
    """The converters' and runtimes' versions a build depends on (also what every Ray node must match)."""
    return {t: version(t) for t in TOOLS}


def _digest_files(paths, root: Path) -> str:
    """Names (relative to `root`) and contents of `paths`."""
    h = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


@lru_cache(maxsize=None)  # once per family and command, not once per variant
def code_digest(family: str) -> str:
    """posezoo's code that shapes artifacts: the engine, the manifest side and the family's recipe."""
    roots = [REPO / "converters", REPO / "zoo", REPO / "recipes" / family]
    files = [p for root in roots for p in root.rglob("*") if p.suffix in {".py", ".yaml", ".json"}
             and "node_modules" not in p.parts and "__pycache__" not in p.parts]
    files += [REPO / "recipes" / "__init__.py", REPO / "recipes" / "recipe.schema.json"]
    return _digest_files(files, REPO)


@lru_cache(maxsize=None)
def package_digest() -> str:
    """All of posezoo's code (every family, the CLI): what a Ray worker must run to build for this driver."""
    files = [p for root in ("converters", "zoo", "recipes", "scripts") for p in (REPO / root).rglob("*")
             if p.suffix in {".py", ".yaml", ".json", ".js", ".html"} and "node_modules" not in p.parts
             and "__pycache__" not in p.parts]
    return _digest_files(files, REPO)


def images_digest(folder: Path) -> str:
    folder = Path(folder)
    return _digest_files((p for p in folder.rglob("*") if p.is_file()
                          and (p.suffix.lower() in IMAGE_SUFFIXES or p.suffix == ".json")), folder)


def photos_for(manifest: dict, given: Path | None, flag: str) -> Path:
    """The photos to re-run a built manifest's models on (verify, serve, bench --web): `given`, or
    $POSEZOO_CALIBRATION_IMAGES. The manifest names the build's photos by folder name and content
    only (`build.calibration_images`), never by a path of the machine that built it."""
    from .calibration import CalibrationError

    given = given or os.environ.get("POSEZOO_CALIBRATION_IMAGES")
    if given:
        return Path(given)
    recorded = [m["build"]["calibration_images"] for m in manifest["models"] if "calibration_images" in m.get("build", {})]
    used = ""
    if recorded and isinstance(recorded[0], str):  # a build before the photos were recorded by name and digest
        used = f"; the build used {recorded[0]}"
    elif recorded:
        used = f"; the build used the folder {recorded[0]['name']!r} (photos sha256 {recorded[0]['sha256'][:12]}...)"
    raise CalibrationError(f"pass {flag} DIR (or set POSEZOO_CALIBRATION_IMAGES): real photos of people{used}")


def fingerprint(variant, original_sha256: str | None, vendor_sha256: list[str], opts, tools: dict,
                images: str) -> str:
    """`images`: images_digest of the calibration folder (computed once per build command)."""
    payload = {"recipe": variant.recipe, "original": original_sha256, "vendor": sorted(vendor_sha256),
               "formats": list(opts.formats), "precisions": list(opts.precisions),
               "max_samples": opts.max_samples, "int8_fallback": opts.int8_fallback, "images": images, "tools": tools,
               "code": code_digest(variant.family)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def up_to_date(model: dict | None, fp: str, out: Path) -> bool:
    """The manifest entry `model` was built with fingerprint `fp` and all its artifacts are intact."""
    from .sources import sha256_of

    if not model or model.get("build", {}).get("fingerprint") != fp:
        return False
    for art in model["artifacts"]:
        path = Path(out) / art["path"]
        if not path.is_file() or path.stat().st_size != art["bytes"] or sha256_of(path) != art["sha256"]:
            return False
        golden = art.get("golden")
        if golden is None or not intact(Path(out) / golden["path"], golden["sha256"]):
            return False
        if not all(intact(Path(out) / f, Path(f).name.split(".")[0]) for f in golden["files"]):
            return False
    return True


def intact(path: Path, sha256: str) -> bool:
    from .sources import sha256_of

    return path.is_file() and sha256_of(path) == sha256
