"""EfficientPose (Groos et al.) Keras originals: the custom objects and known Lambda layers.

The authors' `.h5` files (Keras 2.2.4/2.3.1) use `Swish` activation layers with their `eswish`
(beta 1.25) and `swish1` functions, a `BilinearWeights` initializer for the upsampling
transposed convolutions, and two Lambda functions from their `utils/units.py`: the identity and
the squeeze-and-excitation spatial mean. We provide those here; the loader matches each Lambda's
bytecode by sha256 and never runs it.
"""
from __future__ import annotations

from pathlib import Path

import tensorflow as tf
import tf_keras

from posezoo.converters.keras_h5 import load_h5


def eswish(x):
    return 1.25 * x * tf.sigmoid(x)


def swish1(x):
    return x * tf.sigmoid(x)


class Swish(tf_keras.layers.Activation):
    pass


class BilinearWeights(tf_keras.initializers.Initializer):
    """Initializer of the upsampling kernels; the file's trained weights replace it on load."""

    def __init__(self, shape=None, dtype=None):
        self.shape = shape

    def __call__(self, shape, dtype=None):
        return tf.zeros(shape, dtype or tf.float32)

    def get_config(self):
        return {"shape": self.shape}


class Identity(tf_keras.layers.Layer):
    def call(self, x):
        return x


class SpatialMean(tf_keras.layers.Layer):
    """Squeeze step of squeeze-and-excitation: mean over height and width, kept as 1x1."""

    def call(self, x):
        return tf.reduce_mean(x, axis=[1, 2], keepdims=True)


KNOWN_LAMBDAS = {
    "6fa81d9aedbdf56d40e369dd30c52ee4414044d458f0f615528c5b584c8b292b": Identity,  # lambda x: x
    "04279134bfe7be1a8ba86d75b801c3ed6c26a4dba79b4f5cf0e6b48197987a4f": SpatialMean,  # K.mean(a, [1, 2], keepdims)
}
CUSTOM_OBJECTS = {"Swish": Swish, "eswish": eswish, "swish1": swish1, "BilinearWeights": BilinearWeights}


def load(path: Path, recipe: dict):
    """The variant's Keras model with the authors' weights, input fixed to the recipe's size."""
    return load_h5(path, CUSTOM_OBJECTS, KNOWN_LAMBDAS, input_shape=recipe["input"]["shape"][1:])
