"""`posezoo`: list, fetch, build and verify models. A thin layer over the library."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from posezoo.converters import cluster, quiet
from posezoo.errors import PosezooError, UsageError

EXIT_FAILED_GATE = 1
EXIT_BAD_INPUT = 2
EXIT_BUG = 3


def _csv(choices):
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(x.strip() for x in text.split(",") if x.strip())
        bad = [x for x in items if x not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"choose from {','.join(choices)} (got {text!r})")
        return items
    return parse


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _resolver(args):
    from posezoo.converters.sources import Resolver

    return Resolver(cache_dir=args.cache, mirror_dir=args.mirror, offline=args.offline)


def cmd_list(args) -> int:
    from posezoo import recipes
    rows = [{"id": v.id, "family": v.family, "variant": v.variant, "task": v.recipe["task"],
             "aliases": v.aliases, "original_format": v.recipe["original_format"], "file": v.file.name,
             "sha256": v.file.sha256 or None, "sha256_prefix": v.file.sha256_prefix or None,
             "git_blob_sha1": v.file.git_blob_sha1 or None, "also_pinned": _also_pinned(v),
             "license": v.recipe["license"]} for v in recipes.all_variants()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'id':34s} {'family':17s} {'task':24s} {'original':11s} {'pinned by':15s} {'also pinned':36s} aliases")
    for r in rows:
        alternative = any(f["as"].endswith(" original") and f["sha256"] for f in r["also_pinned"])
        pinned = ("sha256" if r["sha256"] else "git blob sha1" if r["git_blob_sha1"]
                  else f"prefix {r['sha256_prefix']}" if r["sha256_prefix"]
                  else "an alternative" if alternative else "--checkpoint")
        also = ", ".join(f["as"] for f in r["also_pinned"]) or "--"
        print(f"{r['id']:34s} {r['family']:17s} {r['task']:24s} {r['original_format']:11s} {pinned:15s} {also:36s} "
              f"{', '.join(r['aliases'])}")
    return 0


def _also_pinned(variant) -> list[dict]:
    """The publisher's other files the recipe pins for a model: originals in another format (built
    from where the recipe's original cannot be had, or handed over with --checkpoint) and the
    publisher's own converted files (published unchanged)."""
    originals = [{"name": spec.name, "as": f"{fmt} original", "sha256": spec.sha256}
                 for fmt, spec in variant.alternative_originals]
    vendor = [{"name": spec.name, "as": f"vendor {fmt}/{precision}", "sha256": spec.sha256 or None}
              for (fmt, precision), spec in variant.vendor_files.items()]
    return originals + vendor


def cmd_fetch(args) -> int:
    from posezoo import recipes
    from posezoo.converters.pipeline import resolve_original
    resolver = _resolver(args)
    results = []
    for v in recipes.select(args.names):
        f = resolve_original(v, resolver, None)  # the recipe's original, else the first alternative to be had
        results.append({"id": v.id, "path": str(f.path), "sha256": f.sha256, "origin": f.origin, "source": f.source})
        if not args.json:
            print(f"{v.id}: {f.path} ({f.origin}: {f.source})")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


def cmd_build(args) -> int:
    from posezoo import recipes
    from posezoo.converters.pipeline import BuildOptions, build

    variants = recipes.select(args.names)
    if args.checkpoint and len(variants) != 1:
        raise UsageError("--checkpoint converts one model: name exactly one model id")
    if not args.calibration_images:
        raise UsageError("pass --calibration-images DIR (real photos of people, optionally with COCO-format "
                         "annotations) or set POSEZOO_CALIBRATION_IMAGES")
    log = (lambda msg: print(msg, file=sys.stderr)) if args.json else print
    resolver = _resolver(args)
    opts = BuildOptions(out=Path(args.out), calibration_images=Path(args.calibration_images), formats=args.formats,
                        precisions=args.precisions, checkpoint=args.checkpoint, max_samples=args.max_samples,
                        log=log, progress=not args.json, jobs=args.jobs, force=args.force,
                        keep_going=args.keep_going, int8_fallback=args.int8_fallback, ray=args.ray,
                        ray_cpus=args.ray_cpus, cache_dir=resolver.cache_dir)
    summary = build(variants, opts, resolver)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        for model in summary.built:
            steps = model["build"].get("steps", {})
            print(f"[{model['id']}] {model['build']['seconds']} s: "
                  + ", ".join(f"{k} {v:.1f} s" for k, v in steps.items()))
        print(f"wrote {summary.manifest}: {sum(len(m['artifacts']) for m in summary.built)} artifacts built, "
              f"{len(summary.up_to_date)} models up to date, in {summary.seconds} s")
        for f in summary.failures:
            print(f"NOT PUBLISHED: {f}")
    return EXIT_FAILED_GATE if summary.failures and not args.keep_going else 0


