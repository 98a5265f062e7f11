"""`posezoo bench DIR/manifest.json`: latency, peak memory and size of every artifact, beside the
publisher's own files of the same model.

    posezoo bench DIR/manifest.json [--ids ID ...] [--threads 1,2] [--runs N] [--warmup N] [--json]
                  [--mirror DIR] [--cache DIR] [--vendor-file MODEL_ID=PATH ...]

What runs:
- every artifact of the manifest (or of the models `--ids` names), at each thread count: .tflite
  in the LiteRT interpreter with its default kernels (XNNPACK, `num_threads=t`), .onnx in ONNX
  Runtime's CPU provider (`intra_op_num_threads=t`, `inter_op_num_threads=1`);
- the publisher's own files of the same model, where they exist: (a) artifacts published as they
  are (`origin: vendor`); (b) the model's original when it is a .tflite (`source.file`), taken from
  the content-addressed cache (`POSEZOO_CACHE` or ~/.cache/posezoo, `sha256/<2 hex>/<sha256>/<file>`)
  or from `--mirror DIR` (default $POSEZOO_MIRROR; matched by file name), sha256-verified; (c) any
  file `--vendor-file MODEL_ID=PATH` names (e.g. the EfficientPose authors' TFLite exports of the
  models whose originals are Keras files).

How:
- each (file, thread count) runs in a fresh process of its own (`python -m scripts.bench --one`),
  so its peak RSS (VmHWM; `getrusage(RUSAGE_SELF).ru_maxrss` where there is no /proc) is that of
  this run alone; a baseline process that only imports the same runtime is subtracted;
- all files of a thread count are loaded and warmed up first, then timed round-robin, one
  inference per file per repetition, so machine noise hits them all alike;
- the input is deterministic, zero-free, of each file's own input shape and dtype (the manifest's
  `io`; for publisher files, the file's own, resized to the model's input shape when dynamic);
- the time of one inference is: set the inputs, invoke, read the outputs (TFLite), or
  `session.run` (ONNX Runtime).

`--web`: each artifact of the manifest also runs in the posezoo page (zoo/web) in headless
Chromium, ONNX on ONNX Runtime Web and TFLite on LiteRT.js, wasm, 1 thread: the `web ms` column is
the median of `--runs` real runs after one warm-up (the same value on every thread-count row).

Targets (reported, never asserted) for each INT8 TFLite of ours: >= 1.5x faster than our FP32
TFLite at 1 thread, not slower than the publisher's file, <= 0.3x the FP32 file's size.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from converters.sources import default_cache_dir, sha256_of

REPO = Path(__file__).resolve().parents[1]
EXIT_WORKER_FAILED = 1
EXIT_BAD_INPUT = 2

SPEED_TARGET = 1.5  # INT8 TFLite vs our FP32 TFLite, 1 thread: at least this many times faster
SIZE_TARGET = 0.3  # INT8 TFLite file vs our FP32 TFLite file: at most this share of its size


class BenchError(ValueError):
    """Bad input: a missing manifest, artifact or vendor file, an unknown model id."""


# --------------------------------------------------------------------------------------------
# What to run


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
            fmt = path.suffix.lstrip(".")
            if fmt not in ("onnx", "tflite"):
                raise BenchError(f"{path}: a vendor file must be .onnx or .tflite")
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


# --------------------------------------------------------------------------------------------
# The worker: one file, one thread count, one process


def make_input(shape, dtype) -> np.ndarray:
    """A deterministic input with no zero in it: pixel-like values 1..255 in a fixed scramble,
    as they are for uint8, shifted by -128 for int8 (0 -> 1), over 255 for float."""
    shape = [int(d) for d in shape]
    n = int(np.prod(shape)) if shape else 1
    pix = (np.arange(n, dtype=np.int64) * 7919 + 13) % 255 + 1
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        x = pix.astype(np.uint8)
    elif dtype == np.int8:
        v = pix - 128
        x = np.where(v == 0, 1, v).astype(np.int8)
    elif np.issubdtype(dtype, np.integer):
        x = pix.astype(dtype)
    else:
        x = (pix / 255.0).astype(dtype)
    return x.reshape(shape)


def _concrete(shape, hint) -> list[int]:
    """Symbolic or unknown dims (None, 'batch', -1) from the hint where it has the same rank, else 1."""
    out = []
    for i, d in enumerate(shape):
        if isinstance(d, (int, np.integer)) and d > 0:
            out.append(int(d))
        elif hint is not None and len(hint) == len(shape):
            out.append(int(hint[i]))
        else:
            out.append(1)
    return out


def _tflite_precision(interpreter, input_dtypes) -> str:
    dtypes = {np.dtype(d["dtype"]).name for d in interpreter.get_tensor_details()}
    if any(np.dtype(d).name in ("int8", "uint8") for d in input_dtypes) or "int8" in dtypes:
        return "int8"
    return "fp16" if "float16" in dtypes else "fp32"


class _Model:
    """One loaded file, ready to infer on its deterministic input."""

    def __init__(self, path: str, fmt: str, threads: int, inputs, hint):
        self.notes: list[str] = []
        wanted = {i["name"]: i for i in inputs or []}
        order = list(inputs or [])
        if fmt == "tflite":
            from ai_edge_litert.interpreter import Interpreter

            self.interp = Interpreter(model_path=path, num_threads=threads)
            details = self.interp.get_input_details()
            resized = False
            for k, d in enumerate(details):
                spec = wanted.get(d["name"]) or (order[k] if k < len(order) else None)
                sig = d.get("shape_signature", d["shape"]).tolist()
                want = _concrete(spec["shape"] if spec else sig, hint)
                if list(d["shape"]) != want or any(s < 0 for s in sig):
                    self.interp.resize_tensor_input(d["index"], want, strict=False)
                    resized = True
                    self.notes.append(f"input {d['name']} {sig} resized to {want}")
            self.interp.allocate_tensors()
            details = self.interp.get_input_details()
            self.outputs = [d["index"] for d in self.interp.get_output_details()]
            self.feeds = []
            for k, d in enumerate(details):
                spec = wanted.get(d["name"]) or (order[k] if k < len(order) else None)
                dtype = np.dtype(d["dtype"])
                if spec and np.dtype(spec["dtype"]) != dtype:
                    self.notes.append(f"input {d['name']}: the file takes {dtype.name}, the manifest says {spec['dtype']}")
                self.feeds.append((d["index"], make_input(d["shape"], dtype)))
            self.info = {"inputs": [{"name": d["name"], "shape": d["shape"].tolist(), "dtype": np.dtype(d["dtype"]).name}
                                    for d in details],
                         "precision": _tflite_precision(self.interp, [d["dtype"] for d in details]), "resized": resized}
            self.run = self._run_tflite
        elif fmt == "onnx":
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
            types = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int8)": "int8",
                     "tensor(uint8)": "uint8", "tensor(int32)": "int32", "tensor(int64)": "int64"}
            self.feeds = {}
            info = []
            for k, v in enumerate(self.session.get_inputs()):
                spec = wanted.get(v.name) or (order[k] if k < len(order) else None)
                dtype = np.dtype(types.get(v.type, "float32"))
                if spec and np.dtype(spec["dtype"]) != dtype:
                    self.notes.append(f"input {v.name}: the file takes {dtype.name}, the manifest says {spec['dtype']}")
                shape = _concrete(v.shape if not spec else [a if isinstance(a, int) else b
                                                             for a, b in zip(spec["shape"], v.shape)], hint)
                self.feeds[v.name] = make_input(shape, dtype)
                info.append({"name": v.name, "shape": shape, "dtype": dtype.name})
            self.info = {"inputs": info, "precision": None, "resized": False}
            self.run = self._run_onnx
        else:
            raise ValueError(f"{path}: no runtime for {fmt!r} files")

    def _run_tflite(self):
        for index, x in self.feeds:
            self.interp.set_tensor(index, x)
        self.interp.invoke()
        for index in self.outputs:
            self.interp.get_tensor(index)

    def _run_onnx(self):
        self.session.run(None, self.feeds)


def _maxrss_kb() -> int:
    """This process's peak resident set size, KiB: VmHWM of /proc/self/status (the peak of this
    program's own memory map; getrusage's ru_maxrss also counts the parent's pages a fork copied
    before exec), else getrusage."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB on Linux


