"""`posezoo verify`: re-check a built manifest, every artifact's hash and size, then its parity
against the original (found by its recorded sha256 and run through its family's recipe; the
publisher's INT8 file and our conversion of it against that file), then its golden vectors
through the runtime loader (zoo/golden.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from posezoo.converters.originals import TFLiteOriginal, open_original
from posezoo.converters.parity import ParityBench
from posezoo.converters.pipeline import PUBLISHER_REFERENCE, Int8Benches
from posezoo.converters.sources import FileSpec, Resolver, sha256_of


def original_spec(model: dict) -> FileSpec:
    """The original file a manifest entry records (`source`), with the files read beside it."""
    src = model["source"]
    companions = tuple(FileSpec(c["file"], c["sha256"], c["bytes"]) for c in src.get("companions", []))
    return FileSpec(src["file"], src["sha256"], src["bytes"], companions=companions)


def open_reference(model: dict, resolver: Resolver):
    """The original of a manifest entry, found by the sha256 its `source` records, running in its
    own framework; and whether it is the publisher's own INT8 TFLite (`from_vendor`), which is its
    own reference on its default kernels."""
    from posezoo.recipes import select

    src = model["source"]
    original = resolver.resolve(original_spec(model), f"{model['id']} (original {src['file']})")
    variant = next(iter(select([model["id"]]))).for_original(src["sha256"])
    from_vendor = src["file"] in {spec.name for spec in variant.vendor_files.values()}
    if from_vendor:
        return TFLiteOriginal(original.path, reference_kernels=False), True
    return open_original(variant, original.path), False


def gated_against_publisher(artifact: dict) -> bool:
    """The publisher's own INT8 TFLite and our ONNX conversion of it: both were gated against
    that file on its default kernels (pipeline._publish_vendor_int8), not against the original."""
    return artifact["origin"] == "vendor" or artifact["parity"].get("reference", "").startswith(PUBLISHER_REFERENCE)


def publisher_reference(model: dict, resolver: Resolver) -> TFLiteOriginal:
    """The publisher's INT8 TFLite of a model whose float files are converted from an original
    (MoveNet Lightning: Google's INT8 file beside our files from the tfjs bundle), found by the
    sha256 its recipe pins."""
    from posezoo.recipes import select

    spec = next(iter(select([model["id"]]))).vendor_files["tflite", "int8"]
    file = resolver.resolve(spec, f"{model['id']} (the publisher's tflite int8 file {spec.name})")
    return TFLiteOriginal(file.path, reference_kernels=False)


def check_golden(model: dict, artifact: dict, root: Path) -> dict | None:
    """The artifact's golden vectors (zoo/golden.py) re-run through the runtime loader's Predictor
    (the artifact's hash is checked before); None where the manifest lists none. A missing or
    altered golden file is a failure, not an error."""
    from posezoo import golden
    from posezoo.loader import Predictor
    from posezoo.runtime import open_runtime

    if "golden" not in artifact:
        return None
    try:
        return golden.check_artifact(Predictor(model, artifact, open_runtime(root / artifact["path"])), root,
                                     artifact)
    except golden.GoldenError as e:
        return {"cases": 0, "keypoints_within": 0.0, "failures": [str(e)], "passed": False}


def verify_manifest(manifest_path: Path, images: Path | None, resolver: Resolver,
                    log: Callable[[str], None] = print) -> dict:
    from posezoo.converters.fingerprint import images_digest, photos_for
    from posezoo.converters.publish import JOURNAL, recover
    from posezoo.manifest import read_manifest

    root = Path(manifest_path).parent
    if (root / JOURNAL).exists() and recover(root):
        log(f"completed an interrupted publication in {root} (a build was killed while publishing)")
    manifest = read_manifest(manifest_path)
    images = photos_for(manifest, images, "--calibration-images")
    digest = images_digest(images)
    failures: list[str] = []
    checked = []
    for model in manifest["models"]:
        recorded = model["build"].get("calibration_images")
        if isinstance(recorded, dict) and recorded["sha256"] != digest:
            log(f"{model['id']}: {images} are not the photos it was built on ({recorded['name']!r}); "
                "its parity gates are re-run on these")
        reference, from_vendor = open_reference(model, resolver)
        limit = model["build"]["max_samples"] if "max_samples" in model["build"] else model["build"].get("samples")
        bench = ParityBench.prepare(reference, model, images, limit)
        noise = {} if from_vendor else bench.kernel_noise(reference)
        int8 = publisher = None
        if any(a["parity"].get("people") == "gate" for a in model["artifacts"]):
            int8 = Int8Benches.split(bench, reference, lambda _: None, model["id"])
        if from_vendor:
            publisher = bench
        elif any(gated_against_publisher(a) for a in model["artifacts"]):
            publisher = ParityBench.prepare(publisher_reference(model, resolver), model, images, limit)
        for art in model["artifacts"]:
            name = f"{model['id']} {art['format']}/{art['precision']}"
            path = root / art["path"]
            if not path.is_file():
                failures.append(f"{name}: {path} is missing")
                continue
            got = sha256_of(path)
            if got != art["sha256"] or path.stat().st_size != art["bytes"]:
                failures.append(f"{name}: {path} changed (sha256 {got}, manifest says {art['sha256']})")
                continue
            if gated_against_publisher(art):
                report = publisher.check(path, art["parity"]["thresholds"], reference_kernels=False)
            elif art["parity"].get("people") == "gate":  # an INT8 file: judged on the people it was not calibrated on
                report, _ = int8.judge(path, art["parity"]["thresholds"], noise)
            else:
                report = bench.check(path, art["parity"]["thresholds"], noise_floor=noise)
            log(f"{name}: hash ok, parity {'PASS' if report.passed else 'FAIL'} "
                f"(rel_err {report.summary()['rel_err']:.3g}, pck@0.05 {report.pck['0.05']:.3f})")
            golden = check_golden(model, art, root)
            log(f"{name}: " + (f"golden vectors {'PASS' if golden['passed'] else 'FAIL'} ({golden['cases']} people, "
                               f"keypoints within tolerance {golden['keypoints_within']:.3f})" if golden
                               else "no golden vectors (built by a posezoo without them: rebuild to add them)"))
            checked.append({"artifact": art["path"], **report.summary(), "passed": report.passed,
                            **({"golden": golden} if golden else {})})
            failures.extend(f"{name}: {f}" for f in report.failures)
            failures.extend(f"{name}: golden vectors: {f}" for f in (golden or {}).get("failures", []))
    return {"manifest": str(manifest_path), "checked": checked, "failures": failures}
