"""Numerical and task-level parity of an artifact against the original, on real inputs.

Tensor metrics per output (over all samples): max abs error, max error relative to the
original output's range, cosine similarity and SNR in dB. Task metric: the share of decoded
keypoints within alpha x input size of the original's (PCK@alpha). Layout-aware: an NCHW
artifact output is compared with an NHWC original (and vice versa) by transposing it.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from posezoo.decoders import decode, keypoint_errors

from . import calibration
from .runtimes import open_runner

DEFAULT_THRESHOLDS = {
    "fp32": {"rel_err_max": 1e-4, "pck@0.01_min": 1.0},
    "fp16": {"cos_min": 0.9999, "pck@0.02_min": 1.0},
    "int8": {"pck@0.05_min": 0.97},
}
ALPHAS = (0.01, 0.02, 0.05)
# An INT8 file must also hold on the robustness set (converters/robustness.py): the gate people in
# low light, over-exposed, hazy, noisy, blurred and JPEG-compressed, against the original on the same pixels.
ROBUSTNESS_THRESHOLDS = {"pck@0.05_min": 0.95}


def align(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """`candidate` in `reference`'s layout: same shape, or NCHW<->NHWC transposed, or same size."""
    if candidate.shape == reference.shape:
        return candidate
    if candidate.ndim == 4:
        for perm in ((0, 2, 3, 1), (0, 3, 1, 2)):
            if candidate.transpose(perm).shape == reference.shape:
                return candidate.transpose(perm)
    if candidate.size == reference.size:
        return candidate.reshape(reference.shape)
    raise ValueError(f"output shapes cannot be matched: original {reference.shape}, artifact {candidate.shape}")