def _import_runtime(fmt: str) -> None:
    if fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter  # noqa: F401
    else:
        import onnxruntime  # noqa: F401


def worker_main() -> int:
    """`python -m scripts.bench --one`: JSON lines in on stdin, JSON lines out on the original stdout
    (native libraries' prints go to stderr)."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)

    def reply(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    model = None
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg["cmd"]
        try:
            if cmd == "load":
                model = _Model(msg["path"], msg["format"], msg["threads"], msg.get("inputs"), msg.get("hint"))
                reply({"ok": True, **model.info, "notes": model.notes})
            elif cmd == "warmup":
                for _ in range(msg["n"]):
                    model.run()
                reply({"ok": True})
            elif cmd == "run":
                start = time.monotonic_ns()
                t0 = time.perf_counter()
                model.run()
                ms = (time.perf_counter() - t0) * 1e3
                reply({"ok": True, "ms": ms, "start_ns": start})
            elif cmd == "exit":
                reply({"ok": True, "maxrss_kb": _maxrss_kb()})
                return 0
        except Exception as e:  # reported to the parent, which marks this file's rows
            reply({"ok": False, "error": f"{type(e).__name__}: {e}"})
            if cmd == "load":
                return 1
    return 0


def baseline_main(fmt: str) -> int:
    """`python -m scripts.bench --baseline FMT`: peak RSS of a process that only imports the runtime."""
    _import_runtime(fmt)
    print(json.dumps({"maxrss_kb": _maxrss_kb()}))
    return 0


def _child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def baseline_kb(fmt: str) -> int:
    res = subprocess.run([sys.executable, "-m", "scripts.bench", "--baseline", fmt], capture_output=True,
                         text=True, env=_child_env(), cwd=str(REPO), check=True)
    return int(json.loads(res.stdout.strip().splitlines()[-1])["maxrss_kb"])


class Worker:
    """A child process holding one loaded file."""

    def __init__(self, target: Target, threads: int):
        self.target, self.threads = target, threads
        self.error: str | None = None
        self.info: dict = {}
        self.times: list[float] = []
        self.starts: list[int] = []
        self.maxrss_kb: int | None = None
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "scripts.bench", "--one"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1,
                                     env=_child_env(), cwd=str(REPO))

    def send(self, **msg) -> dict | None:
        if self.error:
            return None
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            self.error = f"worker died ({msg['cmd']}): {self._stderr_tail()}"
            return None
        ans = json.loads(line)
        if not ans.get("ok"):
            self.error = ans.get("error", "failed")
            return None
        return ans

    def load(self):
        t = self.target
        ans = self.send(cmd="load", path=str(t.path), format=t.format, threads=self.threads, inputs=t.inputs,
                        hint=t.shape_hint)
        if ans:
            self.info = ans

    def _stderr_tail(self) -> str:
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.log.seek(0)
        lines = [x for x in self.log.read().splitlines() if x.strip() and not x.startswith("INFO:")]
        return " | ".join(lines[-3:]) or f"exit code {self.proc.returncode}"

    def close(self):
        ans = self.send(cmd="exit")
        if ans:
            self.maxrss_kb = ans["maxrss_kb"]
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@dataclass
class Measurement:
    target: Target
    threads: int
    times_ms: list[float] = field(default_factory=list)
    peak_kb: int | None = None  # the run's process peak RSS minus the runtime-only baseline
    info: dict = field(default_factory=dict)
    error: str | None = None


def measure(targets: list[Target], threads=(1,), runs: int = 20, warmup: int = 3, pause_ms: float = 2.0,
            progress: bool = True, trace: list | None = None) -> list[Measurement]:
    """Time every target at every thread count: per thread count, one fresh process per target,
    all loaded and warmed up, then `runs` repetitions of one inference per target, round-robin.

    `trace` (a list) receives (target index, threads, repetition, start_ns) in the order run."""
    from tqdm import tqdm

    baselines = {fmt: baseline_kb(fmt) for fmt in sorted({t.format for t in targets})}
    results: dict[tuple[int, int], Measurement] = {}
    bar = tqdm(total=len(threads) * len(targets) * runs, desc="bench", unit="run", file=sys.stderr,
               disable=None if progress else True, leave=False)
    try:
        for th in threads:
            workers = [Worker(t, th) for t in targets]  # the processes start (import) in parallel
            try:
                for w in workers:
                    w.load()
                for w in workers:
                    w.send(cmd="warmup", n=warmup)
                for rep in range(runs):
                    for i, w in enumerate(workers):
                        ans = w.send(cmd="run")
                        if ans:
                            w.times.append(ans["ms"])
                            if trace is not None:
                                trace.append((i, th, rep, ans["start_ns"]))
                        bar.update(1)
                        if pause_ms:
                            time.sleep(pause_ms / 1e3)
            finally:
                for w in workers:
                    w.close()
            for i, w in enumerate(workers):
                peak = None if w.maxrss_kb is None else w.maxrss_kb - baselines[w.target.format]
                results[i, th] = Measurement(w.target, th, w.times, peak, w.info, w.error)
    finally:
        bar.close()
    return [results[i, th] for i in range(len(targets)) for th in threads]


# --------------------------------------------------------------------------------------------
# Rows


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
            "quantized_share": (t.quantization or {}).get("quantized_share"),
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


def web_latencies(manifest_path: Path, manifest: dict, ids, runs: int, images: Path | None) -> dict[str, float]:
    """{artifact path: median ms in the page, 1 thread wasm} for the manifest's artifacts."""
    from scripts.browser import BrowserError, Page
    from scripts.serve import build_images
    from scripts.webserver import ServeError

    medians = {}
    try:
        images = images or build_images(manifest)
        with Page(manifest_path.parent, images) as page:
            for model in manifest["models"]:
                if ids and model["id"] not in ids:
                    continue
                for art in model["artifacts"]:
                    times = page.latencies(model["id"], art["path"], runs)
                    medians[str(manifest_path.parent / art["path"])] = round(statistics.median(times), 2)
    except (BrowserError, ServeError) as e:
        raise BenchError(f"--web: {e}") from None
    return medians


