"""TFLite files with exactly the official signatures of Google's PoseNet MobileNet v1 files, around
a MobileNet v1 with random weights (the genuine files cannot be downloaded here; these go through
the same build as a user's copy would):

- 1.00, 257x257 (posenet_mobilenet_v1_100_257x257_multi_kpt_stripped.tflite): input `sub_2`
  1x257x257x3 float32; outputs `MobilenetV1/heatmap_2/BiasAdd` 1x9x9x17,
  `MobilenetV1/offset_2/BiasAdd` 1x9x9x34, `MobilenetV1/displacement_fwd_2/BiasAdd` and
  `MobilenetV1/displacement_bwd_2/BiasAdd` 1x9x9x32, all float32, no signature, as the TensorFlow
  Lite examples and many readers of that file list them (output stride 32).
- 0.75, 353x257 (TF Hub lite-model posenet/mobilenet/float/075): the same names, depth
  multiplier 0.75, output stride 16 (the last stride-2 block dilated instead, as PoseNet does),
  outputs 1x23x17x{17,34,32,32}.
"""
from pathlib import Path

import numpy as np

BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
          (512, 1), (1024, 2), (1024, 1)]  # MobileNet v1: pointwise channels and depthwise stride
HEADS = [("heatmap_2", 17), ("offset_2", 34), ("displacement_fwd_2", 32), ("displacement_bwd_2", 32)]


def write_posenet_tflite(path: Path, seed: int = 0, multiplier: float = 1.0, input_hw: tuple[int, int] = (257, 257),
                         output_stride: int = 32) -> Path:
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    constant = lambda shape, std: tf.constant(rng.normal(0, std, shape).astype(np.float32))  # noqa: E731
    graph = tf.Graph()
    with graph.as_default():
        image = tf.compat.v1.placeholder(tf.float32, [1, *input_hw, 3], name="sub_2")

        def conv(x, cin, cout, k, stride, scope):
            with tf.compat.v1.name_scope(scope):
                y = tf.nn.conv2d(x, constant((k, k, cin, cout), (2.0 / (k * k * cin)) ** 0.5), stride, "SAME")
                return tf.nn.relu6(tf.nn.bias_add(y, constant(cout, 0.1)))

        def depthwise(x, c, stride, rate, scope):
            with tf.compat.v1.name_scope(scope):
                y = tf.nn.depthwise_conv2d(x, constant((3, 3, c, 1), (2.0 / 9) ** 0.5), [1, stride, stride, 1],
                                           "SAME", dilations=[rate, rate])
                return tf.nn.relu6(tf.nn.bias_add(y, constant(c, 0.1)))

        width = int(32 * multiplier)
        x, channels, current_stride, rate = conv(image, 3, width, 3, 2, "MobilenetV1/Conv2d_0"), width, 2, 1
        for i, (cout, stride) in enumerate(BLOCKS, 1):
            if stride == 2 and current_stride == output_stride:  # keep the resolution, widen the view
                stride, rate = 1, rate * 2
            current_stride *= stride
            x = depthwise(x, channels, stride, rate, f"MobilenetV1/Conv2d_{i}_depthwise")
            cout = int(cout * multiplier)
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
