"""What to time: every artifact of a manifest, then the publisher's own files of the same models
(published as is, the .tflite original from the cache or a mirror, `--vendor-file`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from posezoo.converters.sources import default_cache_dir, sha256_of
from posezoo.errors import PosezooError
from posezoo.runtime import RUNTIMES


class BenchError(PosezooError):
    """Bad input: a missing manifest, artifact or vendor file, an unknown model id."""


@dataclass
class Target:
    """One file to time."""
    model: str
    path: Path
    format: str  # onnx | tflite
    precision: str | None  # fp32 | fp16 | int8; None: read from the file (publisher files)
    origin: str  # converted (ours) | vendor (the publisher's)
    vendor_source: str | None = None  # manifest (origin: vendor) | original (source.file) | vendor-file
    inputs: list[dict] | None = None  # [{name, shape, dtype}] from the manifest's io; None: the file's own
    shape_hint: list[int] | None = None  # the model's input shape in this file's layout (dynamic inputs)
    bytes: int = 0
    sha256: str | None = None
    pck02: float | None = None  # parity PCK@0.02 against the original (1.0 for the original itself)
    quantization: dict | None = None

    @property
    def ours(self) -> bool:
        return self.origin == "converted"

    @property
    def name(self) -> str:
        return self.path.name


def find_original(source: dict, cache_dir: Path | None = None, mirror_dir: Path | None = None,
                  notes: list[str] | None = None) -> Path | None:
    """The model's original file, sha256-verified: the cache entry, else a file of that name in the mirror."""
    notes = notes if notes is not None else []
    name, sha = source["file"], source.get("sha256")
    candidates = []
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    if sha:
        candidates.append(cache_dir / "sha256" / sha[:2] / sha / name)
    if mirror_dir and Path(mirror_dir).is_dir():
        candidates.extend(sorted(p for p in Path(mirror_dir).rglob(name) if p.is_file()))
    for p in candidates:
        if not p.is_file():
            continue
        if sha and sha256_of(p) != sha:
            notes.append(f"{p}: sha256 is not the original's {sha}; not used")
            continue
        return p
    return None


def _model_shape_for(model: dict, layout: str | None) -> list[int] | None:
    """The model's input shape in `layout` (a file's own input layout; TFLite files are NHWC)."""
    spec = model.get("input") or {}
    shape = spec.get("shape")
    if not shape or not all(isinstance(d, int) for d in shape):
        return None
    if len(shape) == 4 and layout and spec.get("layout") and layout != spec["layout"]:
        return [shape[0], shape[2], shape[3], shape[1]] if layout == "NHWC" else [shape[0], shape[3], shape[1], shape[2]]
    return list(shape)


def collect_targets(manifest: dict, manifest_dir: Path, ids=None, cache_dir: Path | None = None,
                    mirror_dir: Path | None = None, vendor_files: dict[str, list[Path]] | None = None,
                    notes: list[str] | None = None) -> list[Target]:
    """Every artifact of the selected models, then the publisher's own files of each model.

    `vendor_files`: model id -> extra publisher files (`--vendor-file`). A publisher file with the
    sha256 of one already listed (e.g. MoveNet's original, published as is) is listed once."""
    notes = notes if notes is not None else []
    vendor_files = vendor_files or {}
    models = manifest.get("models", [])
    known = [m["id"] for m in models]
    unknown = sorted(set(ids or []) - set(known)) + sorted(set(vendor_files) - set(known))
    if unknown:
        raise BenchError(f"model id(s) not in the manifest: {', '.join(dict.fromkeys(unknown))} "
                         f"(it has: {', '.join(known) or 'none'})")
    targets: list[Target] = []
    for model in models:
        if ids and model["id"] not in ids:
            continue
        mine: list[Target] = []
        for art in model.get("artifacts", []):
            path = Path(manifest_dir) / art["path"]
            if not path.is_file():
                raise BenchError(f"{model['id']}: artifact {art['path']} is missing ({path}); rebuild it with "
                                 f"`posezoo build {model['id']} --out {manifest_dir}`")
            size = path.stat().st_size
            if art.get("bytes") and art["bytes"] != size:
                notes.append(f"{path}: {size} bytes, the manifest says {art['bytes']}")
            vendor = art.get("origin") == "vendor"
            inputs = [{"name": t["name"], "shape": list(t["shape"]), "dtype": t["dtype"]}
                      for t in (art.get("io") or {}).get("inputs", [])] or None
            mine.append(Target(model["id"], path, art["format"], art["precision"],
                               "vendor" if vendor else "converted", "manifest" if vendor else None, inputs,
                               _model_shape_for(model, art.get("input_layout")), size, art.get("sha256"),
                               (art.get("parity") or {}).get("pck@0.02"), art.get("quantization")))
        seen = {t.sha256 for t in mine if t.sha256}
        extra: list[tuple[Path, str]] = []
        source = model.get("source") or {}
        if str(source.get("file", "")).endswith(".tflite") and source.get("sha256") not in seen:
            original = find_original(source, cache_dir, mirror_dir, notes)
            if original is None:
                notes.append(f"{model['id']}: the original {source['file']} is in neither the cache nor the "
                             f"mirror; pass --mirror DIR to time it")
            else:
                extra.append((original, "original"))
        for p in vendor_files.get(model["id"], []):
            extra.append((Path(p), "vendor-file"))
        for path, how in extra:
            if not path.is_file():
                raise BenchError(f"{model['id']}: vendor file {path} does not exist")
            fmt = next((f for f, (suffix, _) in RUNTIMES.items() if suffix == path.suffix), None)
            if fmt is None:
                raise BenchError(f"{path}: a vendor file must be one of {', '.join(s for s, _ in RUNTIMES.values())}")
            sha = sha256_of(path)
            if sha in seen:
                continue
            seen.add(sha)
            if sha == source.get("sha256"):
                how = "original"
            pck = 1.0 if how == "original" else None  # the original is parity's reference: no error
            hint = _model_shape_for(model, "NHWC" if fmt == "tflite" else None)
            mine.append(Target(model["id"], path, fmt, None, "vendor", how, None, hint, path.stat().st_size, sha,
                               pck, None))
        targets.extend(mine)
    return targets