def match_instances(decoder: dict, reference: dict[str, np.ndarray],
                    candidate: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A multi-person regression output (MoveNet MultiPose: `instances` rows, people in score
    order) is a set: two people whose scores differ by float noise come out in either order. The
    candidate's rows are put in the order closest to the original's (least total absolute
    difference) before anything is compared; a different set of people still fails."""
    multi = decoder.get("multi_pose", {})
    if decoder.get("type") != "regression" or "instances" not in multi:
        return candidate
    name, count = decoder["output"], multi["instances"]
    ref, out = reference[name].reshape(count, -1), candidate[name].reshape(count, -1)
    cost = np.abs(ref[:, None, :].astype(np.float64) - out[None, :, :]).sum(-1)
    order = min(itertools.permutations(range(count)), key=lambda p: cost[range(count), p].sum())
    return {**candidate, name: out[list(order)].reshape(candidate[name].shape)}


def tensor_metrics(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    ref = reference.astype(np.float64).ravel()
    err = candidate.astype(np.float64).ravel() - ref
    value_range = float(ref.max() - ref.min()) or 1.0
    denom = np.linalg.norm(ref) * np.linalg.norm(candidate.astype(np.float64).ravel())
    cos = float(ref @ candidate.astype(np.float64).ravel() / denom) if denom else 1.0
    noise = float(np.sum(err ** 2))
    snr = float("inf") if noise == 0 else 10.0 * np.log10(max(float(np.sum(ref ** 2)), 1e-30) / noise)
    return {"max_abs_err": float(np.abs(err).max()), "rel_err": float(np.abs(err).max()) / value_range,
            "cos": cos, "snr_db": snr}


@dataclass
class ParityReport:
    samples: int
    outputs: dict[str, dict[str, float]]
    pck: dict[str, float]
    worst_keypoint_err: float
    pck_visible: dict[str, float] = field(default_factory=dict)
    ties: float = 0.0  # share of keypoints agreeing only as heatmap ties (see heatmap_ties)
    thresholds: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    noise_floor: dict[str, float] = field(default_factory=dict)  # see apply_gate
    errors: list[np.ndarray] = field(default_factory=list, repr=False)  # per sample: each keypoint's error

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> dict:
        """The numbers the gate reads: worst relative error and cosine over the gated outputs."""
        return {"rel_err": float(max(o["rel_err"] for o in self.outputs.values())),
                "cos": float(min(o["cos"] for o in self.outputs.values())),
                "snr_db": float(min(o["snr_db"] for o in self.outputs.values())),
                **{f"pck@{a}": v for a, v in self.pck.items()},
                "worst_keypoint_err": self.worst_keypoint_err}

    def to_dict(self) -> dict:
        return {"samples": self.samples, **self.summary(),
                **{f"pck_visible@{a}": v for a, v in self.pck_visible.items()}, "heatmap_ties": self.ties,
                "outputs": self.outputs, "thresholds": self.thresholds,
                "original_kernel_noise": self.noise_floor, "passed": self.passed, "failures": self.failures}


def heatmap_ties(decoder: dict, reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> np.ndarray:
    """Per keypoint of a heatmap decoder: is the artifact's peak a different cell that, in the
    original's own heatmap, ties with the original's peak? (The same cell is no tie: its position,
    refined by offsets where the decoder has them, is judged as it is.) Tied means within the
    smaller of twice the artifact's largest error on that heatmap and 0.1 % of the heatmap's range
    (or of its value, for a constant map): a difference no precision we publish resolves, so
    either cell is the original's answer. Only flat maps have such ties (a random-weight model's,
    an empty one's); a trained model's peak stands far above its neighbours, so its keypoints are
    judged by position alone."""
    if decoder.get("type") != "heatmap":
        return np.zeros(0, bool)
    ref, out = (np.asarray(o[decoder["output"]], np.float64)[0] for o in (reference, candidate))
    if decoder.get("layout", "NHWC") == "NCHW":
        ref, out = ref.transpose(1, 2, 0), out.transpose(1, 2, 0)
    ref, out = ref.reshape(-1, ref.shape[-1]), out.reshape(-1, out.shape[-1])
    channels = np.arange(ref.shape[1])
    artifact_peak = out.argmax(0)
    at_artifact_peak = ref[artifact_peak, channels]
    scale = np.maximum(ref.max(0) - ref.min(0), np.abs(ref).max(0))  # a constant map's scale is its value
    tolerance = np.minimum(2 * np.abs(out - ref).max(0), 1e-3 * scale)
    tied = (artifact_peak != ref.argmax(0)) & (at_artifact_peak >= ref.max(0) - tolerance)
    return tied[: decoder.get("num_keypoints", ref.shape[1])]


def compare(reference_outputs: list[dict[str, np.ndarray]], candidate_outputs: list[dict[str, np.ndarray]],
            decode: Callable, keypoint_scale: float, min_score: float | None = None,
            decoder: dict | None = None) -> ParityReport:
    """Compare per-sample outputs of the original and an artifact (lists in the same order).

    `min_score`: the decoder's detection threshold, for decoders that report a keypoint below it
    as not found; a keypoint both sides report as not found agrees (posezoo.decoders.keypoint_errors).
    `decoder` (a heatmap decoder's spec): a keypoint whose artifact peak ties with the original's
    (`heatmap_ties`) agrees; `ties` reports the share of keypoints that this settled; a
    multi-person output's people are matched first (`match_instances`).
    Besides PCK over all keypoints (what gates read), `pck_visible` counts only the keypoints the
    original itself scores >= 0.5: informational, for judging where disagreements sit."""
    aligned = [{n: align(r[n], _match(c, n, r[n])) for n in r} for r, c in zip(reference_outputs, candidate_outputs)]
    if decoder is not None:
        aligned = [match_instances(decoder, r, c) for r, c in zip(reference_outputs, aligned)]
    per_output = {name: tensor_metrics(np.stack([r[name] for r in reference_outputs]),
                                       np.stack([c[name] for c in aligned]))
                  for name in reference_outputs[0]}
    per_sample, visible, settled = [], [], 0
    for r, c in zip(reference_outputs, aligned):
        (ref_xy, ref_scores), (out_xy, out_scores) = decode(r), decode(c)
        err = keypoint_errors(ref_xy, ref_scores, out_xy, out_scores, {"min_score": min_score}, keypoint_scale)
        if decoder is not None:
            ties = heatmap_ties(decoder, r, c)
            if ties.size:
                settled += int(np.sum(ties & (err > 0)))
                err = np.where(ties, 0.0, err)
        per_sample.append(err)
        visible.append(ref_scores >= 0.5)
    errors, visible = np.concatenate(per_sample), np.concatenate(visible)
    pck = {str(a): float(np.mean(errors <= a)) for a in ALPHAS}
    pck_visible = {str(a): float(np.mean(errors[visible] <= a)) if visible.any() else 1.0 for a in ALPHAS}
    return ParityReport(len(reference_outputs), per_output, pck, float(errors.max()), pck_visible,
                        ties=round(settled / len(errors), 6), errors=per_sample)


def _match(outputs: dict[str, np.ndarray], name: str, reference: np.ndarray) -> np.ndarray:
    """The artifact output for the original's `name`: same name, else the only one with that size."""
    if name in outputs:
        return outputs[name]
    same_size = [v for v in outputs.values() if v.size == reference.size]
    if len(same_size) == 1:
        return same_size[0]
    raise KeyError(f"artifact has no output named {name!r} and no unique output of size {reference.size}")


BOOTSTRAP_RESAMPLES = 2000


def _hits_by(report: ParityReport, groups: list, alpha: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group (`groups`: each sample's key): its keys (sorted), keypoints within alpha, keypoints."""
    keys, index = np.unique([str(g) for g in groups], return_inverse=True)
    hits = np.bincount(index, [np.sum(e <= float(alpha)) for e in report.errors], len(keys))
    return keys, hits, np.bincount(index, [e.size for e in report.errors], len(keys))


def pck_by(report: ParityReport, groups: list, alpha: str) -> dict[str, float]:
    """PCK@alpha of each group of samples (`groups`: each sample's key, e.g. its data set)."""
    keys, hits, counts = _hits_by(report, groups, alpha)
    return {str(k): round(float(h / c), 4) for k, h, c in zip(keys, hits, counts)}


def pck_lower_bound(report: ParityReport, groups: list, alpha: str, confidence: float,
                    resamples: int = BOOTSTRAP_RESAMPLES) -> float:
    """The PCK@alpha that other samples like these reach with `confidence`: its (1 - confidence)
    quantile over bootstrap resamples of `groups` (each sample's group key, e.g. its photo: a
    group's samples are drawn together, since they fail together). Seeded, so the same errors
    give the same bound on every build."""
    keys, hits, counts = _hits_by(report, groups, alpha)
    draws = np.random.default_rng(0).integers(0, len(keys), (resamples, len(keys)))
    return float(np.quantile(hits[draws].sum(1) / counts[draws].sum(1), 1.0 - confidence))


MAX_TIES = 0.5  # beyond this share of keypoints settled as heatmap ties, keypoints cannot be judged


def apply_gate(report: ParityReport, thresholds: dict[str, float],
               noise_floor: dict[str, float] | None = None) -> ParityReport:
    """Fill `thresholds` and `failures`: `<metric>_max` and `<metric>_min` bounds on summary().
    Whatever the thresholds, an artifact whose keypoints agree mostly as heatmap ties fails: on
    maps that flat (random weights) agreement says nothing about its precision.

    `noise_floor` (per output, max error / range): how far a TFLite original's own default kernels
    (XNNPACK) are from its reference kernels on these inputs. `rel_err_max` is judged per output
    against the larger of the bound and that floor: an artifact need not be closer to the
    original's reference than the original itself is when it runs where users run it (BlazePose's
    segmentation logits: the bound is 1e-4, XNNPACK alone moves them by up to 5e-4)."""
    report.thresholds, report.noise_floor = dict(thresholds), dict(noise_floor or {})
    summary = report.summary()
    report.failures = []
    if report.ties > MAX_TIES:
        report.failures.append(f"heatmap_ties = {report.ties:.3g} (> {MAX_TIES}): most keypoints agree only as ties "
                               "of a flat heatmap, so the keypoints cannot be judged on this model")
    for key, bound in thresholds.items():
        metric, kind = key.rsplit("_", 1)
        if key == "rel_err_max" and report.noise_floor:
            for name, numbers in report.outputs.items():
                floor = report.noise_floor.get(name, 0.0)
                if not numbers["rel_err"] <= max(bound, floor):
                    report.failures.append(f"rel_err = {numbers['rel_err']:.6g} on {name} (> {bound:g}, and > "
                                           f"{floor:.3g}, the original's own kernel noise there)")
            continue
        value = summary[metric]
        if (kind == "max" and not value <= bound) or (kind == "min" and not value >= bound):
            report.failures.append(f"{metric} = {value:.6g} ({'>' if kind == 'max' else '<'} {bound:g})")
    return report


@dataclass
class ParityBench:
    """Real inputs, the original's outputs on them and the decoder: what every parity check needs.

    `model` is a recipe or a manifest entry (both carry `input` and `decoder`). The samples carry
    their split (posezoo.converters.calibration.split_of): `subset("calibration")` is what INT8 calibration
    and its search may see, `subset("gate")` what judges an INT8 file, `perturbed` its robustness set."""

    samples: list
    feeds: list[dict[str, np.ndarray]]
    reference: list[dict[str, np.ndarray]]
    decoder: dict
    keypoint_scale: float
    spec: dict
    progress: bool = False

    @classmethod
    def prepare(cls, original, model: dict, images: Path, limit: int | None = None,
                progress: bool = False) -> "ParityBench":
        """`original`: the model in its own framework (posezoo.converters.originals); `limit`: at most
        that many people of each split."""
        spec = model["input"]
        samples = calibration.load_samples(images, spec, calibration.parity_crop(model), limit)
        return cls._of(original, samples, model["decoder"], spec, progress)

    @classmethod
    def _of(cls, original, samples: list, decoder: dict, spec: dict, progress: bool) -> "ParityBench":
        feeds = [{spec["name"]: s.tensor} for s in samples]
        reference = [original.run(f) for f in _bar(feeds, "original", progress)]
        return cls(samples, feeds, reference, decoder, float(max(calibration.input_hw(spec))), spec, progress)

    def subset(self, split: str) -> "ParityBench":
        """The people of one split (calibration or gate)."""
        keep = [i for i, s in enumerate(self.samples) if s.split == split]
        if not keep:
            raise calibration.CalibrationError(
                f"none of the {len(self.samples)} people is in the {split} set (photos are split by their "
                "content hash, posezoo.converters.calibration.split_of): add photos of people, or raise --max-samples")
        return replace(self, samples=[self.samples[i] for i in keep], feeds=[self.feeds[i] for i in keep],
                       reference=[self.reference[i] for i in keep])

    def joined(self, other: "ParityBench") -> "ParityBench":
        """These people and `other`'s (the same model and original)."""
        return replace(self, samples=self.samples + other.samples, feeds=self.feeds + other.feeds,
                       reference=self.reference + other.reference)

    def perturbed(self, original) -> "ParityBench":
        """The robustness set of these people: every one under every transform of
        converters/robustness.py, with the original's outputs on the same pixels."""
        from .robustness import TRANSFORMS, perturb

        samples = [replace(s, rgb=rgb, tensor=calibration.to_tensor(rgb, self.spec), split=f"robustness/{name}")
                   for name in TRANSFORMS for k, s in enumerate(self.samples)
                   for rgb in [perturb(s.rgb, name, k)]]
        return self._of(original, samples, self.decoder, self.spec, self.progress)

    def kernel_noise(self, original) -> dict[str, float]:
        """Per output, how far a TFLite original's default kernels (XNNPACK) are from its reference
        kernels (max error / output range): the original's own float noise floor, below which a
        `rel_err_max` gate does not demand (parity.apply_gate). Empty for originals with a single
        kernel set (Keras, PyTorch, SavedModel)."""
        runner = original.fast_runner()
        if runner is None:
            return {}
        fast = [runner(f) for f in self.feeds]
        return {name: float(tensor_metrics(np.stack([r[name] for r in self.reference]),
                                                  np.stack([f[name] for f in fast]))["rel_err"])
                for name in self.reference[0]}

    def check(self, path: Path, thresholds: dict[str, float], reference_kernels: bool = True,
              noise_floor: dict[str, float] | None = None) -> ParityReport:
        """Run the artifact at `path` on the same inputs and gate it against the original.

        `reference_kernels=False` runs TFLite on its fast kernels: for the INT8 search's trials,
        where TFLite's reference integer kernels cost minutes per trial on BlazePose Heavy. A
        trial only steers the search; the gate that decides publication always runs the chosen
        file on the reference kernels."""
        return apply_gate(self._compare(self.run(path, reference_kernels)), thresholds, noise_floor)

    def run(self, path: Path, reference_kernels: bool = True) -> list[dict[str, np.ndarray]]:
        runner = open_runner(path, reference_kernels=reference_kernels)
        return [runner(f) for f in _bar(self.feeds, f"parity {Path(path).name}", self.progress)]

    def _compare(self, outputs: list[dict[str, np.ndarray]], keep: list[int] | None = None) -> ParityReport:
        keep = range(len(outputs)) if keep is None else keep
        return compare([self.reference[i] for i in keep], [outputs[i] for i in keep],
                       lambda o: decode(self.decoder, o), self.keypoint_scale, self.decoder.get("min_score"),
                       self.decoder)

    def check_robustness(self, path: Path, reference_kernels: bool = True) -> tuple[ParityReport, dict[str, float]]:
        """On a `perturbed` bench: the gate of ROBUSTNESS_THRESHOLDS over all of it, and PCK@0.05
        per transform (for the manifest and the report)."""
        outputs = self.run(path, reference_kernels)
        report = apply_gate(self._compare(outputs), ROBUSTNESS_THRESHOLDS)
        by_transform: dict[str, list[int]] = {}
        for i, s in enumerate(self.samples):
            by_transform.setdefault(s.split.split("/", 1)[-1], []).append(i)
        return report, {name: round(self._compare(outputs, keep).pck["0.05"], 4)
                        for name, keep in by_transform.items()}


def _bar(items, desc: str, enabled: bool):
    """A progress bar on stderr for interactive runs; plain iteration otherwise."""
    import sys

    from tqdm import tqdm

    return tqdm(items, desc=desc, leave=False, disable=not enabled or not sys.stderr.isatty())