def _targets(row: dict, rows: list[dict]) -> dict | None:
    """For INT8 TFLite files of ours: which targets are met (True/False; None: nothing to compare)."""
    if not (row["format"] == "tflite" and row["precision"] == "int8" and row["origin"] == "converted"):
        return None
    speed = None
    one = next((r for r in rows if r["path"] == row["path"] and r["threads"] == 1), None)
    if one and one["lat_vs_fp32"]:
        speed = one["lat_vs_fp32"] <= 1 / SPEED_TARGET
    vendor = None if row["lat_vs_vendor"] is None else row["lat_vs_vendor"] <= 1.0
    size = None if row["size_vs_fp32"] is None else row["size_vs_fp32"] <= SIZE_TARGET
    return {"speed_1.5x_fp32_at_1_thread": speed, "not_slower_than_vendor": vendor, "size_0.3x_fp32": size}


def targets_text(targets: dict | None) -> str:
    if not targets:
        return ""
    names = {"speed_1.5x_fp32_at_1_thread": "speed", "not_slower_than_vendor": "vendor", "size_0.3x_fp32": "size"}
    return " ".join(f"{names[k]}:{'n/a' if v is None else ('ok' if v else 'MISS')}" for k, v in targets.items())


def int8_choice_text(row: dict) -> str:
    """q: share of ops quantized; w: share of weights stored in int8; a: activation bits."""
    parts = []
    if row.get("quantized_share") is not None:
        parts.append(f"q={row['quantized_share']:.2f}")
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


