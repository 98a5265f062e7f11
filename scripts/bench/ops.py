"""`posezoo bench-ops FILE.tflite [FILE.tflite ...]`: where the time of TFLite files goes, op by op,
side by side (an INT8 file beside its FP32 twin), on LiteRT's default kernels (XNNPACK), 1 thread.

Why: a file's total latency says whether an INT8 file is faster than its FP32 twin, not why it is
not. XNNPACK's int8 kernels are not faster than its float ones for every op on every CPU (issue
14: on this project's AVX-512-VNNI build machine BlazePose Lite's all-int8 file runs in 1.0x its
FP32 file's time; this table shows its depthwise convolutions 1.2-1.9x slower in int8, its 1x1
convolutions and additions about three times faster, and its float segmentation head the same).

How: every op of the file's main graph becomes a file of its own, holding that op alone with its
own weights and quantization (the file's flatbuffer with every other op removed; its non-constant
inputs become that file's inputs, fed deterministic values of their dtype, runner.make_input).
Each is timed alone: median of `--runs` inferences after `--warmup`, inputs set once before. Ops are summed by kind (op
type, kernel, input channels -> output channels, output size), which lines the files up where
their ops match (an INT8 file's QUANTIZE/DEQUANTIZE ops are rows of their own). An op of
constants alone (DEQUANTIZE of a weight: a float op on int8 or float16 weights) is listed at 0 ms,
as it runs once, when the file loads; the op that reads it is timed with it, its weights constant.
The sum of the one-op times is not the file's time (each op's call costs its own overhead, caches
are warm, and the runtime plans the whole graph at once), so the whole files' medians, timed
round-robin, are printed beside it."""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from posezoo.errors import PosezooError
from posezoo.scripts.bench.runner import make_input


class OpBenchError(PosezooError):
    """A file `bench-ops` cannot read."""


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("files", nargs="+", type=Path, metavar="FILE.tflite", help="TFLite files, e.g. an INT8 file and "
                                                                              "its FP32 twin")
    p.add_argument("--runs", type=int, default=20, help="timed inferences per op (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed inferences first (default 3)")
    p.add_argument("--top", type=int, default=25, help="kinds of op listed, the slowest first (default 25)")
    return p


def run(args) -> int:
    if args.runs < 1 or args.warmup < 0:
        raise OpBenchError("--runs must be >= 1 and --warmup >= 0")
    timings = [{"ops": time_ops(path, args.runs, args.warmup)} for path in args.files]
    for timing, ms in zip(timings, whole_files_ms(args.files, args.runs, args.warmup)):
        timing["file_ms"] = ms
    print(format_table([p.name for p in args.files], timings, args.top))
    return 0


def time_ops(path: Path, runs: int, warmup: int) -> list[dict]:
    """[{"kind", "type", "ms"}] of every op of the file's main graph, in graph order."""
    model = _read(path)
    operators = model.subgraphs[0].operators
    folded = {k for k, op in enumerate(operators) if _of_constants(model, op)}
    producer = {t: k for k, op in enumerate(operators) for t in op.outputs}
    ops = []
    with tempfile.TemporaryDirectory(prefix="posezoo-ops-") as scratch:
        for k, op in enumerate(operators):
            if k in folded:  # e.g. DEQUANTIZE of a weight: computed once, when the file loads
                ops.append({"kind": f"{_op_type(model, op)} of constants (once, at load)", "type": _op_type(model, op),
                            "ms": 0.0})
                continue
            one = Path(scratch) / f"op{k}.tflite"
            with_constants = sorted({producer[t] for t in op.inputs if producer.get(t) in folded}) + [k]
            one.write_bytes(_one_op_model(model, with_constants))
            ops.append({"kind": _kind(model, op), "type": _op_type(model, op), "ms": _median_ms(one, runs, warmup)})
            one.unlink()
    return ops


def whole_files_ms(paths: list[Path], runs: int, warmup: int) -> list[float]:
    """Median ms of each whole file, all loaded first and timed round-robin (one inference of each
    per repetition, as `posezoo bench` does), so machine noise hits them alike."""
    from posezoo.runtime import TFLiteRuntime

    loaded = [_loaded(TFLiteRuntime(path, 1)) for path in paths]
    times: list[list[float]] = [[] for _ in loaded]
    for repetition in range(warmup + runs):
        for k, interpreter in enumerate(loaded):
            start = time.perf_counter()
            interpreter.invoke()
            if repetition >= warmup:
                times[k].append((time.perf_counter() - start) * 1e3)
    return [statistics.median(t) for t in times]


def _read(path: Path):
    """The file's flatbuffer as objects (its buffers resolved)."""
    from ai_edge_litert.tools import flatbuffer_utils

    path = Path(path)
    what = "pass TFLite files (e.g. DIR/<model>/<model>_int8.tflite)"
    if path.suffix != ".tflite" or not path.is_file():
        raise OpBenchError(f"{path}: not a .tflite file; {what}")
    try:
        model = flatbuffer_utils.read_model_from_bytearray(bytearray(path.read_bytes()))
    except Exception as e:  # the flatbuffer library raises whatever the bytes make it trip on
        raise OpBenchError(f"{path}: not a TFLite flatbuffer ({type(e).__name__}); {what}") from None
    if not model.subgraphs or not model.subgraphs[0].operators:
        raise OpBenchError(f"{path}: a TFLite file without ops; {what}")
    return model


def _of_constants(model, op) -> bool:
    return not any(t >= 0 and not _is_constant(model, t) for t in op.inputs)


