"""Load a Keras 2 `.h5` model without running any code stored in it.

A Keras `.h5` file may carry Python bytecode (`Lambda` layers hold marshalled functions) that
`load_model` would execute. We never deserialize it: the architecture JSON is rebuilt with
tf_keras from layer classes we know, each `Lambda` is replaced by a layer the family's code
provides for that exact bytecode (matched by sha256; an unknown one is refused), and only the
weight arrays are read from the file.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from posezoo.errors import PosezooError


class KerasFileError(PosezooError):
    pass


def lambda_digest(layer_config: dict) -> str:
    """sha256 of a Lambda layer's marshalled function and its bound arguments (its identity)."""
    function = layer_config["config"]["function"]
    return hashlib.sha256(json.dumps(function, sort_keys=True).encode()).hexdigest()


def load_h5(path: Path, custom_objects: dict, lambdas: dict[str, type], input_shape: list[int] | None = None):
    """The tf_keras model of `path` with its weights.

    `lambdas` maps a Lambda's digest (`lambda_digest`) to the layer class that computes the same
    function; `input_shape` (HxWxC) fixes the input size of models saved with free dimensions."""
    import h5py
    import tf_keras

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            config = json.loads(f.attrs["model_config"])
    except (OSError, KeyError, json.JSONDecodeError) as e:
        raise KerasFileError(f"{path}: not a Keras .h5 model with an architecture ({type(e).__name__}: {e})") from e
    layers = config["config"]["layers"]
    for layer in layers:
        if layer["class_name"] == "Lambda":
            digest = lambda_digest(layer)
            if digest not in lambdas:
                raise KerasFileError(
                    f"{path}: layer {layer['name']!r} is a Lambda whose code we do not know (sha256 {digest}). "
                    "posezoo never runs code from a model file; if this is a genuine variant of the family, "
                    "add a layer computing the same function to the family's known lambdas.")
            layer["class_name"] = lambdas[digest].__name__
            layer["config"] = {"name": layer["config"]["name"], "trainable": False}
        elif layer["class_name"] == "InputLayer" and input_shape:
            layer["config"]["batch_input_shape"] = [None, *input_shape]
    objects = {**custom_objects, **{cls.__name__: cls for cls in lambdas.values()}}
    try:
        model = tf_keras.Model.from_config(config["config"], custom_objects=objects)
        model.load_weights(str(path))
    except (ValueError, TypeError) as e:
        raise KerasFileError(f"{path}: does not match the expected Keras architecture: {e}") from e
    return model
