"""Rows: one per (file, thread count), with the latency statistics, the ratios against our FP32
file and the publisher's file of the same model, and the INT8 targets (the `--json` output)."""
from __future__ import annotations

import statistics

import numpy as np

from posezoo.converters.int8_targets import LATENCY_TARGET, size_limit
from posezoo.scripts.bench.measure import Measurement

def activation_bits(quantization: dict | None) -> int | None:
    if not quantization:
        return None
    if isinstance(quantization.get("activation_bits"), int):
        return quantization["activation_bits"]
    import re

    m = re.search(r"(\d+)", str(quantization.get("activations", "")))
    return int(m.group(1)) if m else None


def _ratio(a, b):
    return round(a / b, 4) if a is not None and b else None


def _vendor_preference(row: dict, vendor: dict) -> tuple:
    """Which publisher file a row is compared with: same format, same precision, same kind (integer
    or float), in that order; then the first listed."""
    return (vendor["format"] != row["format"], vendor["precision"] != row["precision"],
            (vendor["precision"] == "int8") != (row["precision"] == "int8"))


def make_rows(measurements: list[Measurement]) -> list[dict]:
    """One row per (file, thread count), with the ratios against our FP32 file of the same format
    and the publisher's file of the same model (same thread count), and the INT8 targets."""
    rows = []
    for m in measurements:
        t = m.target
        times = m.times_ms
        rows.append({
            "model": t.model, "file": t.name, "path": str(t.path), "format": t.format,
            "precision": t.precision or (m.info or {}).get("precision"), "origin": t.origin,
            "vendor_source": t.vendor_source, "threads": m.threads, "runs": len(times),
            "median_ms": round(statistics.median(times), 4) if times else None,
            "p90_ms": round(float(np.percentile(times, 90)), 4) if times else None,
            "min_ms": round(min(times), 4) if times else None,
            "peak_mb": round(m.peak_kb / 1024, 2) if m.peak_kb is not None else None,
            "file_mb": round(t.bytes / 2**20, 4), "bytes": t.bytes,
            "inputs": (m.info or {}).get("inputs") or t.inputs,
            "raised_tensors": (t.quantization or {}).get("raised_tensors"),
            "int8_weight_share": (t.quantization or {}).get("int8_weight_share"),
            "activation_bits": activation_bits(t.quantization) if (t.precision == "int8" and t.ours) else None,
            "pck@0.02": t.pck02, "error": m.error,
        })
    for row in rows:
        fp32 = next((r for r in rows if r["model"] == row["model"] and r["format"] == row["format"]
                     and r["threads"] == row["threads"] and r["precision"] == "fp32" and r["origin"] == "converted"),
                    None)
        row["fp32_ref"] = fp32["file"] if fp32 else None
        row["lat_vs_fp32"] = _ratio(row["median_ms"], fp32 and fp32["median_ms"])
        row["size_vs_fp32"] = _ratio(row["bytes"], fp32 and fp32["bytes"])
        vendors = sorted((r for r in rows if r["model"] == row["model"] and r["threads"] == row["threads"]
                          and r["origin"] == "vendor" and r is not row and r["median_ms"] is not None),
                         key=lambda v: _vendor_preference(row, v))
        vendor = vendors[0] if vendors and row["origin"] == "converted" else None
        row["vendor_ref"] = vendor["file"] if vendor else None
        row["lat_vs_vendor"] = _ratio(row["median_ms"], vendor and vendor["median_ms"])
    for row in rows:
        row["targets"] = _targets(row, rows)
    return rows



def _targets(row: dict, rows: list[dict]) -> dict | None:
    """For INT8 TFLite files of ours: which targets are met (True/False; None: nothing to compare)."""
    if not (row["format"] == "tflite" and row["precision"] == "int8" and row["origin"] == "converted"):
        return None
    speed = None
    one = next((r for r in rows if r["path"] == row["path"] and r["threads"] == 1), None)
    if one and one["lat_vs_fp32"]:
        speed = one["lat_vs_fp32"] <= LATENCY_TARGET
    vendor = None if row["lat_vs_vendor"] is None else row["lat_vs_vendor"] <= 1.0
    size = None
    if row["size_vs_fp32"]:
        size = row["size_vs_fp32"] <= size_limit(round(row["bytes"] / row["size_vs_fp32"]))
    return {"latency_0.8x_fp32_at_1_thread": speed, "not_slower_than_vendor": vendor, "size_0.35x_fp32": size}
