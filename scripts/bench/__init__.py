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
- each (file, thread count) runs in a fresh process of its own (`python -m posezoo.scripts.bench --one`),
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

Targets (converters/int8_targets.py, which the build enforces) for each INT8 TFLite of ours: latency
<= 0.8x our FP32 TFLite at 1 thread, not slower than the publisher's file, <= 0.35x the FP32
file's size (0.40x where that file is under 3 MB); here reported, never asserted.

The parts, one job each: `targets.py` (what to time), `runner.py` (one file in its runtime),
`worker.py` (the child process and its protocol), `measure.py` (the round-robin timing),
`rows.py` (statistics, ratios, INT8 targets), `table.py` (the text table), `web.py` (`--web`),
`cli.py` (arguments and the run); `__main__.py` starts the command or a worker. `ops.py` is
`posezoo bench-ops`: one TFLite file's ops timed one by one (where an INT8 file's time goes).
"""
from posezoo.scripts.bench.cli import add_arguments, main, run

__all__ = ["add_arguments", "main", "run"]
