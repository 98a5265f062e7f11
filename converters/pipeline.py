"""The build: verified original -> every registered format at FP32/FP16/INT8 -> parity gate ->
manifest entry -> published (converters/publish.py).

Written once for every family; a recipe says what the original is, how its input is cut and
normalized, and how keypoints are decoded; each format's steps are its entry in
converters/formats.py. `build` is the whole job for a list of models; `build_variant` one model
into its staging folder. Artifacts that fail their parity gate are listed under `rejected` with
their numbers; they are never published.
"""
from __future__ import annotations

import tempfile
import time
from contextlib import ExitStack, closing
from dataclasses import dataclass, field, replace
from importlib.metadata import version
from pathlib import Path
from typing import Callable

import numpy as np

from . import calibration, formats, int8_targets, parity, tfjs_graph
from .complexity import complexity
from .fingerprint import tool_versions
from .formats import Conversion
from .golden import golden_cases, write_golden
from .metadata import essentials
from .mixed_precision import MIN_INT8_WEIGHT_SHARE
from .originals import TFLiteOriginal, open_original
from .parity import ParityBench
from .runtimes import open_runner, runtime_versions
from .simplify import simplify
from .sources import NotAvailable, ResolvedFile, Resolver, SourceError, user_checkpoint, user_checkpoint_companion

FORMATS = tuple(formats.FORMATS)  # the default: every registered format
REFERENCE_RUNTIME = {"tflite": "original in TFLite reference kernels", "keras": "original in tf_keras (TensorFlow)",
                     "torch": "original in PyTorch", "saved_model": "original SavedModel in TensorFlow",
                     "tfjs_graph": "original tfjs graph model in TensorFlow"}
# The reference of the publisher's INT8 TFLite and of our ONNX converted from it (verify reads it).
PUBLISHER_REFERENCE = "the publisher's INT8 TFLite on LiteRT's default kernels"
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class BuildOptions:
    out: Path
    calibration_images: Path
    formats: tuple[str, ...] = FORMATS
    precisions: tuple[str, ...] = PRECISIONS
    checkpoint: Path | None = None
    max_samples: int | None = None
    log: Callable[[str], None] = print
    progress: bool = True
    calibration_set: dict | None = None  # {name, sha256} of the photos, as the manifest records them (build() sets it)
    jobs: int = 1  # models built in parallel processes
    force: bool = False  # rebuild models whose artifacts are up to date
    keep_going: bool = False  # a model whose files cannot be had is listed, not an error
    int8_fallback: str | None = None  # precision of the tensors an INT8 plan raises (default: the recipe's)
    ray: str | None = None  # build on Ray: cluster.LOCAL (a local instance) or a cluster's address (converters/cluster.py)
    ray_cpus: float = 1.0  # CPUs Ray reserves per model's task
    cache_dir: Path | None = None  # content-addressed cache: also keeps learned weight rounding (learned_rounding.py)


@dataclass
class VariantResult:
    model: dict
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class BuildSummary:
    """What `build` did: the models it built (their manifest entries), those it found up to date,
    and every artifact not published, with the reason."""
    manifest: Path
    seconds: float
    built: list[dict]
    up_to_date: list[dict]
    failures: list[str]

    def to_dict(self) -> dict:
        return {"manifest": str(self.manifest), "seconds": self.seconds, "built": [m["id"] for m in self.built],
                "up_to_date": [m["id"] for m in self.up_to_date],
                "artifacts": sum(len(m["artifacts"]) for m in self.built), "failures": self.failures,
                "steps": {m["id"]: m["build"].get("steps", {}) for m in self.built}}


