"""`posezoo site DIR`: the zoo as a static site in DIR/site/, from DIR/manifest.json, the accuracy
reports of `posezoo eval` (DIR/eval/) and the timings of `posezoo bench --save` (DIR/bench.json).

- `index.html`: the zoo table, one row per model (family, variant, input, keypoints, params,
  MACs) and per format x precision the size, parity verdict, accuracy change and native/web
  latency of each artifact, rejected ones with their reason; sortable and filterable.
- `models/<id>.html`: the model card, the pictures (original vs each artifact on real people),
  provenance and downloads with sha256; `models/<id>.md` the same card in Markdown.
- `try.html`: the try-it page of zoo/web (sample photos, your own photo, the webcam, two
  artifacts compared), with its runtimes copied from zoo/web/node_modules into `vendor/` and the
  sample photos into `samples/`.

Links are relative, so the folder DIR works from any static host (the site links the artifacts
at `../<id>/...`) and from `posezoo serve DIR`. The site is written into a staging folder and
swapped in whole: a failed run leaves the previous site as it was.
"""
from __future__ import annotations

import html
import json
import shutil
import tempfile
from pathlib import Path

from posezoo.errors import PosezooError
from posezoo.scripts import report

SITE = "site"
WEB = Path(__file__).resolve().parents[1] / "zoo" / "web"
NODE_MODULES = WEB / "node_modules"
# What the try-it page loads, from zoo/web/node_modules (`npm ci`): {vendor folder: (package folder, files)}.
# ONNX Runtime Web's wasm build, and its WebGPU build (which also runs wasm) for browsers with an adapter.
RUNTIME_FILES = {
    "onnxruntime-web": ("onnxruntime-web", ["dist/ort.wasm.min.mjs", "dist/ort-wasm-simd-threaded.mjs",
                                            "dist/ort-wasm-simd-threaded.wasm", "dist/ort.webgpu.min.mjs",
                                            "dist/ort-wasm-simd-threaded.asyncify.mjs",
                                            "dist/ort-wasm-simd-threaded.asyncify.wasm", "package.json"]),
    "litertjs-core": ("@litertjs/core", ["dist/index.js", "wasm/*", "package.json"]),
    "litertjs-wasm-utils": ("@litertjs/wasm-utils", ["dist/index.js", "package.json"]),
}
PAGE_FILES = ["try.html", "app.js", "posezoo.js", "widen.js", "site.css", "table.js"]
CELLS = [(f, p) for f in ("onnx", "tflite") for p in ("fp32", "fp16", "int8")]
MAX_SAMPLE_PHOTOS = 40  # a calibration folder may hold thousands: the page needs a handful


class SiteError(PosezooError):
    pass


def read_bench(directory: Path) -> dict:
    """DIR/bench.json (`posezoo bench --save`): {(artifact path, threads): row}; {} where there is none."""
    path = Path(directory) / "bench.json"
    if not path.is_file():
        return {}
    try:
        saved = json.loads(path.read_text())
        return {(r["artifact"], r["threads"]): r for r in saved["rows"] if r.get("artifact")}
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise SiteError(f"{path} is not a `posezoo bench --save` file ({e}): run the bench again") from None