def cmd_verify(args) -> int:
    from posezoo.scripts.verify import verify_manifest

    report = verify_manifest(Path(args.manifest), Path(args.calibration_images) if args.calibration_images else None,
                             _resolver(args), log=(lambda m: print(m, file=sys.stderr)) if args.json else print)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for f in report["failures"]:
            print(f"FAILED: {f}")
        print(f"verified {len(report['checked'])} artifacts: {'all pass' if not report['failures'] else 'FAILURES'}")
    return 0 if not report["failures"] else EXIT_FAILED_GATE


def cmd_walk(args) -> int:
    from posezoo import recipes
    from posezoo.converters.calibration import load_samples, parity_crop
    from posezoo.converters.tensor_walk import first_departures

    if not args.calibration_images:
        raise UsageError("pass --calibration-images DIR (real photos of people)")
    recipe = recipes.select([args.model])[0].recipe
    spec = recipe["input"]
    samples = load_samples(Path(args.calibration_images), spec, parity_crop(recipe), args.max_samples)
    rows = first_departures(Path(args.original), Path(args.artifact), [{spec["name"]: s.tensor} for s in samples],
                            args.report)
    if args.json:
        print(json.dumps(rows, indent=2, default=float))
    elif not rows:
        print(f"no tensor departs by more than one quantization step on {len(samples)} real inputs")
    for r in [] if args.json else rows:
        print(f"op {r['op_index']:4d} {r['op']:18s} {r['tensor'][:48]:48s} off by {r['max_off']:.3g} {r['units']} "
              f"on {r['share_off']:.2%} of elements")
    return 0


