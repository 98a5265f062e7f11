"""Golden vectors: the numbers a runtime (this one, the web page, an Android, iOS or C++ port)
proves itself against, step by step, on real people.

The build writes, for every published artifact, an index `<id>/golden/<artifact file>.json`
(named in the artifact's manifest entry under `golden`, with its sha256 and its data files). Each
of its `cases` is one real person, run through this package's loader on that artifact:

- `photo`: the photo (uint8, H x W x 3, RGB): the part of a calibration photo around the person;
- `call`: what the loader was called with: `{"box": [x, y, w, h]}` for `box` crops,
  `{"keypoints": {name: [x, y]}}` for `rotated_roi` crops, `{}` for `whole_image` crops;
- `matrix`: the crop, a 2x3 affine map from input pixels to photo pixels;
- `input`: the exact tensor the artifact was fed (its input `name`, the artifact's `layout`);
- `outputs`: the artifact's outputs as the manifest's `outputs` describe them (float32,
  dequantized, the model's layout), each whole, or for outputs of more than FULL_OUTPUT_VALUES
  values a sample: `indices` into the flattened output (C order) and the `values` there;
- `keypoints` (K x 2, photo pixels) and `scores` (K): the decoded pose; `poses`, every person a
  multi-person decoder finds (`decoder.multi_pose`), strongest first.

Arrays are data files in the same folder, each the gzip of the array's little-endian bytes in C
order, named by that gzip file's sha256 (`<sha256>.bin.gz`), referred to as
`{"file", "dtype", "shape"}` and shared by every index that holds the same array.

`tolerance` (TOLERANCES, by the artifact's precision) is how close a port must come: the matrix
within `matrix_abs` photo pixels; the tensor within `input_rel_err` of its range; an
`outputs_share` of each output's (stored) values within `outputs_within` of its range; a
`keypoints_share` of all the keypoints within `keypoints_within` of the crop's longer side (a
keypoint neither side finds agrees, as in parity); scores within `scores_abs`.
`check(predictor, index, folder)` is that comparison for this package's loader;
`check_artifact(predictor, directory, artifact)` reads the index a manifest entry names first.
"""
from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np

from posezoo.decoders import keypoint_errors
from posezoo.errors import PosezooError
from posezoo.loader import crop_side

FORMAT = "posezoo-golden/1"
FULL_OUTPUT_VALUES = 4096  # outputs up to this many values are stored whole
SAMPLED_VALUES = 1024  # larger ones: this many evenly spaced values (plus each heatmap channel's peak)

# What a port may differ by. The tensor: one grey level of one pixel (a warp's truncation tips
# where two float evaluations of the same matrix differ in the last bit). Outputs: each value within
# `outputs_within` of the output's range for an `outputs_share` of the values (integer kernels of
# two runtimes round a few values to a neighbouring step). Keypoints: as parity counts them, a
# keypoint neither side finds (`decoder.min_score`) agrees. Measured: the web page's wasm
# runtimes against this package's (README, "Golden vectors"): FP32 outputs within 9.3e-4 of
# their range, FP16 within 1.0e-2 (BlazePose Heavy's mask); the float tolerances leave room for
# other kernels (a GPU delegate computing in float16).
_STEPS = {"matrix_abs": 1e-6, "input_rel_err": 1.01 / 255}
TOLERANCES = {
    "fp32": {**_STEPS, "outputs_within": 5e-3, "outputs_share": 1.0, "keypoints_within": 0.01,
             "keypoints_share": 1.0, "scores_abs": 5e-3},
    "fp16": {**_STEPS, "outputs_within": 5e-2, "outputs_share": 1.0, "keypoints_within": 0.01,
             "keypoints_share": 1.0, "scores_abs": 2e-2},
    "int8": {**_STEPS, "outputs_within": 0.1, "outputs_share": 0.9, "keypoints_within": 0.05,
             "keypoints_share": 0.95, "scores_abs": 0.25},
}


class GoldenError(PosezooError):
    """A golden file that is missing, altered or not one posezoo wrote."""


def index_path(artifact_path: str) -> str:
    """Where the golden index of the artifact at `artifact_path` (manifest-relative) lies."""
    path = Path(artifact_path)
    return str(path.parent / "golden" / f"{path.name}.json")


def files_of(artifact: dict) -> list[str]:
    """Every file an artifact entry names (manifest-relative): the artifact, its golden index and
    that index's data files."""
    golden = artifact.get("golden")
    return [artifact["path"], *([golden["path"], *golden["files"]] if golden else [])]


def encode(array: np.ndarray) -> tuple[dict, bytes]:
    """An array as a data file: its reference (file name, dtype, shape) and the file's bytes."""
    array = np.asarray(array)
    data = gzip.compress(np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes(), mtime=0)
    return {"file": f"{hashlib.sha256(data).hexdigest()}.bin.gz", "dtype": array.dtype.name,
            "shape": list(array.shape)}, data


def read_array(folder: Path, ref: dict) -> np.ndarray:
    """The array a reference names, from `folder`, refused unless the file's sha256 is its name."""
    path = Path(folder) / ref["file"]
    if Path(ref["file"]).name != ref["file"]:
        raise GoldenError(f"golden data file name {ref['file']!r} is not a plain file name")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise GoldenError(f"golden data file {path} cannot be read ({e.strerror}): rebuild the model") from None
    if hashlib.sha256(data).hexdigest() + ".bin.gz" != ref["file"]:
        raise GoldenError(f"golden data file {path} is not the file its name says (sha256 differs): rebuild the model")
    return np.frombuffer(gzip.decompress(data), np.dtype(ref["dtype"]).newbyteorder("<")).reshape(ref["shape"])


