"""The table `posezoo bench` prints (and `scripts/bench_report.py` turns into Markdown): its
columns, one row's cells, the aligned text."""
from __future__ import annotations


def targets_text(targets: dict | None) -> str:
    if not targets:
        return ""
    names = {"latency_0.8x_fp32_at_1_thread": "speed", "not_slower_than_vendor": "vendor", "size_0.35x_fp32": "size"}
    return " ".join(f"{names[k]}:{'n/a' if v is None else ('ok' if v else 'MISS')}" for k, v in targets.items())


def int8_choice_text(row: dict) -> str:
    """r: tensors the mixed-precision plan raises out of int8; w: share of weight bytes in int8; a: activation bits."""
    parts = []
    if row.get("raised_tensors") is not None:
        parts.append(f"r={row['raised_tensors']}")
    if row.get("int8_weight_share") is not None:
        parts.append(f"w={row['int8_weight_share']:.2f}")
    if row.get("activation_bits"):
        parts.append(f"a{row['activation_bits']}")
    return " ".join(parts)


def _f(x, fmt="{:.2f}", none="-"):
    return none if x is None else fmt.format(x)


COLUMNS = ["model", "file", "fmt/prec/origin", "thr", "median ms", "p90 ms", "peak MiB", "file MiB",
           "lat/fp32", "size/fp32", "lat/vendor", "int8 choice", "targets"]


def table_cells(row: dict) -> list[str]:
    origin = row["origin"] if row["origin"] == "converted" else f"vendor:{row['vendor_source']}"
    return [row["model"], row["file"], f"{row['format']}/{row['precision'] or '?'}/{origin}", str(row["threads"]),
            _f(row["median_ms"], "{:.3f}") if not row.get("error") else "ERROR", _f(row["p90_ms"], "{:.3f}"),
            _f(row["peak_mb"], "{:.1f}"), _f(row["file_mb"], "{:.2f}"), _f(row["lat_vs_fp32"]),
            _f(row["size_vs_fp32"]), _f(row["lat_vs_vendor"]), int8_choice_text(row), targets_text(row["targets"])]


WEB_COLUMNS = ["web ms", "web/native"]


def columns_of(rows: list[dict]) -> list[str]:
    """The columns, with the web ones where `--web` timed the page."""
    return COLUMNS + WEB_COLUMNS if any("web_ms" in r for r in rows) else COLUMNS


def row_cells(row: dict, columns: list[str]) -> list[str]:
    web = [_f(row.get("web_ms"), "{:.1f}"), _f(row.get("web_vs_native"))] if len(columns) > len(COLUMNS) else []
    return table_cells(row) + web


def format_table(rows: list[dict]) -> str:
    columns = columns_of(rows)
    cells = [columns] + [row_cells(r, columns) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    numeric = {3, 4, 5, 6, 7, 8, 9, 10, len(COLUMNS), len(COLUMNS) + 1}
    lines = []
    for k, c in enumerate(cells):
        lines.append("  ".join(x.rjust(w) if (i in numeric and k) else x.ljust(w)
                               for i, (x, w) in enumerate(zip(c, widths))).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