def write_site(directory: Path, images: Path | None = None, max_photos: int = MAX_SAMPLE_PHOTOS) -> Path:
    """Write DIR/site/ whole (see the module's docstring), with up to `max_photos` sample photos of
    people from `images`; returns its index.html."""
    from posezoo.manifest import read_manifest

    directory = Path(directory)
    manifest = read_manifest(directory / "manifest.json")
    if not (NODE_MODULES / "onnxruntime-web").is_dir():
        raise SiteError(f"the try-it page's runtimes are not installed: run `npm ci` in {WEB} (npm registry, once)")
    evals, bench = report.read_evals(directory), read_bench(directory)
    final = directory / SITE
    for stale in directory.glob(".site-*"):  # left by a run that was killed
        shutil.rmtree(stale, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(prefix=".site-", dir=directory))
    try:
        (stage / "models").mkdir()
        _copy_runtimes(stage / "vendor")
        for name in PAGE_FILES:
            shutil.copyfile(WEB / name, stage / name)
        samples = _copy_samples(images, stage / "samples", max_photos)
        (stage / "samples.json").write_text(json.dumps(samples))
        figure = report.size_error_png(manifest, evals, stage / "size_vs_error.png")
        (stage / "index.html").write_text(index_html(manifest, evals, bench, figure and figure.name))
        for model in manifest["models"]:
            pictures = [p.name for e in evals for p in [_pictures(model, e, stage / "models")] if p]
            (stage / "models" / f"{model['id']}.md").write_text(report.model_card(model, evals))
            (stage / "models" / f"{model['id']}.html").write_text(model_html(model, evals, bench, pictures))
        old = stage.with_name(stage.name + "-old")
        if final.exists():
            final.rename(old)
        stage.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return final / "index.html"


def _copy_runtimes(vendor: Path) -> None:
    for folder, (package, patterns) in RUNTIME_FILES.items():
        root = NODE_MODULES / package
        found = {pattern: sorted(root.glob(pattern)) for pattern in patterns}
        if missing := [pattern for pattern, files in found.items() if not files]:
            raise SiteError(f"{root} lacks {', '.join(missing)}, which the try-it page needs: run `npm ci` in {WEB}")
        files = [f for matched in found.values() for f in matched]
        (vendor / folder).mkdir(parents=True)
        for f in files:
            target = vendor / folder / (f.relative_to(root / "dist") if f.is_relative_to(root / "dist")
                                        else f.relative_to(root))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)


def _copy_samples(images: Path | None, out: Path, max_photos: int) -> list[dict]:
    """The first `max_photos` photos with people under `images`, copied to `out` (with the folder's
    README and LICENSE files: the photos' terms), and the people in each for the page's person picker."""
    if images is None:
        return []
    from posezoo.converters.calibration import find_people

    images = Path(images)
    by_image: dict[Path, list] = {}
    for person in find_people(images):
        if person.image not in by_image and len(by_image) == max_photos:
            continue
        by_image.setdefault(person.image, []).append(
            {"box": [float(v) for v in person.box], "keypoints": {k: list(v) for k, v in person.keypoints.items()}})
    terms = [p for p in images.rglob("*") if p.is_file() and p.name.upper().startswith(("README", "LICENSE"))]
    for path in [*by_image, *terms]:
        target = out / path.relative_to(images)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return [{"name": path.relative_to(images).as_posix(), "url": "samples/" + path.relative_to(images).as_posix(),
             "people": people} for path, people in by_image.items()]


def _pictures(model: dict, evaluation: dict, folder: Path) -> Path | None:
    entry = next((m for m in evaluation["models"] if m["id"] == model["id"]), None)
    if entry is None:
        return None
    return report.pictures_png(model, entry, Path(evaluation["annotations"]).name,
                               folder / f"{model['id']}_{Path(evaluation['annotations']).stem}.png")


# --- pages ---------------------------------------------------------------------------------------

def _page(title: str, body: str, depth: int = 0) -> str:
    up = "../" * depth
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<link rel="icon" href="data:,"><link rel="stylesheet" href="{up}site.css"></head><body>\n'
            f'<nav><a href="{up}index.html">posezoo</a> · <a href="{up}try.html">try it</a></nav>\n{body}\n'
            f'<script src="{up}table.js"></script>\n</body></html>\n')


def _mb(n: int | None) -> str:
    return f"{n / 1e6:.2f} MB" if n else ""


