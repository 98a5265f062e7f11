"""SavedModel tarballs with exactly the official signatures of Google's MoveNet on TF Hub, with
random weights (the genuine SavedModels cannot be downloaded here; the build treats these as a
user's --checkpoint):

- SinglePose Lightning v4 / Thunder v4: `serving_default`, input `input` int32 [1, S, S, 3]
  (S = 192 / 256), output `output_0` float32 [1, 1, 17, 3] (y, x in [0, 1], score).
- MultiPose Lightning v1: input `input` int32 [1, None, None, 3], output `output_0` float32
  [1, 6, 56] (17 x (y, x, score), then ymin, xmin, ymax, xmax, instance score).

Inside, the structure MoveNet's model card describes, with its in-graph decoding (what makes these
graphs harder to convert than a plain CNN): a small convolutional backbone at output stride 4;
heads for person centres, keypoint heatmaps, centre-to-keypoint regression and keypoint offsets;
the centre picked by argmax (single pose: weighted towards the frame centre) or by 3x3 max-pool
NMS and top-6 (multi pose); each keypoint's heatmap weighted by the inverse distance to its
regressed position, argmax, then its offset. Weights are random; the layers are not Google's."""
from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np

KEYPOINTS = 17
INSTANCES = 6


def _module(multipose: bool, seed: int):
    import tensorflow as tf

    rng = np.random.default_rng(seed)

    def weight(shape, std):
        return tf.Variable(rng.normal(0, std, shape).astype(np.float32))

    class MoveNetLike(tf.Module):
        def __init__(self):
            super().__init__()
            self.backbone = [(weight((3, 3, 3, 24), 0.27), 2), (weight((3, 3, 24, 48), 0.1), 2),
                             (weight((3, 3, 48, 48), 0.07), 1)]
            self.heads = {name: (weight((1, 1, 48, c), 0.2), weight((c,), 0.1)) for name, c in
                          (("centre", 1), ("heatmap", KEYPOINTS), ("regression", 2 * KEYPOINTS),
                           ("offset", 2 * KEYPOINTS))}

        def features(self, image):
            x = tf.cast(image, tf.float32) / 127.5 - 1.0
            for kernel, stride in self.backbone:
                x = tf.nn.relu6(tf.nn.conv2d(x, kernel, stride, "SAME"))
            return {name: tf.nn.conv2d(x, k, 1, "SAME") + b for name, (k, b) in self.heads.items()}

        @tf.function
        def serve(self, input):  # noqa: A002 (the official signature's name)
            heads = self.features(input)
            centre, heatmap = tf.sigmoid(heads["centre"])[0, ..., 0], tf.sigmoid(heads["heatmap"])[0]
            height, width = tf.shape(centre)[0], tf.shape(centre)[1]
            grid_y, grid_x = tf.meshgrid(tf.range(height), tf.range(width), indexing="ij")
            grid_y, grid_x = tf.cast(grid_y, tf.float32), tf.cast(grid_x, tf.float32)
            if multipose:
                peaks = tf.cast(tf.equal(centre, tf.nn.max_pool2d(centre[None, ..., None], 3, 1, "SAME")[0, ..., 0]),
                                tf.float32)
                scores, index = tf.math.top_k(tf.reshape(centre * peaks, [-1]), INSTANCES)
            else:
                distance = tf.sqrt((grid_y - tf.cast(height, tf.float32) / 2) ** 2
                                   + (grid_x - tf.cast(width, tf.float32) / 2) ** 2)
                index = tf.argmax(tf.reshape(centre / (distance + 1.0), [-1]), output_type=tf.int32)[None]
                scores = tf.gather(tf.reshape(centre, [-1]), index)
            cy, cx = index // width, index % width  # [P]
            regression = tf.gather_nd(heads["regression"][0], tf.stack([cy, cx], -1))  # [P, 34]
            ky = tf.cast(cy, tf.float32)[:, None] + regression[:, :KEYPOINTS]
            kx = tf.cast(cx, tf.float32)[:, None] + regression[:, KEYPOINTS:]
            distance = tf.sqrt((grid_y[None, ..., None] - ky[:, None, None]) ** 2
                               + (grid_x[None, ..., None] - kx[:, None, None]) ** 2)  # [P, H, W, 17]
            weighted = tf.reshape(heatmap[None] / (distance + 1.8), [tf.shape(index)[0], -1, KEYPOINTS])
            best = tf.argmax(weighted, axis=1, output_type=tf.int32)  # [P, 17]
            by, bx = best // width, best % width
            keypoint = tf.broadcast_to(tf.range(KEYPOINTS), tf.shape(by))
            score = tf.gather_nd(heatmap, tf.stack([by, bx, keypoint], -1))
            offset_y = tf.gather_nd(heads["offset"][0], tf.stack([by, bx, keypoint], -1))
            offset_x = tf.gather_nd(heads["offset"][0], tf.stack([by, bx, keypoint + KEYPOINTS], -1))
            y = (tf.cast(by, tf.float32) + offset_y) / tf.cast(height, tf.float32)
            x = (tf.cast(bx, tf.float32) + offset_x) / tf.cast(width, tf.float32)
            keypoints = tf.stack([y, x, score], -1)  # [P, 17, 3]
            if not multipose:
                return {"output_0": keypoints[None]}
            box = tf.stack([tf.reduce_min(y, 1), tf.reduce_min(x, 1), tf.reduce_max(y, 1), tf.reduce_max(x, 1),
                            scores], -1)
            return {"output_0": tf.concat([tf.reshape(keypoints, [INSTANCES, 3 * KEYPOINTS]), box], -1)[None]}

    return MoveNetLike()


def write_movenet_saved_model(path: Path, multipose: bool = False, size: int | None = 192, seed: int = 0) -> Path:
    """A TF Hub style tarball (saved_model.pb and variables/ at its root) at `path`. `size`: the
    single-pose input side (192 Lightning, 256 Thunder); multi pose takes any size."""
    import tempfile

    import tensorflow as tf

    module = _module(multipose, seed)
    spec = tf.TensorSpec([1, None, None, 3] if multipose else [1, size, size, 3], tf.int32, name="input")
    with tempfile.TemporaryDirectory() as work:
        tf.saved_model.save(module, work, signatures={"serving_default": module.serve.get_concrete_function(spec)})
        with tarfile.open(path, "w:gz") as tar:
            for item in sorted(Path(work).rglob("*")):
                tar.add(item, arcname=f"./{item.relative_to(work)}", recursive=False)
    return Path(path)


def write_movenet_tflite(path: Path, size: int = 192, seed: int = 0) -> Path:
    """A single-pose file with the signature of Google's float16 TFLite files of MoveNet on TF Hub:
    input `serving_default_input:0` uint8 [1, S, S, 3], output `StatefulPartitionedCall:0` float32
    [1, 1, 17, 3], float16 weights; the same graph as `write_movenet_saved_model` behind a cast."""
    import tempfile

    import tensorflow as tf

    module = _module(False, seed)

    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.uint8, name="input")])
    def serve(input):  # noqa: A002 (the official signature's name)
        return module.serve(tf.cast(input, tf.int32))

    with tempfile.TemporaryDirectory() as work:
        tf.saved_model.save(module, work, signatures={"serving_default": serve})
        converter = tf.lite.TFLiteConverter.from_saved_model(work)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
        Path(path).write_bytes(converter.convert())
    return Path(path)
