"""The command line: `add_arguments` and `run` (registered by scripts/cli.py as `posezoo bench`),
`main` for `python -m posezoo.scripts.bench`: targets, measuring, rows, then the table or JSON and notes."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from posezoo.scripts.bench.measure import measure
from posezoo.scripts.bench.rows import make_rows
from posezoo.scripts.bench.table import format_table
from posezoo.scripts.bench.targets import BenchError, collect_targets
from posezoo.scripts.bench.web import web_latencies

EXIT_WORKER_FAILED = 1
EXIT_BAD_INPUT = 2


def _thread_list(text: str) -> tuple[int, ...]:
    try:
        items = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        items = ()
    if not items or min(items) < 1:
        raise argparse.ArgumentTypeError(f"thread counts are positive integers, comma-separated (got {text!r})")
    return items


def _vendor_file(text: str) -> tuple[str, Path]:
    model, sep, path = text.partition("=")
    if not sep or not model or not path:
        raise argparse.ArgumentTypeError(f"expected MODEL_ID=PATH (got {text!r})")
    return model.strip(), Path(path)


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("manifest", type=Path, help="DIR/manifest.json")
    p.add_argument("--ids", nargs="+", metavar="ID", help="only these model ids (space- or comma-separated)")
    p.add_argument("--threads", type=_thread_list, default=(1,), help="thread counts, e.g. 1,2 (default 1)")
    p.add_argument("--runs", type=int, default=30, help="timed inferences per file and thread count (default 30)")
    p.add_argument("--warmup", type=int, default=5, help="untimed inferences first (default 5)")
    p.add_argument("--pause-ms", type=float, default=2.0,
                   help="pause between two timed inferences, so one runtime's spinning threads settle (default 2)")
    p.add_argument("--mirror", type=Path, default=os.environ.get("POSEZOO_MIRROR"),
                   help="folder with the models' originals (matched by file name, sha256-verified); default $POSEZOO_MIRROR")
    p.add_argument("--cache", type=Path, help="content-addressed cache; default $POSEZOO_CACHE or ~/.cache/posezoo")
    p.add_argument("--vendor-file", type=_vendor_file, action="append", default=[], metavar="MODEL_ID=PATH",
                   help="a publisher's own file of that model to time beside ours (repeatable)")
    p.add_argument("--web", action="store_true", help="also time each artifact in the site's try-it page (headless "
                                                      "Chromium, wasm, each --threads count): `web ms` and `web/native`")
    p.add_argument("--images", type=Path, help="photos for the page (--web); default: $POSEZOO_CALIBRATION_IMAGES")
    p.add_argument("--json", action="store_true", help="print the rows as JSON (progress and notes on stderr)")
    p.add_argument("--save", action="store_true", help="also write the rows to DIR/bench.json, where `posezoo site` "
                                                       "shows them")
    return p


def run(args) -> int:
    manifest_path = Path(args.manifest)
    if not manifest_path.is_file():
        raise BenchError(f"{manifest_path} does not exist; build one with `posezoo build NAME --out DIR`")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as e:
        raise BenchError(f"{manifest_path} is not valid JSON ({e})") from None
    if args.runs < 1 or args.warmup < 0:
        raise BenchError("--runs must be >= 1 and --warmup >= 0")
    ids = [x for item in args.ids or [] for x in item.split(",") if x]
    vendor_files: dict[str, list[Path]] = {}
    for model, path in args.vendor_file:
        vendor_files.setdefault(model, []).append(path)
    notes: list[str] = []
    targets = collect_targets(manifest, manifest_path.parent, ids or None, args.cache, args.mirror, vendor_files, notes)
    if not targets:
        raise BenchError(f"{manifest_path}: no artifacts to time")
    machine = f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at start"
    rows = make_rows(measure(targets, args.threads, args.runs, args.warmup, args.pause_ms, progress=True))
    if args.web:
        web = web_latencies(manifest_path, manifest, ids, args.runs, args.images, args.threads)
        for r in rows:
            if (timed := web.get((r["path"], r["threads"]))) is not None:
                r["web_ms"], r["web_backend"] = timed["ms"], timed["backend"]
                r["web_vs_native"] = round(r["web_ms"] / r["median_ms"], 2) if r["median_ms"] else None
        notes.append("web ms: the site's try-it page in headless Chromium, wasm at the same thread count "
                     "(cross-origin isolated; no WebGPU adapter headless); web/native: web ms over median ms")
    notes.insert(0, f"machine: {machine}; {args.runs} runs after {args.warmup} warm-up per file and thread count, "
                    f"round-robin; peak MiB = the run's process peak RSS minus a process that only imports the runtime")
    for r in rows:
        if r["error"]:
            notes.append(f"{r['file']} ({r['threads']} threads): {r['error']}")
    if args.save:
        save_rows(manifest_path.parent, rows, notes)
    if args.json:
        print(json.dumps(rows, indent=2))
        for n in notes:
            print(f"note: {n}", file=sys.stderr)
    else:
        print(format_table(rows))
        for n in notes:
            print(f"note: {n}")
    return EXIT_WORKER_FAILED if any(r["error"] for r in rows) else 0


def save_rows(directory: Path, rows: list[dict], notes: list[str]) -> Path:
    """DIR/bench.json: the rows, each with its artifact's manifest path (`artifact`), and the notes."""
    from posezoo.converters.fileio import atomic_write_text

    root = directory.resolve()
    saved = [{**r, "artifact": Path(r["path"]).resolve().relative_to(root).as_posix()
              if Path(r["path"]).resolve().is_relative_to(root) else None} for r in rows]
    path = directory / "bench.json"
    atomic_write_text(path, json.dumps({"rows": saved, "notes": notes}, indent=1))
    return path


def main(argv=None) -> int:
    from posezoo.scripts import bench  # the package's docstring describes the command

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="posezoo bench", description=bench.__doc__.split("\n\n")[0])
    args = add_arguments(parser).parse_args(argv)
    try:
        return run(args)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
