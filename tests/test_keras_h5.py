"""The Keras .h5 loader rebuilds a model without running code stored in the file."""
import numpy as np
import pytest

from posezoo.converters.keras_h5 import KerasFileError, lambda_digest, load_h5


@pytest.fixture
def h5_with_lambda(tmp_path):
    """A small tf_keras model whose Lambda would write a marker file if its code ever ran."""
    import tf_keras

    marker = tmp_path / "code-ran"

    def evil(x, marker=str(marker)):
        open(marker, "w").close()
        return x * 2.0

    inp = tf_keras.Input((8, 8, 3), name="image")
    x = tf_keras.layers.Conv2D(4, 3, padding="same", name="conv")(inp)
    out = tf_keras.layers.Lambda(evil, name="double")(x)
    path = tmp_path / "model.h5"
    tf_keras.Model(inp, out).save(path)
    marker.unlink(missing_ok=True)  # saving traced the function once
    return path, marker


def test_unknown_lambda_is_refused_without_running_it(h5_with_lambda):
    path, marker = h5_with_lambda
    with pytest.raises(KerasFileError, match="'double' is a Lambda whose code we do not know"):
        load_h5(path, {}, {})
    assert not marker.exists()


def test_known_lambda_is_replaced_by_our_layer_and_weights_load(h5_with_lambda):
    import h5py
    import json
    import tf_keras

    path, marker = h5_with_lambda

    class Double(tf_keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    with h5py.File(path) as f:
        layer = next(l for l in json.loads(f.attrs["model_config"])["config"]["layers"] if l["name"] == "double")
        kernel = f["model_weights/conv/conv/kernel:0"][()]
    model = load_h5(path, {}, {lambda_digest(layer): Double})
    np.testing.assert_array_equal(model.get_layer("conv").get_weights()[0], kernel)
    x = np.ones((1, 8, 8, 3), np.float32)
    conv = model.get_layer("conv")(x).numpy()
    np.testing.assert_allclose(model(x).numpy(), 2.0 * conv, rtol=1e-6)
    assert not marker.exists()


def test_not_a_keras_file(tmp_path):
    bad = tmp_path / "x.h5"
    bad.write_bytes(b"<html>moved</html>")
    with pytest.raises(KerasFileError, match="not a Keras .h5 model"):
        load_h5(bad, {}, {})


def test_efficientpose_original_loads_with_the_authors_weights(shared):
    """The genuine RT-Lite file: our loader's model agrees with the authors' own TFLite export."""
    from ai_edge_litert.interpreter import Interpreter

    from posezoo.recipes import select

    variant = select(["efficientpose-rt-lite"])[0]
    model = variant.family_module("original").load(shared / "checkpoints/efficientpose/EfficientPoseRT_LITE.h5",
                                                   variant.recipe)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 224, 224, 3)).astype(np.float32)
    interpreter = Interpreter(str(shared / "checkpoints/efficientpose/EfficientPoseRT_LITE.tflite"))
    interpreter.resize_tensor_input(0, [1, 224, 224, 3])
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    theirs = interpreter.get_tensor(interpreter.get_output_details()[-1]["index"])
    ours = model(x).numpy()
    assert np.abs(ours - theirs).max() < 0.01 * (theirs.max() - theirs.min())  # their file has FP16 weights