def _latency(bench: dict, path: str) -> str:
    parts = []
    for threads in (1, 2):
        row = bench.get((path, threads))
        if row and row.get("median_ms") is not None:
            web = f", web {row['web_ms']:.1f}" if row.get("web_ms") is not None else ""
            parts.append(f"{threads}T {row['median_ms']:.1f}{web} ms")
    return "; ".join(parts)


def _drop(rows: list[dict], path: str) -> str:
    for row in rows:
        if row["artifact"] == path:
            return "; ".join(f"{metric} {0.0 - r['drop']:+.3f}" for _, (metric, r) in row["accuracy"].items()
                             if r.get("drop") is not None)
    return ""


def _cell(model: dict, rows: list[dict], bench: dict, fmt: str, precision: str) -> tuple[str, str]:
    """The HTML of one format x precision cell and its sort key (the smallest published file's bytes)."""
    lines, sizes = [], []
    for art in model["artifacts"]:
        if (art["format"], art["precision"]) != (fmt, precision):
            continue
        sizes.append(art["bytes"])
        verdict = "pass" if art["parity"].get("passed") else "fail"
        who = " (publisher's)" if art["origin"] == "vendor" else ""
        extra = [x for x in (_drop(rows, art["path"]), _latency(bench, art["path"])) if x]
        lines.append(f'<div><a href="../{html.escape(art["path"])}" download>{_mb(art["bytes"])}</a>{who} '
                     f'<span class="{verdict}">{verdict}</span>'
                     + "".join(f'</div><div class="muted">{html.escape(x)}' for x in extra) + "</div>")
    for rej in model.get("rejected", []):
        if (rej["format"], rej["precision"]) == (fmt, precision):
            lines.append(f'<div class="rejected" title="{html.escape(rej["reason"])}">rejected: '
                         f'{html.escape(rej["reason"][:90])}{"…" if len(rej["reason"]) > 90 else ""}</div>')
    return "".join(lines) or '<span class="muted">—</span>', str(min(sizes) if sizes else "")


def index_html(manifest: dict, evals: list[dict], bench: dict, figure: str | None) -> str:
    models = manifest["models"]
    head = ("<tr>" + "".join(f'<th class="sortable" data-type="{t}">{h}</th>' for h, t in
                             [("model", "text"), ("family", "text"), ("variant", "text"), ("input", "text"),
                              ("keypoints", "number"), ("params (M)", "number"), ("MACs (G)", "number")])
            + "".join(f'<th class="sortable" data-type="number">{f} {p}</th>' for f, p in CELLS) + "</tr>")
    body = []
    for m in models:
        c = m.get("complexity") or {}
        shape = m["input"]["shape"]
        h, w = (shape[1], shape[2]) if m["input"].get("layout", "NHWC") == "NHWC" else (shape[2], shape[3])
        rows = report.artifact_rows(m, evals)
        cells = [_cell(m, rows, bench, f, p) for f, p in CELLS]
        published = " ".join(sorted({f"{a['format']}-{a['precision']}" for a in m["artifacts"]}))
        size = (f'<td>{c["params"] / 1e6:.2f}</td><td>{c["flops"] / 1e9:.3f}</td>' if c else "<td></td><td></td>")
        body.append(f'<tr data-family="{html.escape(m["family"])}" data-published="{published}">'
                    f'<td><a href="models/{html.escape(m["id"])}.html">{html.escape(m["id"])}</a></td>'
                    f'<td>{html.escape(m["family"])}</td><td>{html.escape(str(m["variant"]))}</td><td>{w}x{h}</td>'
                    f'<td>{len(m["keypoints"]["names"])}</td>{size}'
                    + "".join(f'<td class="cell" data-sort="{key}">{text}</td>' for text, key in cells) + "</tr>")
    families = sorted({m["family"] for m in models})
    artifacts = sum(len(m["artifacts"]) for m in models)
    rejected = sum(len(m.get("rejected", [])) for m in models)
    timing = ("Latency: median ms of <code>posezoo bench --save</code> (1T/2T: threads; native LiteRT/ONNX Runtime, "
              "web: the try-it page in Chromium)." if bench else
              "No latency yet: run <code>posezoo bench DIR/manifest.json --threads 1,2 --web --save</code>.")
    accuracy = ("Accuracy change: the artifact's metric minus the original's on the annotated people of "
                "<code>posezoo eval</code>." if evals else "No accuracy yet: run <code>posezoo eval</code>.")
    text = f"""<h1>posezoo</h1>
<p>{len(models)} models, {artifacts} artifacts published, {rejected} rejected with their numbers. Every artifact
was checked against its original on real people (parity) before it was published; click a size to download
the file, a model for its card, provenance and pictures, or <a href="try.html">try any of them</a> in this
browser.</p>
<p class="muted">{timing} {accuracy} MACs: multiply-accumulates of one inference.</p>
<div class="filters"><label>filter <input id="filter" type="search" placeholder="model, family, …"></label>
<label>family <select id="family"><option value="">all</option>{"".join(f'<option>{html.escape(f)}</option>' for f in families)}</select></label>
<label>has <select id="has"><option value="">any</option>{"".join(f'<option value="{f}-{p}">{f} {p}</option>' for f, p in CELLS)}</select></label></div>
<table id="zoo"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>
{f'<p><img alt="size vs error" src="{figure}"></p>' if figure else ""}
<p class="muted">Generated from <a href="../manifest.json">manifest.json</a>, written by posezoo
{html.escape(str(manifest["generator"].get("version", "")))}.</p>"""
    return _page("posezoo: the zoo", text)