def build(variants: list, opts: BuildOptions, resolver: Resolver) -> BuildSummary:
    """Build `variants` (recipe Variants) into `opts.out`: resolve and verify their files, skip
    those whose fingerprint and artifacts are unchanged (unless `opts.force`), build the rest in
    `opts.jobs` processes, each into a staging folder, and publish each model as it finishes
    (posezoo.converters.publish: gated files onto published names, then the manifest)."""
    from .fingerprint import fingerprint, images_digest, up_to_date
    from .publish import Staging, check_writable, publish, recover
    from posezoo.manifest import read_manifest

    out, log = Path(opts.out), opts.log
    check_writable(out)
    if recover(out):
        log(f"completed an interrupted publication in {out}")
    manifest_path = out / "manifest.json"
    existing = {m["id"]: m for m in read_manifest(manifest_path)["models"]} if manifest_path.exists() else {}
    start = time.time()
    failures: list[str] = []
    tools, images = tool_versions(), images_digest(opts.calibration_images)
    # The manifest names the photos by folder name and content, not by this machine's path.
    opts = replace(opts, calibration_set={"name": Path(opts.calibration_images).resolve().name, "sha256": images})
    todo, fingerprints, unchanged = [], [], []
    for v in variants:
        fetch_start = time.time()
        try:
            original, vendor = resolve_inputs(v, resolver, opts.checkpoint, opts.precisions)
        except SourceError as e:
            if not opts.keep_going:
                raise
            failures.append(f"{v.id}: not built, its files cannot be had: {e}")  # e.g. a family's --checkpoint-only ids
            continue
        if original is not None:
            v = v.for_original(original.sha256)  # an alternative original (a pinned TFLite) converts as its own format
            log(f"[{v.id}] original: {original.describe()}")
        fp = fingerprint(v, original.digest if original else None, [f.sha256 for f in vendor.values()], opts,
                         tools, images)
        if not opts.force and up_to_date(existing.get(v.id), fp, out):
            log(f"[{v.id}] up to date: same recipe, originals, photos, options, tools and code as its "
                f"artifacts in {out} (--force rebuilds)")
            unchanged.append(existing[v.id])
            continue
        todo.append((v, original, vendor))
        fingerprints.append((fp, round(time.time() - fetch_start, 2)))
    built = []
    with ExitStack() as stack:  # staging folders: removed however the build ends
        stagings = [stack.enter_context(Staging(out, v.id)) for v, _, _ in todo]
        # Published as each model finishes: a crash keeps the models already done.
        for k, result in _run_jobs(todo, [s.path for s in stagings], opts):
            fp, fetch_seconds = fingerprints[k]
            result.model["build"]["fingerprint"] = fp
            result.model["build"].setdefault("steps", {})["fetch"] = fetch_seconds
            publish(out, stagings[k], result.model, version("posezoo"))
            stagings[k].close()
            built.append(result.model)
            failures.extend(result.failures)
    failures += [f"{m['id']} {r['format']}/{r['precision']}: {r['reason']} (unchanged since the last build)"
                 for m in unchanged for r in m.get("rejected", [])]
    return BuildSummary(manifest_path, round(time.time() - start, 1), built, unchanged, failures)


def _run_jobs(inputs, stagings: list[Path], opts: BuildOptions):
    """Build each (variant, original, vendor files) into its staging folder, in `opts.jobs`
    processes, or on Ray (`opts.ray`); yields (index, result) as each finishes."""
    if opts.ray and inputs:
        from .cluster import connected, run_build_jobs

        with connected(opts.ray, opts.log) as ray:
            yield from run_build_jobs(ray, build_variant, inputs, stagings, opts, opts.ray_cpus)
        return
    if opts.jobs <= 1 or len(inputs) <= 1:
        for k, (v, original, vendor) in enumerate(inputs):
            yield k, build_variant(v, original, opts, stagings[k], vendor)
        return
    from concurrent.futures import ProcessPoolExecutor, as_completed

    opts = replace(opts, log=print)  # a worker's log goes to its stdout
    with ProcessPoolExecutor(max_workers=opts.jobs) as pool:
        futures = {pool.submit(build_variant, v, original, opts, stagings[k], vendor): k
                   for k, (v, original, vendor) in enumerate(inputs)}
        for future in as_completed(futures):
            yield futures[future], future.result()


def _lap(steps: dict[str, float], name: str, since: float) -> float:
    """Add the time since `since` to `steps[name]` (the build summary's seconds per step); returns now."""
    now = time.time()
    steps[name] = round(steps.get(name, 0.0) + now - since, 2)
    return now


def resolve_original(variant, resolver: Resolver, checkpoint: Path | None) -> ResolvedFile:
    """The recipe's original, verified; or the user's `checkpoint`, recognized where it is one of
    the files the recipe pins (`verified_as`). The publisher's own files are published, not
    converted: handed over as a checkpoint, they are refused with what to do instead."""
    what = f"{variant.id} (original {variant.file.name})"
    if not checkpoint:
        return _resolve_published(variant, resolver, what)
    original = user_checkpoint(checkpoint, what, variant.pinned_files)
    if original.verified_as is not None and original.verified_as.companions:  # a tfjs model.json: its weight files
        original = replace(original, companions=tuple(
            user_checkpoint_companion(original, spec, what) for spec in original.verified_as.companions))
    for (fmt, precision), spec in variant.vendor_files.items():
        if original.verified_as == spec:
            originals = ", ".join([variant.file.name, *(s.name for _, s in variant.alternative_originals)])
            raise SourceError(
                f"{what}: --checkpoint {checkpoint} is {spec.name}, the publisher's own {fmt} {precision} file, "
                f"which a build publishes unchanged rather than converts. Put it in a folder and pass --mirror DIR "
                f"--precisions {precision} instead; --checkpoint takes a file to convert ({originals}).")
    return original


