"""converters/learned_rounding.py: AdaRound through aimet-onnx on a small random-weight model."""
import numpy as np
import pytest

from test_mixed_precision import tiny_onnx


@pytest.fixture(scope="module")
def rounded(tmp_path_factory):
    from posezoo.converters.learned_rounding import adaround

    folder = tmp_path_factory.mktemp("adaround")
    fp32 = tiny_onnx(folder / "fp32.onnx")
    rng = np.random.default_rng(2)
    # smooth images, as photos are: neighbouring pixels correlate, which is what AdaRound uses (on
    # independent pixels rounding to nearest is already the best choice)
    feeds = [{"x": np.kron(rng.uniform(-1, 1, (1, 3, 4, 4)), np.ones((1, 1, 4, 4))).astype(np.float32)}
             for _ in range(8)]
    record = adaround(fp32, folder / "rounded.onnx", feeds, iterations=200)
    return fp32, folder / "rounded.onnx", feeds, record


def weights(path):
    import onnx
    from onnx import numpy_helper

    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer if len(i.dims) == 4}


def test_learned_weights_lie_on_the_int8_grid_and_onnx_stores_them_in_7_bits(rounded):
    """Per channel, scale max|w| / 127 is unchanged and every weight is an integer multiple of it
    in [-127, 127] (the grid ai-edge-quantizer derives for TFLite, storing the learned integers);
    onnxruntime's ONNX file holds them on its 7-bit grid, max|w| / 64 (converters/onnx_int8.py)."""
    from posezoo.converters.onnx_int8 import onnx_to_int8

    fp32, path, feeds, record = rounded
    before, after = weights(fp32), weights(path)
    assert record["method"] == "adaround" and record["tensors"] == 3 and 0 < record["rounded_other_way"] < 0.5
    qdq = weights(onnx_to_int8(path, path.with_name("q.onnx"), feeds))
    for name, w in after.items():
        scale = np.abs(w).reshape(len(w), -1).max(1) / 127
        np.testing.assert_allclose(scale, np.abs(before[name]).reshape(len(w), -1).max(1) / 127, rtol=1e-6)
        q = w / scale.reshape(-1, 1, 1, 1)
        assert np.abs(q - np.round(q)).max() < 1e-3 and np.abs(q).max() <= 127 + 1e-3
        stored = qdq[name + "_quantized"]
        assert np.abs(stored).max(axis=(1, 2, 3)).tolist() == [64] * len(w)
        np.testing.assert_array_equal(stored, np.clip(np.round(q * 64 / 127), -64, 64).astype(np.int8))


def test_learned_rounding_moves_a_layers_output_less_than_rounding_to_nearest(rounded):
    """What AdaRound minimizes: the first layer's output (after its Clip) on the calibration inputs."""
    import onnx
    from onnx import numpy_helper

    fp32, path, feeds, _ = rounded

    def first_layer(model_path, nearest=False):
        model = onnx.load(str(model_path))
        model.graph.output.append(onnx.ValueInfoProto(name="r1"))
        for init in model.graph.initializer:
            if nearest and len(init.dims) == 4:
                w = numpy_helper.to_array(init)
                scale = np.abs(w).reshape(len(w), -1).max(1).reshape(-1, 1, 1, 1) / 127
                init.CopyFrom(numpy_helper.from_array((np.round(w / scale) * scale).astype(np.float32), init.name))
        from posezoo.runtime import OnnxRuntime

        runner = OnnxRuntime(model.SerializeToString())
        return [runner(f)["r1"] for f in feeds]

    want = first_layer(fp32)
    error = {name: sum(float(np.sum((g - w) ** 2)) for g, w in zip(got, want))
             for name, got in (("nearest", first_layer(fp32, nearest=True)), ("learned", first_layer(path)))}
    assert error["learned"] < 0.95 * error["nearest"], error  # 9 % lower here


def test_learned_rounding_is_the_same_every_time(rounded, tmp_path):
    from posezoo.converters.learned_rounding import adaround

    fp32, path, feeds, _ = rounded
    adaround(fp32, tmp_path / "again.onnx", feeds, iterations=200)
    assert (tmp_path / "again.onnx").read_bytes() == path.read_bytes()


def test_a_rebuild_reuses_the_learned_weights_from_the_cache(tmp_path, monkeypatch):
    """The same model, inputs and steps reuse the cached file (same bytes, not learned again); other
    inputs or steps are another entry; a damaged entry is learned again and replaced."""
    from posezoo.converters import learned_rounding

    fp32 = tiny_onnx(tmp_path / "fp32.onnx")
    rng = np.random.default_rng(3)
    feeds = [{"x": np.kron(rng.uniform(-1, 1, (1, 3, 4, 4)), np.ones((1, 1, 4, 4))).astype(np.float32)}
             for _ in range(4)]
    learned = []
    learn = learned_rounding._learn
    monkeypatch.setattr(learned_rounding, "_learn", lambda *args: learned.append(args[3]) or learn(*args))
    cache = tmp_path / "cache"

    def rounded(name, inputs=feeds, iterations=20):
        record = learned_rounding.adaround(fp32, tmp_path / name, inputs, iterations, cache)
        return record, (tmp_path / name).read_bytes()

    first, first_bytes = rounded("a.onnx")
    again, again_bytes = rounded("b.onnx")
    assert learned == [20] and again == {**first, "from_cache": True} and again_bytes == first_bytes
    rounded("c.onnx", [{"x": f["x"] * 0.5} for f in feeds])
    rounded("d.onnx", iterations=21)
    assert learned == [20, 20, 21] and len(list((cache / "adaround").glob("*/*/record.json"))) == 3
    key = learned_rounding.cache_key(fp32, feeds, 20)
    (cache / "adaround" / key[:2] / key / "rounded.onnx").write_bytes(b"damaged")
    relearned, relearned_bytes = rounded("e.onnx")
    assert learned == [20, 20, 21, 20] and "from_cache" not in relearned and relearned_bytes == first_bytes
    assert rounded("f.onnx")[0]["from_cache"] and learned == [20, 20, 21, 20]
