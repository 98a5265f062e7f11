"""Run any artifact of a posezoo manifest on a photo, knowing nothing but the manifest.

    from posezoo.loader import load
    predict = load("zoo/manifest.json", "efficientpose-rt-lite", format="tflite", precision="int8")
    pose = predict(rgb)                       # HxWx3 uint8 RGB; whole_image models
    pose = predict(rgb, box=(x, y, w, h))     # box models (top-down): the person's box
    pose = predict(rgb, keypoints={"left_hip": (x, y), ...})  # rotated_roi models (below)
    pose.keypoints, pose.scores, pose.names   # K x 2 in the photo's pixels, K scores, K names

Only numpy, the standard library, posezoo.decoders and the runtime of the artifact's format
(onnxruntime or ai_edge_litert, imported when first needed): everything else, from the crop to
the decoding, comes from the manifest. The crops, the warp and the preprocessing below are the
ones the build cuts its calibration and parity inputs with (converters/calibration.py calls
them), so a runtime that follows this file feeds what parity fed.

Crop kinds (`input.crop.kind`), each an affine map from input pixels to photo pixels:
- `whole_image`: the whole photo, `letterbox` (scaled to fit, centred, black borders) or `stretch`.
- `box`: `box=(x, y, w, h)` in photo pixels, widened to the input's aspect ratio around its
  centre, times `padding`.
- `rotated_roi` (MediaPipe's ROI): `keypoints={name: (x, y)}` must hold the crop's two
  `center_keypoints` and two `up_keypoints`. The square ROI is centred on the mean of the centre
  keypoints, turned (never mirrored) so that the mean of the up keypoints is straight above it,
  and its side is 2 x `expand` x the largest distance from the centre to any keypoint passed:
  pass every known keypoint of the person (the previous frame's landmarks, or annotations), as
  the build does.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posezoo import manifest as manifest_module
from posezoo.decoders import decode, decode_multi_pose
from posezoo.errors import PosezooError
from posezoo.runtime import RUNTIMES, open_runtime

INTEGER_DTYPES = ("int8", "uint8", "int32")


class LoaderError(PosezooError):
    pass


@dataclass
class Pose:
    keypoints: np.ndarray  # K x 2, pixels of the photo passed in
    scores: np.ndarray  # K
    names: list[str]
    outputs: dict[str, np.ndarray]  # raw outputs (dequantized), by the manifest's names and layouts
    matrix: np.ndarray  # 2x3 affine from model-input pixels to the photo's pixels (the crop)
    score: float | None = None  # the person's score, for poses of a multi-person decoder


def load(manifest, model_id: str, format: str = "tflite", precision: str = "int8", origin: str | None = None,
         threads: int = 1, directory=None, crop: dict | None = None) -> "Predictor":
    """A predictor for one artifact. `manifest`: the path of a manifest.json, or the manifest
    already read (a dict), then with `directory`, the folder its artifact paths are relative to.
    `crop`: cut the input by this rule instead of `input.crop` (e.g. the model's
    `calibration_crop`, a box per person, to run a single-person model on crowded photos)."""
    if isinstance(manifest, dict):
        if directory is None:
            raise LoaderError("a manifest passed as a dict needs `directory`, the folder its artifact paths start from")
        directory = Path(directory)
        manifest_module.validate(manifest, "manifest", LoaderError)
    else:
        directory = Path(manifest).parent
        manifest = read_manifest(manifest)
    models = {m["id"]: m for m in manifest["models"]}
    if model_id not in models:
        raise LoaderError(f"no model {model_id!r} in the manifest; it has: {', '.join(models) or 'none'}")
    model = models[model_id]
    artifact = select_artifact(model, format, precision, origin)
    if artifact["format"] not in RUNTIMES or not artifact["path"].endswith(RUNTIMES[artifact["format"]][0]):
        raise LoaderError(f"{model_id}: this loader runs {', '.join(f'{f} ({s})' for f, (s, _) in RUNTIMES.items())} "
                          f"files, not {artifact['format']} {artifact['path']!r}")
    path = artifact_path(directory, artifact["path"])
    check_file(path, artifact["sha256"], artifact["bytes"])
    return Predictor(model, artifact, open_runtime(path, threads), crop)


def read_manifest(path) -> dict:
    """The manifest at `path`, validated against the schema; anything else is a LoaderError naming it."""
    return manifest_module.read_manifest(path, LoaderError)


def artifact_path(directory: Path, relative: str) -> Path:
    """Where an artifact of a manifest in `directory` lies: a manifest only names files inside its
    own folder, so an absolute path or one with `..` (a manifest that reaches elsewhere) is refused."""
    if Path(relative).is_absolute() or ".." in Path(relative).parts:
        raise LoaderError(f"artifact path {relative!r} leads outside the manifest's folder {directory}: artifact "
                          "paths are relative to it; fix the manifest or rebuild it with `posezoo build`")
    return directory / relative


def select_artifact(model: dict, format: str, precision: str, origin: str | None = None) -> dict:
    """The one artifact of that format and precision; where both ours (`converted`) and the
    publisher's (`vendor`) exist, `origin` must say which."""
    found = [a for a in model["artifacts"] if a["format"] == format and a["precision"] == precision
             and origin in (None, a["origin"])]
    if not found:
        have = ", ".join(f"{a['format']} {a['precision']} ({a['origin']})" for a in model["artifacts"]) or "none"
        rejected = "".join(f"; rejected: {r['format']} {r['precision']} ({r['reason']})"
                           for r in model.get("rejected", []))
        wanted = f"{format} {precision}" + (f" ({origin})" if origin else "")
        raise LoaderError(f"{model['id']} has no {wanted} artifact; it has: {have}{rejected}")
    if len(found) > 1:
        origins = sorted(a["origin"] for a in found)
        raise LoaderError(f"{model['id']} has {format} {precision} artifacts of origins {origins}: "
                          f"pass origin= one of them")
    return found[0]