def _resolve_published(variant, resolver: Resolver, what: str) -> ResolvedFile:
    """The recipe's original, else the first of its alternative originals that can be had (those
    in the cache or the mirror before any download): MoveNet from Google's float16 TFLite, then
    from the tfjs bundle on npm, where Google's SavedModel is not handed over."""
    alternatives = [spec for _, spec in variant.alternative_originals]
    if not alternatives:
        return resolver.resolve(variant.file, what)
    try:
        return resolver.resolve_first([variant.file, *alternatives], what)
    except NotAvailable as e:
        names = ", ".join(spec.name for spec in alternatives)
        raise NotAvailable(f"{e}\n  Nor could any of the files this model can also be built from ({names}) be "
                           "had; put one in the mirror folder, or hand one over with --checkpoint.") from None


def _source_entry(spec, original: ResolvedFile) -> dict:
    entry = {"file": spec.name, "sha256": original.sha256, "bytes": original.bytes,
             "origin": original.origin, "urls": [s.describe() for s in spec.sources]}
    if original.origin == "user":
        entry.update(user_supplied=True, file=Path(original.path).name)
        if original.verified_as is not None:
            entry["verified_as"] = original.verified_as.provenance()
    if original.companions:
        entry["companions"] = [{"file": Path(c.path).name, "sha256": c.sha256, "bytes": c.bytes}
                               for c in original.companions]
    return entry


def resolve_inputs(variant, resolver: Resolver, checkpoint: Path | None,
                   precisions: tuple[str, ...]) -> tuple[ResolvedFile | None, dict]:
    """The files a build of `precisions` needs: the publisher's own files for the precisions they
    cover, and the original for the rest (also for a precision whose publisher's file cannot be
    had: MoveNet Thunder's INT8 TFLite, which only TF Hub serves). With a checkpoint we convert
    every precision ourselves, and the publisher's files that can be had are measured beside ours
    (build_variant)."""
    vendor, missing = {}, []
    for key, spec in variant.vendor_files.items():
        if key[1] in precisions:
            what = f"{variant.id} (the publisher's {key[0]} {key[1]} file {spec.name})"
            try:
                vendor[key] = resolver.resolve(spec, what)
            except NotAvailable as e:
                missing.append(e)
    own = [p for p in precisions if checkpoint or p not in {precision for _, precision in vendor}]
    try:
        return (resolve_original(variant, resolver, checkpoint) if own else None), vendor
    except NotAvailable:
        if missing and not checkpoint:
            raise missing[0] from None  # neither the publisher's file nor an original: the first one asked for
        raise


def build_variant(variant, original: ResolvedFile | None, opts: BuildOptions, into: Path,
                  vendor: dict | None = None) -> VariantResult:
    """Build one variant into `into/<id>/` (a staging folder: posezoo.converters.publish moves the gated
    artifacts onto their published names), returning its manifest entry, whose artifact paths are
    relative to `into`: our conversions of the original, and the publisher's own files (`vendor`)
    for the precisions they cover. When the user hands over the original (`opts.checkpoint`),
    every precision is ours and the publisher's files are measured against the same original,
    side by side (log and `build.publisher_files`). Every published artifact gets its golden
    vectors (converters/golden.py). Nothing is written outside `into`."""
    result = _build_artifacts(variant, original, opts, Path(into), vendor or {})
    model = result.model
    if model["artifacts"]:
        start = time.time()
        cases = golden_cases(model, opts.calibration_images, opts.max_samples)
        size = write_golden(model, into, cases)
        opts.log(f"[{variant.id}] golden vectors: {len(cases)} people x {len(model['artifacts'])} artifacts, "
                 f"{size / 1e3:.0f} kB")
        _lap(model["build"].setdefault("steps", {}), "golden", start)
        result.seconds += time.time() - start
        model["build"]["seconds"] = round(result.seconds, 1)
    return result


