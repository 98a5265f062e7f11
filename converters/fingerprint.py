"""What a variant's build depends on, as one sha256: a rebuild with the same fingerprint and its
artifacts intact on disk has nothing to do.

Inputs: the recipe entry, the original's and the publisher's files (by sha256), the build options
that change artifacts (formats, precisions, sample limit), the calibration photos and annotation
files (by content), the toolchain's versions and posezoo's own code (converters/, zoo/, the
family's recipe folder)."""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

from .calibration import IMAGE_SUFFIXES

REPO = Path(__file__).resolve().parents[1]


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


def images_digest(folder: Path) -> str:
    folder = Path(folder)
    return _digest_files((p for p in folder.rglob("*") if p.is_file()
                          and (p.suffix.lower() in IMAGE_SUFFIXES or p.suffix == ".json")), folder)


def fingerprint(variant, original_sha256: str | None, vendor_sha256: list[str], opts, tools: dict,
                images: str) -> str:
    """`images`: images_digest of the calibration folder (computed once per build command)."""
    payload = {"recipe": variant.recipe, "original": original_sha256, "vendor": sorted(vendor_sha256),
               "formats": list(opts.formats), "precisions": list(opts.precisions),
               "max_samples": opts.max_samples, "images": images, "tools": tools,
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
    return True