def read_index(directory: Path, artifact: dict) -> dict:
    """The golden index of a manifest's artifact entry, its sha256 and size checked."""
    golden = artifact.get("golden")
    if not golden:
        raise GoldenError(f"{artifact['path']} has no golden vectors in the manifest: rebuild it with posezoo build")
    path = Path(directory) / golden["path"]
    try:
        data = path.read_bytes()
    except OSError as e:
        raise GoldenError(f"golden index {path} cannot be read ({e.strerror}): rebuild the model") from None
    if hashlib.sha256(data).hexdigest() != golden["sha256"] or len(data) != golden["bytes"]:
        raise GoldenError(f"golden index {path} is not the file the manifest lists (sha256 or size differs)")
    index = json.loads(data)
    if index.get("format") != FORMAT:
        raise GoldenError(f"golden index {path} is {index.get('format')!r}; this posezoo reads {FORMAT}")
    missing = sorted(set(TOLERANCES["fp32"]) - set(index.get("tolerance") or {}))
    if missing or not isinstance(index.get("cases"), list):
        raise GoldenError(f"golden index {path} lacks {', '.join(missing) or 'its cases'}: it is not one this "
                          "posezoo wrote; rebuild the model")
    return index


def check_artifact(predictor, directory: Path, artifact: dict) -> dict:
    """`check` on the golden vectors a manifest's artifact entry names, read from the manifest's
    folder `directory` (the index's sha256 checked)."""
    index = read_index(directory, artifact)
    return check(predictor, index, (Path(directory) / artifact["golden"]["path"]).parent)


def check(predictor, index: dict, folder: Path) -> dict:
    """Run `predictor` (a posezoo.loader.Predictor of the index's artifact) on every case, its
    own way from the photo to the pose, and compare each step with the golden numbers. Returns the
    worst deviation of each step, the share of keypoints within tolerance and the failures."""
    tol = index["tolerance"]
    worst = {"matrix_abs": 0.0, "input_rel_err": 0.0, "scores_abs": 0.0}
    outputs_report: dict[str, dict] = {}
    errors = []
    for case in index["cases"]:
        call = case["call"]
        matrix, x = predictor.prepare(read_array(folder, case["photo"]), call.get("box"), call.get("keypoints"))
        worst["matrix_abs"] = max(worst["matrix_abs"], float(np.abs(matrix - np.asarray(case["matrix"])).max()))
        worst["input_rel_err"] = max(worst["input_rel_err"], rel_err(x, read_array(folder, case["input"])))
        outputs = predictor.infer(x)
        for name, stored in case["outputs"].items():
            got = np.asarray(outputs[name], np.float32).reshape(-1)
            if "indices" in stored:
                got = got[read_array(folder, stored["indices"])]
            deviation = deviations(got, read_array(folder, stored["values"]))
            seen = outputs_report.setdefault(name, {"rel_err": 0.0, "within": 1.0})
            seen["rel_err"] = max(seen["rel_err"], float(deviation.max(initial=0.0)))
            seen["within"] = min(seen["within"], float(np.mean(deviation <= tol["outputs_within"])) if deviation.size else 1.0)
        pose = predictor.decode(matrix, outputs)
        pairs = [(pose.keypoints, pose.scores, case["keypoints"], case["scores"])]
        if case.get("poses"):
            found = predictor.decode_all(matrix, outputs)
            if found:  # the strongest person
                pairs.append((found[0].keypoints, found[0].scores, case["poses"][0]["keypoints"],
                              case["poses"][0]["scores"]))
        side = crop_side(np.asarray(case["matrix"]), predictor.width, predictor.height)
        for got_xy, got_scores, want_xy, want_scores in pairs:
            errors.append(keypoint_errors(got_xy, got_scores, want_xy, want_scores, predictor.model["decoder"], side))
            worst["scores_abs"] = max(worst["scores_abs"], float(np.abs(got_scores - np.asarray(want_scores)).max()))
    errors = np.concatenate(errors) if errors else np.zeros(0)
    share = float(np.mean(errors <= tol["keypoints_within"])) if errors.size else 1.0
    failures = [f"{key} {worst[key]:.3g} > {tol[key]:.3g}" for key in ("matrix_abs", "input_rel_err", "scores_abs")
                if worst[key] > tol[key]]
    failures += [f"output {name}: {seen['within']:.3f} of its values within {tol['outputs_within']} of its range "
                 f"< {tol['outputs_share']} (largest deviation {seen['rel_err']:.3g})"
                 for name, seen in outputs_report.items() if seen["within"] < tol["outputs_share"]]
    if share < tol["keypoints_share"]:
        failures.append(f"keypoints: {share:.3f} within {tol['keypoints_within']} of the crop side "
                        f"< {tol['keypoints_share']}")
    return {"cases": len(index["cases"]), **worst, "outputs": outputs_report, "keypoints_within": round(share, 6),
            "failures": failures, "passed": not failures}


def deviations(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Each value's absolute difference over the scale of `want` (its range, or its largest
    magnitude where that is larger: a single value has no range); inf where the shapes differ."""
    got, want = np.asarray(got, np.float64).reshape(-1), np.asarray(want, np.float64).reshape(-1)
    if got.shape != want.shape:
        return np.full(max(want.size, 1), np.inf)
    if not want.size:
        return np.zeros(0)
    scale = max(float(want.max() - want.min()), float(np.abs(want).max()), 1e-12)
    return np.abs(got - want) / scale


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    """The largest of `deviations`."""
    return float(deviations(got, want).max(initial=0.0))