def _build_artifacts(variant, original: ResolvedFile | None, opts: BuildOptions, into: Path,
                     vendor: dict) -> VariantResult:
    out_dir = into / variant.id
    out_dir.mkdir(parents=True, exist_ok=True)
    if opts.checkpoint:
        return _build_converted(variant, original, opts, out_dir, compare_with=vendor)
    own = tuple(p for p in opts.precisions if p not in {precision for _, precision in vendor})
    if original is not None and own:
        result = _build_converted(variant, original, replace(opts, precisions=own), out_dir)
    else:
        key, file = next(iter(vendor.items()))
        result = VariantResult(_model_entry(variant, file, variant.vendor_files[key]))
    for (fmt, precision), file in vendor.items():
        start = time.time()
        result.failures += _publish_vendor_int8(variant, file, opts, result.model, out_dir)
        result.seconds += time.time() - start
        steps = result.model["build"].setdefault("steps", {})
        _lap(steps, "vendor", start)  # publish, convert to ONNX and gate the publisher's file
        result.model["build"]["seconds"] = round(result.seconds, 1)
    return result


def _publish_vendor_int8(variant, file: ResolvedFile, opts: BuildOptions, model: dict, out_dir: Path) -> list[str]:
    """The publisher's full-integer TFLite, unchanged (origin: vendor), and our ONNX INT8 of it,
    gated against it on its default kernels, whose integer rounding the conversion reproduces."""
    from .fileio import atomic_copy
    from .tflite_int8_to_onnx import quantized_tflite_to_onnx

    log, recipe = opts.log, variant.recipe
    bench = ParityBench.prepare(TFLiteOriginal(file.path, reference_kernels=False), recipe, opts.calibration_images,
                                opts.max_samples, opts.progress)
    reference = PUBLISHER_REFERENCE
    vendor_path = atomic_copy(file.path, out_dir / f"{variant.id}_int8_vendor.tflite")
    report = bench.check(vendor_path, variant.thresholds["int8"], reference_kernels=False)
    model["artifacts"].append(_artifact_entry(
        out_dir, vendor_path, "tflite", "int8", _parity_entry(report, opts, reference + " (this file itself)"),
        {"published_at": [s.describe() for s in variant.vendor_files["tflite", "int8"].sources]}, recipe["input"],
        origin="vendor"))
    log(f"[{variant.id}] tflite/int8 (vendor, unchanged): {file.path.name} sha256 {file.sha256[:12]}")

    onnx_path = out_dir / f"{variant.id}_int8.onnx"
    log(f"[{variant.id}] ONNX INT8 from the vendor's INT8 TFLite (integer semantics reproduced)")
    semantics = quantized_tflite_to_onnx(file.path, onnx_path)
    if not model.get("complexity"):
        model["complexity"] = complexity(onnx_path)
    formats.get("onnx").embed(onnx_path, essentials(model, "int8"))
    report = bench.check(onnx_path, variant.thresholds["int8"], reference_kernels=False)
    log(f"[{variant.id}] onnx/int8 (from vendor): {_verdict(report)}")
    parity_entry = _parity_entry(report, opts, reference)
    extra = {"quantization": {"source": f"the publisher's INT8 TFLite {file.path.name} (sha256 {file.sha256})",
                              "integer_semantics": semantics}}
    model.setdefault("build", {"seconds": 0.0, "samples": len(bench.samples),
                               "calibration_images": opts.calibration_set})
    if report.passed:
        model["artifacts"].append(_artifact_entry(out_dir, onnx_path, "onnx", "int8", parity_entry, extra,
                                                  recipe["input"]))
        return []
    onnx_path.unlink()
    model["rejected"].append({"format": "onnx", "precision": "int8", "reason": "parity gate failed",
                              "parity": parity_entry, **extra})
    return [f"{variant.id} onnx/int8 (from the vendor's TFLite): " + "; ".join(report.failures)]