def parser() -> argparse.ArgumentParser:
    from posezoo.converters.formats import FORMATS
    from posezoo.converters.pipeline import PRECISIONS

    p = argparse.ArgumentParser(prog="posezoo", description=__doc__)
    verbose = "show the log lines and warnings of TensorFlow, absl, onnx2tf and the other converters"
    p.add_argument("--verbose", action="store_true", help=verbose)
    sub = p.add_subparsers(dest="command", required=True)

    def sources(sp):
        sp.add_argument("--mirror", type=Path, help="offline mirror folder (files matched by sha256 or name); "
                                                    "default $POSEZOO_MIRROR")
        sp.add_argument("--cache", type=Path, help="content-addressed cache; default $POSEZOO_CACHE or ~/.cache/posezoo")
        sp.add_argument("--offline", action="store_true", help="never use the network; cache and mirror only")

    s = sub.add_parser("list", help="models and families the recipes define")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_list)

    s = sub.add_parser("fetch", help="download and verify originals into the cache")
    s.add_argument("names", nargs="+", metavar="NAME", help="model id or family")
    s.add_argument("--json", action="store_true")
    sources(s)
    s.set_defaults(fn=cmd_fetch)

    s = sub.add_parser("build", help="convert, verify parity and write DIR/manifest.json")
    s.add_argument("names", nargs="+", metavar="NAME", help="model id or family")
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--formats", type=_csv(tuple(FORMATS)), default=tuple(FORMATS))
    s.add_argument("--precisions", type=_csv(PRECISIONS), default=PRECISIONS)
    s.add_argument("--calibration-images", default=os.environ.get("POSEZOO_CALIBRATION_IMAGES"),
                   help="folder of real photos of people for INT8 calibration and parity")
    s.add_argument("--max-samples", type=_positive_int,
                   help="use at most N person crops of each split, calibration and gate (default: all)")
    s.add_argument("--int8-fallback", choices=("float", "a16w8"),
                   help="precision of the tensors an INT8 plan takes out of int8 (default: the recipe's, float): "
                        "float for CPU runtimes, a16w8 (int16 activations, int8 weights) for accelerators")
    s.add_argument("--checkpoint", type=Path, help="convert your own file of the same architecture")
    s.add_argument("-j", "--jobs", type=_positive_int, default=1, help="build N models in parallel")
    cluster.add_arguments(s, "build one model per Ray task")
    s.add_argument("--keep-going", action="store_true",
                   help="exit 0 even when an artifact fails its gate or a model's files cannot be had "
                        "(both listed as NOT PUBLISHED)")
    s.add_argument("--force", action="store_true", help="rebuild models whose artifacts are up to date")
    s.add_argument("--json", action="store_true", help="print a JSON summary on stdout; logs go to stderr")
    sources(s)
    s.set_defaults(fn=cmd_build)

    s = sub.add_parser("verify", help="re-hash every artifact and re-run parity; non-zero on any failure")
    s.add_argument("manifest", type=Path)
    s.add_argument("--calibration-images", default=os.environ.get("POSEZOO_CALIBRATION_IMAGES"),
                   help="images for the parity re-run; default: those recorded in the manifest")
    s.add_argument("--json", action="store_true")
    sources(s)
    s.set_defaults(fn=cmd_verify)

    from posezoo.scripts import bench, evaluate, serve, site
    from posezoo.scripts.bench import ops

    # Commands with a module of their own: (name, module with add_arguments/run, help, takes --mirror etc.)
    for name, module, text, with_sources in (
            ("bench", bench, "latency, peak memory and size of every artifact, side by side with the publishers' "
                             "own files", False),
            ("bench-ops", ops, "where the time of TFLite files goes, op by op, side by side (an INT8 file beside its "
                               "FP32 twin): each op timed alone on LiteRT's XNNPACK, 1 thread", False),
            ("eval", evaluate, "accuracy of every artifact (and the original) on annotated people: COCO OKS AP or "
                               "MPII PCKh; writes DIR/eval/<annotations>.json", True),
            ("site", site, "the zoo as a static site in DIR/site/: the table, a page per model (card, pictures, "
                           "downloads), try-it in the browser", False),
            ("serve", serve, "DIR and its site on localhost (cross-origin isolated: multi-threaded wasm); --check "
                             "runs every artifact in headless Chromium", False)):
        s = sub.add_parser(name, help=text)
        module.add_arguments(s)
        if with_sources:
            sources(s)
        s.set_defaults(fn=module.run)

    s = sub.add_parser("walk", help="where an artifact first departs from its TFLite original: every "
                                    "intermediate tensor compared, in quantization steps")
    s.add_argument("original", help="the original (or vendor) .tflite file")
    s.add_argument("artifact", help="an .onnx artifact converted from it")
    s.add_argument("--model", required=True, help="model id whose input spec cuts the real inputs")
    s.add_argument("--calibration-images", default=os.environ.get("POSEZOO_CALIBRATION_IMAGES"), required=False)
    s.add_argument("--max-samples", type=_positive_int, default=8)
    s.add_argument("--report", type=int, default=5, help="how many departing tensors to list")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_walk)

    for s in sub.choices.values():  # --verbose also after the command; SUPPRESS keeps one given before it
        s.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose)
    return p


def _stop(signum, frame):
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """A stop (SIGTERM: `kill`, a job scheduler, a CI timeout) unwinds like Ctrl-C, so a build's
    work folder and half-written files are removed on the way out."""
    previous = signal.signal(signal.SIGTERM, _stop) if threading.current_thread() is threading.main_thread() else None
    try:
        return _run(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(argv: list[str] | None) -> int:
    args = parser().parse_args(argv)
    quiet.configure(args.verbose)
    from posezoo.converters.onnx_to_tflite import ConversionError

    try:
        return args.fn(args)
    except ConversionError as e:
        print(f"posezoo {args.command}: conversion failed: {e}", file=sys.stderr)
        return EXIT_FAILED_GATE
    except PosezooError as e:
        print(f"posezoo {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as e:  # read-only or full disk, missing folder: the build left the published folder as it was
        where = f"{e.filename}: " if e.filename else ""
        print(f"posezoo {args.command}: error: {where}{e.strerror or e}. Free space or choose a writable "
              "folder (--out, --cache / POSEZOO_CACHE), then run it again.", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as e:
        path = _write_crash_report(sys.argv[1:] if argv is None else argv)
        what = ": ".join([type(e).__name__, *str(e).splitlines()[:1]])
        print(f"posezoo {args.command}: a bug in posezoo ({what}); the full traceback is in {path}: please report "
              "it with that file.", file=sys.stderr)
        return EXIT_BUG


def _write_crash_report(argv: list[str]) -> str:
    """Write the command line and the traceback of the exception being handled to a new file in the
    temp folder; returns its path."""
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix=f"posezoo-crash-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".txt")
    with os.fdopen(fd, "w") as f:
        f.write(f"posezoo {' '.join(argv)}\n\n{traceback.format_exc()}")
    return path


if __name__ == "__main__":
    sys.exit(main())