def model_html(model: dict, evals: list[dict], bench: dict, pictures: list[str]) -> str:
    mid = html.escape(model["id"])
    spec, src, c = model["input"], model["source"], model.get("complexity") or {}
    facts = [("task", model["task"]), ("family / variant", f"{model['family']} / {model['variant']}"),
             ("input", f"{spec['shape']} {spec.get('layout', 'NHWC')} {spec['dtype']} {spec.get('color', 'RGB')}"),
             ("crop", json.dumps(spec["crop"])), ("keypoints", ", ".join(model["keypoints"]["names"])),
             ("license", model["license"])]
    if c:
        facts.append(("complexity", f"{c['params'] / 1e6:.2f} M parameters, {c['flops'] / 1e6:.1f} M MACs"))
    paper = (f'<a href="{html.escape(model["paper"]["url"])}">{html.escape(model["paper"]["title"])}</a>'
             if model.get("paper") else "—")
    provenance = [f"<li>original <code>{html.escape(src['file'])}</code>, {src['bytes']} bytes, sha256 "
                  f'<span class="sha">{src["sha256"]}</span></li>']
    provenance += [f"<li>read with <code>{html.escape(x['file'])}</code>, {x['bytes']} bytes, sha256 "
                   f'<span class="sha">{x["sha256"]}</span></li>' for x in src.get("companions", [])]
    provenance += [f'<li>source: <a href="{html.escape(u)}">{html.escape(u)}</a></li>' for u in src.get("urls", [])]
    if "derived" in src:
        provenance.append(f"<li><b>not the publisher's file</b>: {html.escape(src['derived']['summary'])}</li>")
    if src.get("verified_as"):
        provenance.append(f"<li>handed over by the user, verified by its hash as the published "
                          f"{html.escape(src['verified_as']['name'])}</li>")
    elif src.get("user_supplied"):
        provenance.append("<li><b>user-supplied checkpoint</b>: its numbers say nothing about the published weights</li>")
    rows = []
    for r in report.artifact_rows(model, evals):
        if r["published"] is None:
            continue
        if r["published"]:
            link = f'<a href="../../{html.escape(r["artifact"])}" download>{html.escape(Path(r["artifact"]).name)}</a>'
            try_it = f'<a href="../try.html?model={mid}&amp;artifact={html.escape(r["artifact"])}">try</a>'
            verdict = f'<span class="{"pass" if r["parity"].get("passed") else "fail"}">{html.escape(report.parity_text(r["parity"]))}</span>'
        else:
            link, try_it = "(not published)", ""
            verdict = f'<span class="rejected">rejected: {html.escape(r["reason"])}</span>; {html.escape(report.parity_text(r["parity"]))}'
        rows.append(f"<tr><td>{link}</td><td>{r['format']}</td><td>{r['precision']}</td><td>{r['origin']}</td>"
                    f"<td>{_mb(r['bytes'])}</td><td class='sha'>{r['sha256'] or ''}</td><td>{verdict}</td>"
                    f"<td>{html.escape(report.accuracy_text(r['accuracy']))}</td>"
                    f"<td>{html.escape(_latency(bench, r['artifact']) if r['published'] else '')}</td><td>{try_it}</td></tr>")
    figures = "".join(f'<p><img alt="{html.escape(p)}" src="{html.escape(p)}"></p>' for p in pictures) or (
        '<p class="muted">No pictures yet: run <code>posezoo eval</code> on annotated photos, then '
        "<code>posezoo site</code> again.</p>")
    body = f"""<h1>{mid}</h1>
<p>{html.escape(model['title'])}. Paper: {paper}. <a href="../try.html?model={mid}">Try it</a> ·
<a href="{mid}.md">model card (Markdown)</a></p>
<table>{"".join(f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts)}</table>
<h2>Provenance</h2><ul>{"".join(provenance)}</ul>
<h2>Artifacts</h2>
<table><tr><th>file</th><th>format</th><th>precision</th><th>origin</th><th>size</th><th>sha256</th><th>parity</th>
<th>accuracy (change vs original)</th><th>latency</th><th></th></tr>{"".join(rows)}</table>
<h2>On real people</h2>
<p class="muted">Grey crosses: the annotation; lines: the original's and each artifact's keypoints.</p>{figures}
<h2>Intended use and limits</h2><ul>{"".join(f"<li>{html.escape(line[2:])}</li>" for line in report.limits(model, evals))}</ul>"""
    return _page(f"posezoo: {model['id']}", body, depth=1)


