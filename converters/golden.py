"""Write the golden vectors of a model's artifacts (the format: zoo/golden.py).

GOLDEN_PEOPLE real people of the calibration photos, those an INT8 file is gated on first (`gate`
split), each run through the runtime loader (posezoo.loader) on every artifact: the photo, the
call, the crop matrix, the tensor, the outputs and the decoded pose are what a port must
reproduce. A case's photo is the part of the calibration photo around the person (the
rectangle the model's parity crop reaches into, plus a 2-pixel margin for the bilinear warp),
and its call is shifted to that part, so the golden folder stays small and is self-contained.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from posezoo import golden
from posezoo.loader import Predictor, input_hw
from posezoo.runtime import open_runtime

from .calibration import load_samples, parity_crop
from .fileio import atomic_path

GOLDEN_PEOPLE = 2
MARGIN = 2  # photo pixels kept around the crop's reach: the warp's bilinear neighbours


def golden_cases(model: dict, images: Path, limit: int | None = None) -> list[dict]:
    """The people of the golden set of `model` (a manifest entry), among the first `limit` of each
    split (the build's --max-samples, as parity takes them): {photo, call, person} each."""
    samples = load_samples(images, model["input"], parity_crop(model), limit)
    gate = [s for s in samples if s.split == "gate"] or samples
    picks = [gate[0]] + ([gate[len(gate) // 2]] if len(gate) > 1 else [])
    height, width = input_hw(model["input"])
    kind = model["input"]["crop"]["kind"]
    cases = []
    for sample in picks[:GOLDEN_PEOPLE]:
        with Image.open(sample.person.image) as im:
            photo = np.asarray(im.convert("RGB"))
        corners = sample.matrix @ np.array([[0, width, 0, width], [0, 0, height, height], [1, 1, 1, 1]], float)
        x0 = max(0, math.floor(corners[0].min()) - MARGIN)
        y0 = max(0, math.floor(corners[1].min()) - MARGIN)
        x1 = min(photo.shape[1], math.ceil(corners[0].max()) + MARGIN)
        y1 = min(photo.shape[0], math.ceil(corners[1].max()) + MARGIN)
        person = sample.person
        call = {}
        if kind == "box":
            call["box"] = [person.box[0] - x0, person.box[1] - y0, person.box[2], person.box[3]]
        elif kind == "rotated_roi":
            call["keypoints"] = {name: [x - x0, y - y0] for name, (x, y) in person.keypoints.items()}
        cases.append({"photo": np.ascontiguousarray(photo[y0:y1, x0:x1]), "call": call,
                      "person": f"{person.image.parent.name}/{person.image.name}"
                                + (f" #{person.key}" if person.key is not None else "")
                                + f" ({sample.split} people), x {x0}..{x1}, y {y0}..{y1}"})
    return cases


def write_golden(model: dict, directory: Path, cases: list[dict], threads: int = 1) -> int:
    """Write the golden index and data files of every artifact of `model` (paths relative to
    `directory`) and name them in the artifact's entry (`golden`); returns their bytes (each data
    file counted once)."""
    written_files: set[Path] = set()
    for artifact in model["artifacts"]:
        predictor = Predictor(model, artifact, open_runtime(Path(directory) / artifact["path"], threads))
        files: dict[str, bytes] = {}

        def stored(array) -> dict:
            ref, data = golden.encode(array)
            files[ref["file"]] = data
            return ref

        entries = []
        for case in cases:
            call = case["call"]
            matrix, x = predictor.prepare(case["photo"], call.get("box"), call.get("keypoints"))
            outputs = predictor.infer(x)
            pose = predictor.decode(matrix, outputs)
            entry = {"person": case["person"], "photo": stored(case["photo"]), "call": call,
                     "matrix": matrix.tolist(),
                     "input": {"name": predictor.io_input["name"], "layout": artifact["input_layout"], **stored(x)},
                     "outputs": {name: _output(value, name, model["decoder"], stored)
                                 for name, value in outputs.items()},
                     "keypoints": pose.keypoints.astype(float).tolist(), "scores": pose.scores.astype(float).tolist()}
            if "multi_pose" in model["decoder"]:
                entry["poses"] = [{"keypoints": p.keypoints.astype(float).tolist(),
                                   "scores": p.scores.astype(float).tolist(), "score": float(p.score)}
                                  for p in predictor.decode_all(matrix, outputs)]
            entries.append(entry)
        index = {"format": golden.FORMAT, "model": model["id"],
                 "artifact": {k: artifact[k] for k in ("path", "sha256", "format", "precision")},
                 "tolerance": golden.TOLERANCES[artifact["precision"]], "cases": entries}
        relative = golden.index_path(artifact["path"])
        folder = (Path(directory) / relative).parent
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            if not (folder / name).exists():
                with atomic_path(folder / name) as tmp:
                    tmp.write_bytes(data)
            written_files.add(folder / name)
        text = (json.dumps(index, indent=1) + "\n").encode()
        with atomic_path(Path(directory) / relative) as tmp:
            tmp.write_bytes(text)
        prefix = str(Path(relative).parent)
        artifact["golden"] = {"path": relative, "sha256": hashlib.sha256(text).hexdigest(), "bytes": len(text),
                              "files": sorted(f"{prefix}/{name}" for name in files)}
        written_files.add(Path(directory) / relative)
    return sum(path.stat().st_size for path in written_files)


def _output(value: np.ndarray, name: str, decoder: dict, stored) -> dict:
    """An output as a golden case holds it: whole, or sampled where it is large (evenly spaced
    values, plus the 3x3 cells around each channel's peak of the heatmaps the decoder reads)."""
    value = np.asarray(value, np.float32)
    flat = value.reshape(-1)
    if flat.size <= golden.FULL_OUTPUT_VALUES:
        return {"shape": list(value.shape), "values": stored(value)}
    picked = set(np.linspace(0, flat.size - 1, golden.SAMPLED_VALUES).astype(np.int64).tolist())
    if decoder["type"] == "heatmap" and name == decoder["output"] and value.ndim == 4:
        picked |= _peak_cells(value, decoder.get("layout", "NHWC"))
    indices = np.array(sorted(picked), np.int32)
    return {"shape": list(value.shape), "indices": stored(indices), "values": stored(flat[indices])}


def _peak_cells(heatmaps: np.ndarray, layout: str) -> set[int]:
    """Flat indices of the 3x3 cells around each channel's maximum (inside the map)."""
    chw = heatmaps[0] if layout == "NCHW" else heatmaps[0].transpose(2, 0, 1)
    channels, height, width = chw.shape
    cells = set()
    for c in range(channels):
        y, x = np.unravel_index(int(np.argmax(chw[c])), (height, width))
        for yy in range(max(0, y - 1), min(height, y + 2)):
            for xx in range(max(0, x - 1), min(width, x + 2)):
                index = (0, c, yy, xx) if layout == "NCHW" else (0, yy, xx, c)
                cells.add(int(np.ravel_multi_index(index, heatmaps.shape)))
    return cells