def check_file(path: Path, sha256: str, size: int) -> None:
    """Refuse a missing, truncated or altered artifact before any runtime parses it."""
    if not path.is_file():
        raise LoaderError(f"artifact {path} does not exist")
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if len(data) != size or actual != sha256:
        raise LoaderError(f"artifact {path} is not the file the manifest lists: sha256 {actual} ({len(data)} bytes), "
                          f"manifest says sha256 {sha256} ({size} bytes)")


class Predictor:
    """`run({input name: tensor}) -> {output name: array}` executes the artifact (a posezoo.runtime
    runtime, or any callable that behaves like the artifact `artifact` describes)."""

    def __init__(self, model: dict, artifact: dict, run, crop: dict | None = None):
        self.model, self.artifact, self.run = model, artifact, run
        self.spec = model["input"]
        self.crop = crop or self.spec["crop"]
        self.height, self.width = input_hw(self.spec)
        if len(artifact["io"]["inputs"]) != 1:
            raise LoaderError(f"{artifact.get('path', model['id'])}: {len(artifact['io']['inputs'])} inputs; "
                              "the loader feeds exactly one")
        self.io_input = artifact["io"]["inputs"][0]
        # onnx2tf makes NHWC files of NCHW models: their 4-D outputs are transposed the same way.
        self.transposed = artifact["input_layout"] != self.spec.get("layout", "NHWC")

    def __call__(self, image: np.ndarray, box=None, keypoints: dict | None = None) -> Pose:
        matrix, x = self.prepare(image, box, keypoints)
        return self.decode(matrix, self.infer(x))

    def poses(self, image: np.ndarray, box=None, keypoints: dict | None = None) -> list[Pose]:
        """Every person the decoder's `multi_pose` description finds (PoseNet), strongest root first."""
        if "multi_pose" not in self.model["decoder"]:
            raise LoaderError(f"{self.model['id']}'s decoder finds one person (no multi_pose in the manifest)")
        matrix, x = self.prepare(image, box, keypoints)
        return self.decode_all(matrix, self.infer(x))

    def prepare(self, image: np.ndarray, box=None, keypoints: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The crop's 2x3 matrix (input pixels -> photo pixels) and the exact tensor the artifact is
        fed: the steps a port reproduces first (golden vectors record both)."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
            raise LoaderError(f"expected a non-empty HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")
        matrix = crop_matrix(self.crop, self.width, self.height, (image.shape[1], image.shape[0]),
                             box, keypoints)
        x = to_tensor(warp(image, matrix, self.width, self.height), self.spec, self.io_input,
                      self.artifact["input_layout"])
        return matrix, x

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The artifact's outputs for input tensor `x`, as the manifest's `outputs` describe them."""
        raw = self.run({self.io_input["name"]: x})
        return model_outputs(raw, self.artifact["io"]["outputs"], self.model["outputs"], self.transposed)

    def decode(self, matrix: np.ndarray, outputs: dict[str, np.ndarray]) -> Pose:
        """The pose the decoder reads from `outputs`, in the pixels of the photo `matrix` cut."""
        xy, scores = decode(self.model["decoder"], outputs)
        return Pose(xy @ matrix[:, :2].T + matrix[:, 2], scores, list(self.model["keypoints"]["names"]), outputs,
                    matrix)

    def decode_all(self, matrix: np.ndarray, outputs: dict[str, np.ndarray]) -> list[Pose]:
        """Every person of a multi-person decoder, strongest first, in the photo's pixels."""
        return [Pose(xy @ matrix[:, :2].T + matrix[:, 2], scores, list(self.model["keypoints"]["names"]), outputs,
                     matrix, score) for xy, scores, score in decode_multi_pose(self.model["decoder"], outputs)]


def input_hw(spec: dict) -> tuple[int, int]:
    """(height, width) of the model input, from its shape in the manifest's layout."""
    shape = spec["shape"]
    return (shape[1], shape[2]) if spec.get("layout", "NHWC") == "NHWC" else (shape[2], shape[3])


def crop_side(matrix: np.ndarray, width: int, height: int) -> float:
    """The longer side, in photo pixels, of a width x height input cut by `matrix`: parity's unit
    of keypoint error."""
    return float(max(np.linalg.norm(matrix[:, 0]) * width, np.linalg.norm(matrix[:, 1]) * height))


def affine(center, x_axis, y_axis, width: int, height: int) -> np.ndarray:
    """2x3 matrix from input pixels to image pixels: the input's centre lands on `center`, one
    input pixel along x (y) is the image vector `x_axis` (`y_axis`)."""
    ax, ay = np.asarray(x_axis, float), np.asarray(y_axis, float)
    origin = np.asarray(center, float) - ax * width / 2 - ay * height / 2
    return np.array([[ax[0], ay[0], origin[0]], [ax[1], ay[1], origin[1]]])


CROP_KINDS = ("whole_image", "box", "rotated_roi")


def crop_matrix(crop: dict, width: int, height: int, image_size: tuple[int, int], box=None,
                keypoints: dict | None = None) -> np.ndarray:
    """The input->image affine of `crop` (the manifest's `input.crop`) for an image of
    `image_size` (width, height); see the module docstring for what each kind needs."""
    kind = crop["kind"]
    if kind == "whole_image":
        w, h = image_size
        if crop.get("resize", "letterbox") == "stretch":
            return affine((w / 2, h / 2), (w / width, 0), (0, h / height), width, height)
        s = max(w / width, h / height)
        return affine((w / 2, h / 2), (s, 0), (0, s), width, height)
    if kind == "box":
        if box is None:
            raise LoaderError("this model crops a person's box: pass box=(x, y, w, h) in image pixels")
        x, y, w, h = _box(box)
        aspect = width / height
        side = w if w / max(h, 1e-6) > aspect else h * aspect
        s = crop.get("padding", 1.25) * side / width
        return affine((x + w / 2, y + h / 2), (s, 0), (0, s), width, height)
    if kind == "rotated_roi":
        need = crop["center_keypoints"] + crop["up_keypoints"]
        missing = [n for n in need if n not in (keypoints or {})]
        if missing:
            raise LoaderError(f"this model crops a rotated ROI: pass keypoints={{name: (x, y)}} with {need} "
                              f"(missing {missing}), plus the person's other known keypoints for the ROI's size")
        bad = {n: p for n, p in keypoints.items() if not np.isfinite(np.asarray(p, float)).all()}
        if bad:
            raise LoaderError(f"keypoints {bad} are not finite: pass only keypoints with known (x, y)")
        center = np.mean([keypoints[n] for n in crop["center_keypoints"]], axis=0)
        up = np.mean([keypoints[n] for n in crop["up_keypoints"]], axis=0) - center
        if np.linalg.norm(up) < 1e-6:
            raise LoaderError(f"the centre keypoints {crop['center_keypoints']} and up keypoints "
                              f"{crop['up_keypoints']} coincide: the ROI has no direction")
        radius = max(np.linalg.norm(np.asarray(p, float) - center) for p in keypoints.values())
        side = 2.0 * radius * crop.get("expand", 1.25)
        down = -up / np.linalg.norm(up)
        right = np.array([down[1], -down[0]])  # down turned a quarter anticlockwise: a rotation, no mirror
        return affine(center, right * side / width, down * side / height, width, height)
    raise LoaderError(f"unknown crop kind {kind!r} (known: {', '.join(CROP_KINDS)})")


def _box(box) -> tuple[float, float, float, float]:
    """A person box (x, y, w, h) as floats, refused unless finite with a positive width and height."""
    values = np.asarray(box, float).ravel()
    if values.shape != (4,) or not np.isfinite(values).all() or values[2] <= 0 or values[3] <= 0:
        raise LoaderError(f"box {box!r} is not a person box: pass box=(x, y, w, h) in image pixels, finite, "
                          "with w > 0 and h > 0")
    return tuple(float(v) for v in values)


def warp(image: np.ndarray, matrix: np.ndarray, width: int, height: int) -> np.ndarray:
    """The input grid sampled from the image (HxWx3 uint8, or anything np.asarray makes one of,
    such as an RGB PIL image): HxWx3 uint8.

    Exactly PIL's Image.transform(AFFINE, BILINEAR, fillcolor=black), which the build uses:
    continuous coordinates with pixel centres at +0.5; a sample point outside the image is
    black, one inside interpolates between the nearest pixel centres (clamped at the border);
    the result is truncated to an integer."""
    image = np.asarray(image)
    ih, iw = image.shape[:2]
    gx, gy = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    m = matrix
    sx = m[0, 0] * gx + m[0, 1] * gy + m[0, 2]
    sy = m[1, 0] * gx + m[1, 1] * gy + m[1, 2]
    inside = (sx >= 0) & (sx < iw) & (sy >= 0) & (sy < ih)
    sx, sy = np.where(inside, sx - 0.5, 0.0), np.where(inside, sy - 0.5, 0.0)
    x0, y0 = np.floor(sx), np.floor(sy)
    dx, dy = (sx - x0)[..., None], (sy - y0)[..., None]
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    xa, xb = np.clip(x0, 0, iw - 1), np.clip(x0 + 1, 0, iw - 1)
    ya, yb = np.clip(y0, 0, ih - 1), np.clip(y0 + 1, 0, ih - 1)
    # Index the uint8 photo first, then widen: memory follows the input grid, not the photo.
    aa, ab = image[ya, xa].astype(np.int64), image[ya, xb].astype(np.int64)
    ba, bb = image[yb, xa].astype(np.int64), image[yb, xb].astype(np.int64)
    top = aa + (ab - aa) * dx
    bottom = ba + (bb - ba) * dx
    value = (top + (bottom - top) * dy).astype(np.uint8)
    return np.where(inside[..., None], value, np.uint8(0))


def quantize(x: np.ndarray, dtype: str, scale: float, zero_point: int) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def dequantize(y: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (y.astype(np.float32) - zero_point) * scale


def to_tensor(rgb: np.ndarray, spec: dict, io_input: dict, layout: str) -> np.ndarray:
    """The crop as the artifact's input: colour order, then (float inputs) (x - mean) / std in the
    model's channel order, quantized where the artifact's input is quantized; uint8 models get
    the pixels as they are; then the artifact's own layout, batch 1."""
    x = rgb[..., ::-1] if spec.get("color", "RGB") == "BGR" else rgb
    if spec["dtype"] == "float32":
        norm = spec.get("normalization", {"mean": [0, 0, 0], "std": [1, 1, 1]})
        x = (x.astype(np.float32) - np.asarray(norm["mean"], np.float32)) / np.asarray(norm["std"], np.float32)
    q = io_input.get("quantization")
    if io_input["dtype"] in INTEGER_DTYPES and q and np.issubdtype(x.dtype, np.floating):
        x = quantize(x, io_input["dtype"], q["scale"], q["zero_point"])
    else:
        x = x.astype(io_input["dtype"])
    if layout == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x[None])


def model_outputs(raw: dict[str, np.ndarray], io_outputs: list[dict], outputs: list[dict],
                  transposed: bool) -> dict[str, np.ndarray]:
    """The artifact's outputs as float32, keyed and shaped as the manifest's `outputs` describe."""
    io = {o["name"]: o for o in io_outputs}
    result = {}
    for spec in outputs:
        name = spec["name"]
        if name not in raw:
            raise LoaderError(f"the artifact has no output named {name!r} (it has {sorted(raw)})")
        y = raw[name]
        q = io[name].get("quantization") if name in io else None
        y = dequantize(y, q["scale"], q["zero_point"]) if q and np.issubdtype(y.dtype, np.integer) else y
        if transposed and y.ndim == 4:
            y = y.transpose(0, 3, 1, 2)  # the NHWC file's output back to the model's NCHW
        if all(isinstance(d, int) for d in spec["shape"]) and list(y.shape) != spec["shape"]:
            raise LoaderError(f"output {name!r} has shape {list(y.shape)}; the manifest says {spec['shape']}")
        result[name] = np.asarray(y, np.float32)
    return result