def add_arguments(p) -> None:
    p.add_argument("directory", type=Path, help="a build folder with manifest.json (eval/ and bench.json are used "
                                                "where present)")
    p.add_argument("--images", type=Path, help="sample photos (with annotation files) for the try-it page; default: "
                                                "$POSEZOO_CALIBRATION_IMAGES")
    p.add_argument("--samples", type=int, default=MAX_SAMPLE_PHOTOS,
                   help=f"at most this many of those photos (default {MAX_SAMPLE_PHOTOS})")


def sample_photos(manifest: dict, images: Path | None) -> Path | None:
    """The try-it page's sample photos: --images, else $POSEZOO_CALIBRATION_IMAGES; None where neither
    is given (the page then takes your own photo or the webcam)."""
    from posezoo.converters.fingerprint import photos_for

    try:
        images = photos_for(manifest, images, "--images")
    except PosezooError:
        return None
    if not Path(images).is_dir():
        raise SiteError(f"photo folder {images} does not exist: pass --images DIR with photos of people "
                        "(and their annotation files) for the page")
    return Path(images)


def run(args) -> int:
    from posezoo.manifest import read_manifest

    directory = Path(args.directory)
    if not (directory / "manifest.json").is_file():
        raise SiteError(f"{directory} has no manifest.json: pass the --out folder of a posezoo build")
    images = sample_photos(read_manifest(directory / "manifest.json"), args.images)
    if args.samples < 0:
        raise SiteError(f"--samples {args.samples}: pass a count >= 0")
    page = write_site(directory, images, args.samples)
    print(f"wrote {page.parent}/ (index, a page per model, try.html){'' if images else '; no sample photos: pass --images'}")
    return 0