def _one_op_model(model, keep: list[int]) -> bytes:
    """The file's flatbuffer with only the ops `keep` of its main graph (one op, after the ops of
    constants that make its weights): the inputs they do not make are the graph's inputs, the last
    op's outputs its outputs, and only their own constants keep their data; no signature (it would
    name removed tensors)."""
    import copy

    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    one = copy.copy(model)
    graph = copy.copy(model.subgraphs[0])
    graph.operators = [model.subgraphs[0].operators[k] for k in keep]
    made = {t for op in graph.operators[:-1] for t in op.outputs}
    last = graph.operators[-1]
    graph.inputs = [t for t in last.inputs if t >= 0 and t not in made and not _is_constant(model, t)]
    graph.outputs = list(last.outputs)
    own = {graph.tensors[t].buffer for op in graph.operators for t in list(op.inputs) + list(op.outputs) if t >= 0}
    one.buffers = [b if i in own else schema.BufferT() for i, b in enumerate(model.buffers)]
    one.subgraphs = [graph] + list(model.subgraphs[1:])
    one.signatureDefs = []
    return bytes(flatbuffer_utils.convert_object_to_bytearray(one))


def _is_constant(model, tensor: int) -> bool:
    buffer = model.buffers[model.subgraphs[0].tensors[tensor].buffer]
    return buffer.data is not None and len(buffer.data) > 0


def _op_type(model, op) -> str:
    from ai_edge_litert.tools import flatbuffer_utils

    return flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) or f"op{op.opcodeIndex}"


def _kind(model, op) -> str:
    """What the op's cost depends on, the same for an op and its INT8 twin: e.g. "CONV_2D 1x1
    56->336 16x16", "DEPTHWISE_CONV_2D 5x5 x144 32x32", "ADD 1x256x256x8"."""
    tensors = model.subgraphs[0].tensors
    shape = [int(d) for d in tensors[op.outputs[0]].shape] if len(op.outputs) else []
    kind = _op_type(model, op)
    if kind in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(op.inputs) > 1:
        weights = [int(d) for d in tensors[op.inputs[1]].shape]
        cin = int(tensors[op.inputs[0]].shape[-1])
        size = "x".join(str(d) for d in shape[1:3])
        if kind == "DEPTHWISE_CONV_2D":
            return f"{kind} {weights[1]}x{weights[2]} x{weights[3]} {size}"
        grouped = " grouped" if weights[3] != cin else ""
        return f"{kind} {weights[1]}x{weights[2]} {cin}->{weights[0]}{grouped} {size}"
    return f"{kind} {'x'.join(str(d) for d in shape)}"


def _median_ms(path: Path, runs: int, warmup: int) -> float:
    from posezoo.runtime import TFLiteRuntime

    interpreter = _loaded(TFLiteRuntime(path, 1))
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _loaded(runtime):
    """The runtime's interpreter with its inputs set once: what is timed is the ops' work alone, not
    copying their inputs in (a 256x256x8 float input is 2 MB, four times its int8 twin)."""
    runtime.invoke({d["name"]: make_input(d["shape"], d["dtype"]) for d in runtime.inputs})
    return runtime.interpreter


def by_kind(timing: dict) -> dict[str, tuple[int, float]]:
    """{kind: (how many ops, their summed ms)}."""
    kinds: dict[str, tuple[int, float]] = {}
    for op in timing["ops"]:
        n, ms = kinds.get(op["kind"], (0, 0.0))
        kinds[op["kind"]] = (n + 1, ms + op["ms"])
    return kinds


def format_table(names: list[str], timings: list[dict], top: int) -> str:
    """Kinds of op (slowest in any file first), each file's op count and summed ms, and the
    last file's ms over the first's (`x first`); then every kind's total and the whole files."""
    kinds = [by_kind(t) for t in timings]
    every = sorted({k for ks in kinds for k in ks}, key=lambda k: -max(ks.get(k, (0, 0.0))[1] for ks in kinds))
    width = max([len(k) for k in every[:top]] + [24])
    columns = [max(28, len(n)) for n in names]  # a cell is "N ops  MS ms"; a column is as wide as its file's name
    head = f"{'op kind':{width}s}" + "".join(f" | {n:>{c}s}" for n, c in zip(names, columns))
    ratio = len(names) > 1
    lines = [head + (" | last/first" if ratio else ""), "-" * (len(head) + (13 if ratio else 0))]

    def row(label: str, values: list[tuple[int, float]]) -> str:
        cells = "".join(f" | {f'{n} ops {ms:8.3f} ms' if n else '-':>{c}s}" for (n, ms), c in zip(values, columns))
        first, last = values[0][1], values[-1][1]
        return f"{label:{width}s}" + cells + (f" | {last / first:10.2f}" if ratio and first and last else "")

    for kind in every[:top]:
        lines.append(row(kind, [ks.get(kind, (0, 0.0)) for ks in kinds]))
    rest = every[top:]
    if rest:
        lines.append(row(f"({len(rest)} other kinds)", [(sum(ks.get(k, (0, 0.0))[0] for k in rest),
                                                          sum(ks.get(k, (0, 0.0))[1] for k in rest)) for ks in kinds]))
    lines.append(row("sum of the ops alone", [(len(t["ops"]), sum(op["ms"] for op in t["ops"])) for t in timings]))
    lines.append(row("the whole file", [(1, t["file_ms"]) for t in timings]))
    lines.append("note: LiteRT's default kernels (XNNPACK), 1 thread; each op timed alone in a file of its own")
    return "\n".join(lines)