def _build_converted(variant, original: ResolvedFile, opts: BuildOptions, out_dir: Path,
                     compare_with: dict | None = None) -> VariantResult:
    """Convert the original into ONNX/TFLite FP32/FP16/INT8 in `out_dir`; `compare_with`:
    the publisher's own files of those precisions, gated against the same original for the record
    (not published)."""
    start = time.time()
    steps: dict[str, float] = {}
    log = opts.log
    recipe = variant.recipe
    spec = recipe["input"]
    model = _model_entry(variant, original)
    with tempfile.TemporaryDirectory(prefix=f"posezoo-{variant.id}-") as work, \
            closing(open_original(variant, original.path)) as reference:
        bench = ParityBench.prepare(reference, recipe, opts.calibration_images, opts.max_samples, opts.progress)
        noise = bench.kernel_noise(reference)
        samples = bench.samples
        log(f"[{variant.id}] {len(samples)} real person crops from {opts.calibration_images} "
            f"({calibration.parity_crop(recipe)['kind']})")
        int8 = Int8Benches.split(bench, reference, log, variant.id) if "int8" in opts.precisions else None
        lap = _lap(steps, "reference", start)
        work = Path(work)
        candidates: dict[tuple[str, str], Path] = {}
        extra: dict[tuple[str, str], dict] = {}
        raw_onnx = work / "raw.onnx"
        reference.to_onnx(raw_onnx)
        reference.close()  # the original's part is done: stop its sandboxed process now
        fp32_onnx = work / f"{variant.id}_fp32.onnx"
        simplify(raw_onnx, fp32_onnx)
        model["complexity"] = complexity(fp32_onnx)
        calibrating = int8.calibration_samples if int8 else samples  # INT8 calibrates on its calibration people only
        people = len(int8.search.samples) if int8 else len(samples)
        conversion = Conversion(variant.id, fp32_onnx, work, out_dir, opts.precisions, spec,
                                [s.rgb for s in calibrating], [{spec["name"]: s.tensor} for s in calibrating], people,
                                int8_options(variant, opts), recipe["decoder"]["output"], log, opts.cache_dir)
        for fmt in opts.formats:
            for precision, path in formats.get(fmt).convert(conversion).items():
                candidates[fmt, precision] = path
        lap = _lap(steps, "convert", lap)
        if "int8" in opts.precisions:
            def evaluate(path: Path) -> float:  # the search's trials see the calibration people only
                try:
                    return int8.search_score(path, variant.thresholds["int8"])
                except RuntimeError as e:  # e.g. XNNPACK refuses an op of this mix: this trial fails
                    log(f"[{variant.id}] {Path(path).name}: the runtime cannot run this trial: {_first_line(e)}")
                    return 0.0

            publisher = _publisher_tflite(variant, original, compare_with)
            for fmt in opts.formats:
                _record_int8(candidates, extra, fmt, formats.get(fmt).quantize(conversion, evaluate), log, variant.id,
                             calibrating[0].tensor, publisher)

        lap = _lap(steps, "quantize", lap)
        failures = []
        order = list(formats.FORMATS)
        for (fmt, precision), path in sorted(candidates.items(), key=lambda kv: (order.index(kv[0][0]),
                                                                                 PRECISIONS.index(kv[0][1]))):
            formats.get(fmt).embed(path, essentials(model, precision))
            info = dict(extra.get((fmt, precision), {}))
            missed = info.pop("reason", None)  # an INT8 target (share, size, latency) missed: judged all the same
            try:
                if precision == "int8":
                    report, judged = int8.judge(path, variant.thresholds["int8"], noise)
                else:
                    report, judged = bench.check(path, variant.thresholds[precision], noise_floor=noise), {}
            except RuntimeError as e:
                reason = f"the runtime cannot run it: {_first_line(e)}"
                log(f"[{variant.id}] {fmt}/{precision}: FAIL, {reason}")
                path.unlink()
                failures.append(f"{variant.id} {fmt}/{precision}: {reason}")
                model["rejected"].append({"format": fmt, "precision": precision, "reason": reason, **info})
                continue
            log(f"[{variant.id}] {fmt}/{precision}: {_verdict(report)}" + (
                f"; by data set {judged['by_source']}; robustness set pck@0.05 {judged['robustness']['pck@0.05']:.3f} "
                f"{judged['robustness']['by_transform']}" if judged else ""))
            parity_entry = {**_parity_entry(report, opts, REFERENCE_RUNTIME[recipe["original_format"]]), **judged}
            if report.passed and not missed:
                model["artifacts"].append(_artifact_entry(out_dir, path, fmt, precision, parity_entry, info, spec))
            else:
                path.unlink()
                gate = None if report.passed else "parity gate failed"
                problems = ([missed] if missed else []) + report.failures
                failures.append(f"{variant.id} {fmt}/{precision}: " + "; ".join(problems)
                                + (f" [original's own XNNPACK vs reference kernels: rel_err "
                                   f"{max(noise.values()):.2g}]" if noise else ""))
                model["rejected"].append({"format": fmt, "precision": precision,
                                          "reason": "; ".join(r for r in (missed, gate) if r),
                                          "parity": parity_entry, **info})
        for (fmt, precision), info in extra.items():
            if (fmt, precision) not in candidates:
                reason = info.pop("reason", "the INT8 search found no plan within the int8 weight share that passes "
                                            "the gate on the calibration people")
                failures.append(f"{variant.id} {fmt}/{precision}: {reason}")
                model["rejected"].append({"format": fmt, "precision": precision, **info, "reason": reason})
        publisher_files = [_measure_publisher_file(variant, key, file, bench, model, log)
                           for key, file in (compare_with or {}).items()]
        _lap(steps, "parity", lap)
    model["build"] = {"seconds": round(time.time() - start, 1), "steps": steps, "samples": len(samples),
                      "max_samples": opts.max_samples, "calibration_images": opts.calibration_set,
                      "original_kernel_noise_rel_err": {k: float(f"{v:.3g}") for k, v in noise.items()}}
    if int8:
        model["build"]["int8_people"] = int8.record()
    if publisher_files:
        model["build"]["publisher_files"] = publisher_files
    return VariantResult(model, failures, time.time() - start)