def format_table(rows: list[dict]) -> str:
    web = any("web_ms" in r for r in rows)
    columns = COLUMNS + ["web ms"] if web else COLUMNS
    cells = [columns] + [table_cells(r) + ([_f(r.get("web_ms"), "{:.1f}")] if web else []) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    numeric = {3, 4, 5, 6, 7, 8, 9, 10, len(COLUMNS)}
    lines = []
    for k, c in enumerate(cells):
        lines.append("  ".join(x.rjust(w) if (i in numeric and k) else x.ljust(w)
                               for i, (x, w) in enumerate(zip(c, widths))).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Command line


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
    p.add_argument("--web", action="store_true", help="also time each artifact in the web page (headless Chromium, "
                                                      "1 thread wasm): the `web ms` column")
    p.add_argument("--images", type=Path, help="photos for the page (--web); default: those the build used")
    p.add_argument("--json", action="store_true", help="print the rows as JSON (progress and notes on stderr)")
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
        web = web_latencies(manifest_path, manifest, ids, args.runs, args.images)
        for r in rows:
            if r["path"] in web:
                r["web_ms"] = web[r["path"]]
        notes.append("web ms: the page in headless Chromium (no WebGPU adapter here: wasm only), 1 thread")
    notes.insert(0, f"machine: {machine}; {args.runs} runs after {args.warmup} warm-up per file and thread count, "
                    f"round-robin; peak MiB = the run's process peak RSS minus a process that only imports the runtime")
    for r in rows:
        if r["error"]:
            notes.append(f"{r['file']} ({r['threads']} threads): {r['error']}")
    if args.json:
        print(json.dumps(rows, indent=2))
        for n in notes:
            print(f"note: {n}", file=sys.stderr)
    else:
        print(format_table(rows))
        for n in notes:
            print(f"note: {n}")
    return EXIT_WORKER_FAILED if any(r["error"] for r in rows) else 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--one"]:
        return worker_main()
    if argv[:1] == ["--baseline"]:
        return baseline_main(argv[1])
    args = add_arguments(argparse.ArgumentParser(prog="posezoo bench", description=__doc__.split("\n\n")[0])).parse_args(argv)
    try:
        return run(args)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
