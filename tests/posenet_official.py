"""A TFLite file with exactly the official signature of Google's PoseNet MobileNet v1 1.00 257x257
(posenet_mobilenet_v1_100_257x257_multi_kpt_stripped.tflite: input `sub_2` 1x257x257x3 float32;
outputs `MobilenetV1/heatmap_2/BiasAdd` 1x9x9x17, `MobilenetV1/offset_2/BiasAdd` 1x9x9x34,
`MobilenetV1/displacement_fwd_2/BiasAdd` and `MobilenetV1/displacement_bwd_2/BiasAdd` 1x9x9x32, all
float32, no signature), as the TensorFlow Lite examples and many readers of that file list them,
around a MobileNet v1 (depth multiplier 1.0, output stride 32) with random weights. The genuine
file cannot be downloaded here; this one goes through the same build as a user's copy would."""
from pathlib import Path

import numpy as np

BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
          (512, 1), (1024, 2), (1024, 1)]  # MobileNet v1: pointwise channels and depthwise stride
HEADS = [("heatmap_2", 17), ("offset_2", 34), ("displacement_fwd_2", 32), ("displacement_bwd_2", 32)]


def write_posenet_tflite(path: Path, seed: int = 0) -> Path:
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    constant = lambda shape, std: tf.constant(rng.normal(0, std, shape).astype(np.float32))  # noqa: E731
    graph = tf.Graph()
    with graph.as_default():
        image = tf.compat.v1.placeholder(tf.float32, [1, 257, 257, 3], name="sub_2")

        def conv(x, cin, cout, k, stride, scope):
            with tf.compat.v1.name_scope(scope):
                y = tf.nn.conv2d(x, constant((k, k, cin, cout), (2.0 / (k * k * cin)) ** 0.5), stride, "SAME")
                return tf.nn.relu6(tf.nn.bias_add(y, constant(cout, 0.1)))

        def depthwise(x, c, stride, scope):
            with tf.compat.v1.name_scope(scope):
                y = tf.nn.depthwise_conv2d(x, constant((3, 3, c, 1), (2.0 / 9) ** 0.5), [1, stride, stride, 1], "SAME")
                return tf.nn.relu6(tf.nn.bias_add(y, constant(c, 0.1)))

        x, channels = conv(image, 3, 32, 3, 2, "MobilenetV1/Conv2d_0"), 32
        for i, (cout, stride) in enumerate(BLOCKS, 1):
            x = depthwise(x, channels, stride, f"MobilenetV1/Conv2d_{i}_depthwise")
            x, channels = conv(x, channels, cout, 1, 1, f"MobilenetV1/Conv2d_{i}_pointwise"), cout
        outputs = []
        for name, c in HEADS:
            with tf.compat.v1.name_scope(f"MobilenetV1/{name}"):
                y = tf.nn.conv2d(x, constant((1, 1, channels, c), 0.05), 1, "SAME")
                outputs.append(tf.nn.bias_add(y, constant(c, 0.5), name="BiasAdd"))
        with tf.compat.v1.Session(graph=graph) as session:
            data = tf.compat.v1.lite.TFLiteConverter.from_session(session, [image], outputs).convert()
    Path(path).write_bytes(data)
    return Path(path)