def _publisher_tflite(variant, original: ResolvedFile, compare_with: dict | None) -> Path | None:
    """The publisher's own TFLite an INT8 TFLite of ours must not be slower than: their INT8 file
    where we measure one beside ours, else the original when it is a TFLite (BlazePose's)."""
    if compare_with and ("tflite", "int8") in compare_with:
        return compare_with["tflite", "int8"].path
    return original.path if variant.recipe["original_format"] == "tflite" else None


def _measure_publisher_file(variant, key: tuple[str, str], file: ResolvedFile, bench: "ParityBench", model: dict,
                            log) -> dict:
    """The publisher's own file of a precision we also built, gated against the same original on
    its default kernels, logged beside ours."""
    fmt, precision = key
    report = bench.check(file.path, variant.thresholds[precision], reference_kernels=False)
    ours = next((a for a in model["artifacts"] if (a["format"], a["precision"]) == key), None)
    log(f"[{variant.id}] the publisher's {fmt}/{precision} {file.path.name} ({file.bytes / 1e6:.2f} MB) vs the "
        f"original: {_verdict(report)}; ours: "
        + (f"{ours['bytes'] / 1e6:.2f} MB, pck@0.05 {ours['parity']['pck@0.05']:.3f}" if ours else "not published"))
    return {"format": fmt, "precision": precision, "file": file.path.name, "sha256": file.sha256,
            "bytes": file.bytes, "parity": _rounded(report.to_dict())}


@dataclass
class Int8Benches:
    """The people an INT8 file meets, split by photo. The calibration people (`search`) and their
    robustness set (`search_robustness`, converters/robustness.py's transforms of them) give the
    calibration ranges and decide every choice of the mixed-precision search, under the same two
    gates as the final judgement; the others (`gate`) and their robustness set (`robustness`)
    alone judge the file."""
    search: ParityBench
    search_robustness: ParityBench
    gate: ParityBench
    robustness: ParityBench

    @classmethod
    def split(cls, bench: ParityBench, original, log, model_id: str) -> "Int8Benches":
        gate, calibrating = bench.subset("gate"), bench.subset("calibration")
        made = cls(calibrating, calibrating.perturbed(original), gate, gate.perturbed(original))
        log(f"[{model_id}] INT8 people: {len(calibrating.samples)} to calibrate and search on (with their "
            f"{len(made.search_robustness.samples)} robustness crops), {len(gate.samples)} others to gate on "
            f"(split by photo; {len(made.robustness.samples)} robustness crops)")
        return made

    @property
    def calibration_samples(self) -> list:
        """What the quantizers calibrate their ranges on: the calibration people and their transforms."""
        return self.search.samples + self.search_robustness.samples

    def search_score(self, path: Path, thresholds: dict) -> float:
        """A trial's score on the calibration side: the judgement's two gates (the INT8 gate, and
        PCK@0.05 on the robustness set), each PCK read as the value the calibration photos vouch for
        with SEARCH_CONFIDENCE (its lower bound over resamples of them, see search_reading), 1.0
        when both pass. TFLite runs on its fast kernels here (see ParityBench.check)."""
        return min(search_reading(self.search, self.search.check(path, thresholds, reference_kernels=False),
                                  thresholds),
                   search_reading(self.search_robustness, self.search_robustness.check(
                       path, parity.ROBUSTNESS_THRESHOLDS, reference_kernels=False), parity.ROBUSTNESS_THRESHOLDS))

    def judge(self, path: Path, thresholds: dict, noise: dict) -> tuple[parity.ParityReport, dict]:
        """The INT8 gate on the gate people, then PCK@0.05 on the robustness set (its failures join
        the report's); returns the report and what the manifest's parity adds for INT8: the people
        judged, PCK@0.05 per data set (image folder) of the gate people, and the `robustness` record."""
        report = self.gate.check(path, thresholds, noise_floor=noise)
        robust, by_transform = self.robustness.check_robustness(path)
        report.failures += [f"robustness set: {f}" for f in robust.failures]
        return report, {"people": "gate",
                        "by_source": parity.pck_by(report, [s.person.image.parent.name for s in self.gate.samples],
                                                   "0.05"),
                        "robustness": {"samples": robust.samples, "pck@0.05": round(robust.pck["0.05"], 6),
                                       "thresholds": robust.thresholds, "by_transform": by_transform,
                                       "passed": robust.passed}}

    def record(self) -> dict:
        """The manifest's `build.int8_people`: who calibrated and who judged, as counts and digests."""
        return {"split": "by photo: the first byte of the photo's sha256, even -> calibration, odd -> gate",
                "search": f"both gates' PCK bounds met by the calibration people with {SEARCH_CONFIDENCE:.0%} confidence "
                          f"(the {1 - SEARCH_CONFIDENCE:.0%} quantile over {parity.BOOTSTRAP_RESAMPLES} resamples of "
                          "their photos)",
                "calibration": calibration.set_record(self.search.samples),
                "gate": calibration.set_record(self.gate.samples),
                "robustness": {"crops": len(self.robustness.samples),
                               "transforms": sorted({s.split.split("/", 1)[1] for s in self.robustness.samples})}}


