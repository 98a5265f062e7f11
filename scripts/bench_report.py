"""The benchmark as Markdown and an SVG scatter, from `posezoo bench ... --json > ROWS.json`.

    python -m posezoo.scripts.bench_report ROWS.json [--markdown OUT.md] [--svg OUT.svg] [--threads 1]

Markdown: the table `posezoo bench` prints, one row per (file, thread count). SVG: one point per
file, x = median latency at 1 thread (ms; the `--threads` count), y = keypoint error, 1 - parity
PCK@0.02 from the manifest (the original itself: 0; publisher files without parity numbers are
left out and named under the plot). Hand-written SVG, no plotting library. Defaults: ROWS.md and
ROWS.svg beside the JSON file.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from xml.sax.saxutils import escape

from posezoo.scripts.bench.table import COLUMNS, columns_of, row_cells


def markdown_table(rows: list[dict], title: str = "posezoo benchmark") -> str:
    columns = columns_of(rows)
    numeric = {3, 4, 5, 6, 7, 8, 9, 10, len(COLUMNS), len(COLUMNS) + 1}
    head = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---:" if i in numeric else "---" for i in range(len(columns))) + "|"
    body = ["| " + " | ".join(c.replace("|", "\\|") for c in row_cells(r, columns)) + " |" for r in rows]
    notes = [
        "",
        "- lat/fp32, size/fp32: against our FP32 file of the same model and format, same thread count "
        "(< 1: faster, smaller).",
        "- lat/vendor: against the publisher's own file of the same model (same thread count).",
        "- int8 choice: tensors the mixed-precision plan takes out of int8 (`quantization.raised_tensors`), share of "
        "the weight bytes stored as int8 (`quantization.int8_weight_share`) and activation bits.",
        "- targets (INT8 TFLite of ours; reported, not enforced): speed = latency <= 0.8x our FP32 TFLite "
        "at 1 thread; vendor = not slower than the publisher's file; size = <= 0.35x the FP32 file "
        "(0.40x where it is under 3 MB).",
        *(["- web ms: the site's try-it page in headless Chromium, wasm at the same thread count; web/native: "
           "web ms over median ms."] if len(columns) > len(COLUMNS) else []),
    ]
    errors = [f"- {r['file']} ({r['threads']} threads): {r['error']}" for r in rows if r.get("error")]
    return "\n".join([f"# {title}", "", head, rule, *body, *notes, *errors]) + "\n"


# --------------------------------------------------------------------------------------------
# SVG scatter

COLORS = {"fp32": "#1f77b4", "fp16": "#2ca02c", "int8": "#ff7f0e", None: "#7f7f7f"}


def _nice_step(span: float, target: int = 5) -> float:
    raw = span / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _linear_ticks(lo: float, hi: float) -> list[float]:
    step = _nice_step(hi - lo)
    start = math.floor(lo / step) * step
    ticks, v = [], start
    while v <= hi + step * 1e-9:
        if v >= lo - step * 1e-9:
            ticks.append(round(v, 10))
        v += step
    return ticks


def _log_ticks(lo: float, hi: float) -> list[float]:
    ticks = []
    for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            v = m * 10 ** e
            if lo <= v <= hi:
                ticks.append(v)
    return ticks


def _label(row: dict, prefix: str = "") -> str:
    model = row["model"][len(prefix):] if prefix and row["model"].startswith(prefix) else row["model"]
    origin = "" if row["origin"] == "converted" else " vendor"
    return f"{model} {row['format']} {row['precision'] or '?'}{origin}"


def _common_prefix(ids: list[str]) -> str:
    """The family part all model ids share ("efficientpose-"), dropped from the point labels."""
    if len(set(ids)) < 2:
        return ""
    first, last = min(ids), max(ids)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    cut = first[:n].rfind("-")
    return first[:cut + 1] if cut >= 0 else ""


def _place_labels(marks: list[tuple[float, float, str]], box: tuple[float, float, float, float],
                  char_w: float = 5.4, h: float = 10.0) -> list[tuple[float, float, str] | None]:
    """Greedy label placement: beside, above or below each marker, inside `box` (x0, y0, x1, y1),
    overlapping no marker and no label placed before; None where no place is free (the point's
    <title> still names it)."""
    taken = [(x - 5, y - 5, x + 5, y + 5) for x, y, _ in marks]
    placed = []
    for x, y, text in marks:
        w = len(text) * char_w
        spot = None
        for dx, dy in ((7, 3), (7, -6), (7, 12), (-7 - w, 3), (-w / 2, -8), (-w / 2, 17), (-7 - w, -6), (-7 - w, 12)):
            tx, ty = x + dx, y + dy
            r = (tx, ty - h + 2, tx + w, ty + 2)
            if r[0] < box[0] or r[2] > box[2] or r[1] < box[1] or r[3] > box[3]:
                continue
            if any(not (r[2] <= o[0] or o[2] <= r[0] or r[3] <= o[1] or o[3] <= r[1]) for o in taken):
                continue
            spot = (tx, ty, text)
            taken.append(r)
            break
        placed.append(spot)
    return placed


def scatter_points(rows: list[dict], threads: int = 1) -> tuple[list[dict], list[str]]:
    """(points, left out): one point per file at `threads` threads with x = median ms, y = 1 - PCK@0.02."""
    points, left_out = [], []
    prefix = _common_prefix([r["model"] for r in rows])
    for r in rows:
        if r["threads"] != threads or r.get("median_ms") is None:
            continue
        if r.get("pck@0.02") is None:
            left_out.append(r["file"])
            continue
        points.append({"x": r["median_ms"], "y": max(0.0, 1.0 - r["pck@0.02"]), "label": _label(r, prefix), "row": r})
    return points, left_out


def _fmt_tick(v: float) -> str:
    return f"{v:g}"


def scatter_svg(rows: list[dict], threads: int = 1, width: int = 760, height: int = 480) -> str:
    points, left_out = scatter_points(rows, threads)
    left, right, top, bottom = 70, 190, 40, 60
    pw, ph = width - left - right, height - top - bottom
    xs = [p["x"] for p in points] or [1.0]
    ys = [p["y"] for p in points] or [0.0]
    xlo, xhi = min(xs), max(xs)
    log_x = xlo > 0 and xhi / xlo >= 10
    if log_x:
        xlo, xhi = xlo / 1.25, xhi * 1.25
        xticks = _log_ticks(xlo, xhi)
        if len(xticks) < 2:
            xticks = [xlo, xhi]

        def sx(v):
            return left + (math.log10(v) - math.log10(xlo)) / (math.log10(xhi) - math.log10(xlo)) * pw
    else:
        pad = (xhi - xlo) * 0.1 or max(xhi * 0.1, 0.1)
        xlo, xhi = max(0.0, xlo - pad), xhi + pad
        xticks = _linear_ticks(xlo, xhi)

        def sx(v):
            return left + (v - xlo) / (xhi - xlo) * pw
    yhi = max(max(ys) * 1.1, 0.01)
    ystep = _nice_step(yhi)
    yhi = math.ceil(yhi / ystep - 1e-9) * ystep
    yticks = _linear_ticks(0.0, yhi)

    def sy(v):
        return top + ph - v / yhi * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left + pw / 2:.1f}" y="22" text-anchor="middle" font-size="14">'
           f'Latency vs keypoint error ({threads} thread{"s" if threads != 1 else ""})</text>']
    for v in xticks:
        x = sx(v)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + ph}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle">{_fmt_tick(v)}</text>')
    for v in yticks:
        y = sy(v)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt_tick(v)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 22}" text-anchor="middle">median latency, ms'
               f'{" (log scale)" if log_x else ""}</text>')
    out.append(f'<text transform="translate(18,{top + ph / 2:.1f}) rotate(-90)" text-anchor="middle">'
               f'keypoint error: 1 - PCK@0.02 vs the original</text>')
    marks = []
    for p in sorted(points, key=lambda p: (p["x"], p["y"])):
        r = p["row"]
        x, y = sx(p["x"]), sy(p["y"])
        marks.append((x, y, p["label"]))
        color = COLORS.get(r["precision"], COLORS[None])
        fill = color if r["origin"] == "converted" else "white"
        tip = escape(f"{r['file']}: {p['x']:.3f} ms, 1 - PCK@0.02 = {p['y']:.4f}")
        if r["format"] == "onnx":
            out.append(f'<rect class="point" x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="{fill}" '
                       f'stroke="{color}" stroke-width="1.5"><title>{tip}</title></rect>')
        else:
            out.append(f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="{fill}" '
                       f'stroke="{color}" stroke-width="1.5"><title>{tip}</title></circle>')
    for spot in _place_labels(marks, (left, top, left + pw, top + ph)):
        if spot:
            out.append(f'<text x="{spot[0]:.1f}" y="{spot[1]:.1f}" font-size="9" fill="#444">{escape(spot[2])}</text>')
    # legend
    lx, ly = left + pw + 16, top + 8
    entries = [("fp32", "FP32"), ("fp16", "FP16"), ("int8", "INT8")]
    for i, (k, name) in enumerate(entries):
        y = ly + i * 18
        out.append(f'<circle cx="{lx + 5}" cy="{y}" r="4.5" fill="{COLORS[k]}" stroke="{COLORS[k]}"/>')
        out.append(f'<text x="{lx + 16}" y="{y + 4}">{name}</text>')
    y = ly + len(entries) * 18 + 6
    out.append(f'<circle cx="{lx + 5}" cy="{y}" r="4.5" fill="#999" stroke="#999"/>'
               f'<text x="{lx + 16}" y="{y + 4}">TFLite (circle)</text>')
    y += 18
    out.append(f'<rect x="{lx + 1}" y="{y - 4}" width="8" height="8" fill="#999" stroke="#999"/>'
               f'<text x="{lx + 16}" y="{y + 4}">ONNX (square)</text>')
    y += 18
    out.append(f'<circle cx="{lx + 5}" cy="{y}" r="4.5" fill="white" stroke="#999" stroke-width="1.5"/>'
               f'<text x="{lx + 16}" y="{y + 4}">publisher\'s file (hollow)</text>')
    if left_out:
        y += 26
        out.append(f'<text x="{lx}" y="{y}" font-size="9">no parity numbers (not plotted):</text>')
        for name in left_out:
            y += 12
            out.append(f'<text x="{lx}" y="{y}" font-size="9">{escape(name)}</text>')
    if not points:
        out.append(f'<text x="{left + pw / 2:.1f}" y="{top + ph / 2:.1f}" text-anchor="middle">'
                   f'no file timed at {threads} thread(s) with parity numbers</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench_report", description=__doc__.split("\n\n")[0])
    p.add_argument("rows", type=Path, help="the JSON `posezoo bench --json` printed")
    p.add_argument("--markdown", type=Path, help="default: ROWS.md")
    p.add_argument("--svg", type=Path, help="default: ROWS.svg")
    p.add_argument("--threads", type=int, default=1, help="the thread count the scatter plots (default 1)")
    args = p.parse_args(argv)
    try:
        rows = json.loads(args.rows.read_text())
    except (OSError, json.JSONDecodeError) as e:
        print(f"error: {args.rows}: {e}", file=sys.stderr)
        return 2
    if not isinstance(rows, list):
        print(f"error: {args.rows}: expected the list of rows `posezoo bench --json` prints", file=sys.stderr)
        return 2
    md = args.markdown or args.rows.with_suffix(".md")
    svg = args.svg or args.rows.with_suffix(".svg")
    md.write_text(markdown_table(rows))
    svg.write_text(scatter_svg(rows, args.threads))
    print(f"wrote {md} and {svg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