def int8_options(variant, opts: BuildOptions) -> dict:
    """The recipe's INT8 options, with --int8-fallback over its `fallback`."""
    return {**variant.int8_options, **({"fallback": opts.int8_fallback} if opts.int8_fallback else {})}


# The INT8 search asks a plan's PCK on the calibration people to hold, with this confidence, for
# other photos like theirs: a plan is fitted to those people, and one that clears them by nothing
# lands on either side on others. The unit is the photo, as in the split (people of one photo
# share its camera, light and blur, and fail together): EfficientPose's 18 calibration people come
# from 7 photos (two of them hold 10), its 26 gate people from 11 (one PoseTrack frame holds 11).
# The bound widens with fewer photos and with photos that disagree more. What no reading of the
# calibration photos can see is a kind of photo they lack: EfficientPose I's ONNX INT8 plan reads
# 0.969 on the gate people (bound 0.97), 12 of its 13 misses on the PoseTrack video frames
# (0.946), of which the split put none on the calibration side (parity `by_source`). The gates that
# publish a file are never moved; only the search asks more.
SEARCH_CONFIDENCE = 0.9


def search_reading(bench: parity.ParityBench, report: parity.ParityReport, thresholds: dict) -> float:
    """1.0 when `report` (of `bench`'s people) passes `thresholds` with every PCK bound met by
    the PCK their photos vouch for with SEARCH_CONFIDENCE (parity.pck_lower_bound over photos; a
    photo's people and their robustness crops drawn together), else the worst ratio of such a
    reading to its bound."""
    photos = [str(s.person.image) for s in bench.samples]
    ratios = []
    for key, bound in thresholds.items():
        metric, kind = key.rsplit("_", 1)
        if kind != "min" or not bound:
            continue
        value = (parity.pck_lower_bound(report, photos, metric.split("@")[1], SEARCH_CONFIDENCE)
                 if metric.startswith("pck@") else report.summary()[metric])
        ratios.append(value / bound)
    worst = min(ratios, default=1.0)
    if worst >= 1.0:
        return 1.0 if report.passed else 0.0  # failed elsewhere (an upper bound, heatmap ties)
    return worst


def _record_int8(candidates, extra, fmt: str, built: formats.Int8Build, log, model_id, feed: np.ndarray,
                 publisher: Path | None = None) -> None:
    """Note a format's INT8 search in `extra` and, where it found a plan, its file in `candidates`. A
    file holding less than MIN_INT8_WEIGHT_SHARE of its weight bytes as int8, or missing its size or
    latency target (converters/int8_targets.py; latency timed on `feed`, beside `publisher`'s TFLite
    where given), is not an INT8 model: `reason` in `extra` says why, and it is judged on the people
    all the same, then rejected with its numbers."""
    info = {"quantization": {"weights": built.weights, "activations": built.activations,
                             "fallback": built.fallback, "rounding": built.rounding,
                             "calibration": built.calibration, "calibration_people": "calibration",
                             **built.result.to_dict()}}
    extra[fmt, "int8"] = info
    log(f"[{model_id}] {fmt}/int8 search ({len(built.result.knobs)} tensors): " + ", ".join(
        f"{t.raised} {built.fallback} -> {'pass' if t.passed else 'fail'} ({t.score:.4f})" for t in built.result.trials))
    if built.result.path is None:
        Path(built.path).unlink(missing_ok=True)
        return
    quantization = info["quantization"]
    share = formats.get(fmt).int8_weight_share(built.path)
    quantization["int8_weight_share"] = share
    reason = None
    if share < MIN_INT8_WEIGHT_SHARE:
        reason = (f"only {share:.1%} of its weight bytes are int8 (an INT8 file holds at least "
                  f"{MIN_INT8_WEIGHT_SHARE:.0%})")
    else:
        quantization["size"], reason = int8_targets.check_size(built.path, built.fp32)
    if reason is None and fmt == int8_targets.LATENCY_FORMAT:
        quantization["latency"], reason = int8_targets.check_latency(built.path, built.fp32, publisher, feed)
        latency = quantization["latency"]
        log(f"[{model_id}] {fmt}/int8 latency {latency['median_ms']:.2f} ms = {latency['vs_fp32']:.2f}x FP32"
            + (f", {latency['vs_publisher']:.2f}x the publisher's" if publisher else "")
            + ("" if latency["judged"] else " (not judged: this CPU has no int8 dot-product instructions, so "
                                            "XNNPACK's int8 kernels are no faster than float here)"))
    if reason:  # not published, but judged on the gate people like any other, so its rejection has every number
        info["reason"] = reason
    candidates[fmt, "int8"] = built.path


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _verdict(report: parity.ParityReport) -> str:
    """PASS or FAIL with the gated numbers, for the build log."""
    summary = {k: round(v, 6) if isinstance(v, float) else v for k, v in report.summary().items()}
    return f"{'PASS' if report.passed else 'FAIL'} {summary}"


def _parity_entry(report: parity.ParityReport, opts: BuildOptions, reference: str) -> dict:
    """An artifact's `parity` in the manifest: the report, the images and what it was compared with."""
    return {**_rounded(report.to_dict()), "images": opts.calibration_set["name"], "reference": reference}


def _rounded(d):
    if isinstance(d, float):
        return "inf" if d == float("inf") else round(d, 8)
    if isinstance(d, dict):
        return {k: _rounded(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_rounded(v) for v in d]
    return d


def _model_entry(variant, original: ResolvedFile, spec=None) -> dict:
    """The manifest entry of a model; `spec` names the file `original` is (default: the recipe's original)."""
    r = variant.recipe
    source = _source_entry(spec or variant.file, original)
    if r["original_format"] == "tfjs_graph":
        source["derived"] = tfjs_graph.provenance(original.path)
    return {"id": variant.id, "family": variant.family, "variant": variant.variant, "task": r["task"],
            "title": r["title"], "license": r["license"], "paper": r["paper"], "keypoints": r["keypoints"],
            "source": source, "input": r["input"], "outputs": r["outputs"],
            "decoder": r["decoder"], "complexity": {}, "artifacts": [], "rejected": [],
            **({"calibration_crop": r["calibration_crop"]} if "calibration_crop" in r else {})}


def _artifact_entry(out_dir: Path, path: Path, fmt: str, precision: str, parity_entry: dict, extra: dict,
                    spec: dict, origin: str = "converted") -> dict:
    from .sources import sha256_of

    runner = open_runner(path)
    io = runner.io_details()
    same = list(io["inputs"][0]["shape"]) == list(spec["shape"])
    layout = spec["layout"] if same else {"NCHW": "NHWC", "NHWC": "NCHW"}[spec["layout"]]
    info = formats.get(fmt).info(path)
    return {"format": fmt, "precision": precision, "path": str(path.relative_to(out_dir.parent)),
            "sha256": sha256_of(path), "bytes": path.stat().st_size, "origin": origin,
            "input_layout": layout, "io": io, "format_info": info, **extra, "parity": parity_entry,
            "verified_with": {**tool_versions(), **runtime_versions()}}
