"""SavedModel originals: what a user hands over is untrusted (tarball paths and sizes, and every op
a serving call or the loader itself can run)."""
import gzip
import io
import platform
import tarfile
from pathlib import Path

import numpy as np
import pytest

from posezoo.converters.sandbox import SECCOMP_ARCHES, landlock_abi
from posezoo.converters.saved_model import SavedModelError, load_serving, refuse_side_effects, unpack

needs_sandbox = pytest.mark.skipif(not landlock_abi() or platform.machine() not in SECCOMP_ARCHES,
                                   reason="this kernel has no Landlock or this machine no seccomp support here")


def _saved_model(folder: Path, side_effect=None) -> Path:
    """A [1, 2] int32 -> float32 SavedModel; `side_effect(y)` adds ops to its serving function."""
    import tensorflow as tf

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 2], tf.int32, name="input")])
        def serve(self, input):  # noqa: A002
            y = tf.cast(input, tf.float32) * 2.0
            return {"output_0": side_effect(y) if side_effect else y}

    model = Model()
    tf.saved_model.save(model, str(folder), signatures={"serving_default": model.serve})
    return folder


def _tarball(folder: Path, path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=".")
    return path


def test_a_computing_savedmodel_loads_and_runs(tmp_path):
    _, serving = load_serving(_saved_model(tmp_path / "ok"))
    assert serving(input=np.array([[1, 2]], np.int32))["output_0"].numpy().tolist() == [[2.0, 4.0]]


def test_the_movenet_stand_ins_pass_the_allowlist(tmp_path):
    from movenet_official import write_movenet_saved_model

    for multipose in (False, True):
        tarball = write_movenet_saved_model(tmp_path / f"movenet_{multipose}.tar.gz", multipose=multipose)
        refuse_side_effects(unpack(tarball, tmp_path / f"unpacked_{multipose}"))


def _hostile(target: Path):
    """Side effects of several shapes, each writing (or reading) `target` when the serving call runs."""
    import tensorflow as tf

    def write(y):
        tf.io.write_file(str(target), "written by a SavedModel")
        return y

    @tf.function
    def nested(y):
        return write(y) + 1.0

    def in_while_body(y):
        (i,) = tf.while_loop(lambda i: i < 2, lambda i: (tf.identity(write(i)) + 1,), [tf.constant(0)])
        return y + tf.cast(i, tf.float32) * 0.0

    never = lambda y: tf.reduce_sum(y) > 1e9  # noqa: E731 - the branch with the side effect never runs
    return {
        "write": (write, "'WriteFile'"),
        "read": (lambda y: y + tf.cast(tf.strings.length(tf.io.read_file(str(target))), tf.float32) * 0.0,
                 "'ReadFile'"),
        "cond branch": (lambda y: tf.cond(never(y), lambda: write(y), lambda: y), r"'WriteFile'.*\[then_branch\]"),
        "while body": (in_while_body, r"'WriteFile'.*\[body\]"),
        "case branch": (lambda y: tf.switch_case(tf.cast(never(y), tf.int32), [lambda: y, lambda: write(y)]),
                        r"'WriteFile'.*\[branches\]"),
        "nested function": (nested, r"'WriteFile'.*\[f\] -> __inference_nested"),
        "py_function": (lambda y: tf.py_function(lambda v: v, [y], tf.float32), "'EagerPyFunc'"),
    }


@pytest.mark.parametrize("shape", ["write", "read", "cond branch", "while body", "case branch", "nested function",
                                   "py_function"])
def test_a_savedmodel_with_a_side_effect_is_refused_before_it_runs(tmp_path, shape):
    target = tmp_path / "target.txt"
    side_effect, message = _hostile(target)[shape]
    folder = _saved_model(tmp_path / "bad", side_effect)
    with pytest.raises(SavedModelError, match=f"op {message}.*posezoo runs only SavedModels"):
        load_serving(folder)
    assert not target.exists()


def test_a_resource_that_acts_when_the_savedmodel_is_loaded_is_refused(tmp_path):
    """tf.saved_model.load runs a resource's create and initialize functions itself, before any
    serving call: the check covers them (a raw load, the control, does write the file)."""
    import tensorflow as tf

    target = tmp_path / "written_on_load.txt"

    class Resource(tf.saved_model.experimental.TrackableResource):
        def _create_resource(self):
            return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[], shared_name="posezoo_test_resource")

        def _initialize(self):
            tf.io.write_file(str(target), "written by a SavedModel's load")
            return tf.raw_ops.AssignVariableOp(resource=self.resource_handle, value=tf.constant(2.0))

    class Model(tf.Module):
        def __init__(self):
            super().__init__()
            self.resource = Resource()

        @tf.function(input_signature=[tf.TensorSpec([1, 2], tf.int32, name="input")])
        def serve(self, input):  # noqa: A002
            scale = tf.raw_ops.ReadVariableOp(resource=self.resource.resource_handle, dtype=tf.float32)
            return {"output_0": tf.cast(input, tf.float32) * scale}

    model = Model()
    tf.saved_model.save(model, str(tmp_path / "bad"), signatures={"serving_default": model.serve})
    assert not target.exists()
    with pytest.raises(SavedModelError, match="'WriteFile'.*reached by tf.saved_model.load: resource function "
                                              "_initialize"):
        load_serving(tmp_path / "bad")
    assert not target.exists()
    tf.saved_model.load(str(tmp_path / "bad"))
    assert target.exists()


def test_a_call_of_something_the_library_does_not_define_is_refused(tmp_path):
    """TensorFlow instantiates an op by name where a call names no function of the library."""
    from tensorflow.core.protobuf import saved_model_pb2

    folder = _saved_model(tmp_path / "edited")
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((folder / "saved_model.pb").read_bytes())
    calls = [node for f in saved.meta_graphs[0].graph_def.library.function for node in f.node_def
             if node.op in ("PartitionedCall", "StatefulPartitionedCall")]
    calls[0].attr["f"].func.name = "WriteFile"
    (folder / "saved_model.pb").write_bytes(saved.SerializeToString())
    with pytest.raises(SavedModelError, match="calls 'WriteFile', which is not a function of the SavedModel"):
        refuse_side_effects(folder)


def test_a_tf1_savedmodel_is_refused(tmp_path):
    import tensorflow as tf

    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        x = tf.compat.v1.placeholder(tf.float32, [1, 2], name="input")
        tf.compat.v1.saved_model.simple_save(session, str(tmp_path / "v1"), {"input": x}, {"output_0": x * 2.0})
    with pytest.raises(SavedModelError, match="a TF1-format SavedModel .* re-export the model with TensorFlow 2"):
        refuse_side_effects(tmp_path / "v1")


@needs_sandbox
def test_the_sandboxed_original_refuses_a_hostile_savedmodel_with_its_own_error(tmp_path):
    from posezoo.converters.originals import open_original
    from posezoo.recipes import select

    target = tmp_path / "target.txt"
    side_effect, _ = _hostile(target)["cond branch"]
    tarball = _tarball(_saved_model(tmp_path / "bad", side_effect), tmp_path / "bad.tar.gz")
    with pytest.raises(SavedModelError, match=r"'WriteFile'.*\[then_branch\]"):
        open_original(select(["movenet-lightning"])[0], tarball)
    assert not target.exists()


@needs_sandbox
def test_the_movenet_stand_in_computes_the_same_in_the_sandbox(tmp_path):
    from movenet_official import write_movenet_saved_model

    from posezoo.converters.originals import open_in_process, open_original
    from posezoo.recipes import select

    variant = select(["movenet-lightning"])[0]
    tarball = write_movenet_saved_model(tmp_path / "movenet_singlepose_lightning_4.tar.gz", size=192)
    spec = variant.recipe["input"]
    feeds = [{spec["name"]: np.random.default_rng(seed).integers(0, 256, spec["shape"], dtype=np.uint8)}
             for seed in (0, 1)]
    sandboxed = open_original(variant, tarball)
    got = sandboxed.run_many(feeds)
    sandboxed.close()
    in_process = open_in_process("saved_model", None, variant.variant, variant.recipe, tarball)
    for ours, feed in zip(got, feeds):
        expected = in_process.run(feed)
        assert ours.keys() == expected.keys() and all(np.array_equal(ours[k], expected[k]) for k in ours)


def test_a_tarball_escaping_its_folder_is_refused(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"x"
        member = tarfile.TarInfo("../escaped.txt")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    with pytest.raises(SavedModelError, match="not a SavedModel tarball"):
        unpack(archive, tmp_path / "into")
    assert not (tmp_path / "escaped.txt").exists()


class _Zeros(io.RawIOBase):
    def __init__(self, size: int):
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def test_a_tarball_bomb_is_refused_before_anything_is_written(tmp_path):
    """Sizes and count are read from the member headers and capped before anything is written:
    zeros that compress 1000:1 (against a lowered cap, to keep the test small), a header that
    claims 600 MiB (the default cap is 512 MiB), and too many members."""
    bomb = tmp_path / "bomb.tar.gz"
    with tarfile.open(bomb, "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("saved_model.pb"), io.BytesIO(b""))
        member = tarfile.TarInfo("variables/variables.data-00000-of-00001")
        member.size = 6 << 20
        tar.addfile(member, io.BufferedReader(_Zeros(member.size), 1 << 20))
    assert bomb.stat().st_size < 10_000
    with pytest.raises(SavedModelError, match="unpacks to more than 5 MiB .*variables.data"):
        unpack(bomb, tmp_path / "into", max_bytes=5 << 20)

    claim = tarfile.TarInfo("variables/variables.data-00000-of-00001")
    claim.size = 600 << 20
    (tmp_path / "claim.tar.gz").write_bytes(gzip.compress(claim.tobuf()))
    with pytest.raises(SavedModelError, match="unpacks to more than 512 MiB .*variables.data"):
        unpack(tmp_path / "claim.tar.gz", tmp_path / "into")

    many = tmp_path / "many.tar.gz"
    with tarfile.open(many, "w:gz") as tar:
        for i in range(21):
            tar.addfile(tarfile.TarInfo(f"f{i}"), io.BytesIO(b""))
    with pytest.raises(SavedModelError, match="unpacks to more than 20 members"):
        unpack(many, tmp_path / "into", max_members=20)
    assert not (tmp_path / "into").exists()


def test_a_file_that_is_no_tarball_or_has_no_savedmodel_says_so(tmp_path):
    (tmp_path / "page.tar.gz").write_text("<html>sign in</html>")
    with pytest.raises(SavedModelError, match="not a SavedModel tarball"):
        unpack(tmp_path / "page.tar.gz", tmp_path / "a")
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz"):
        pass
    with pytest.raises(SavedModelError, match="no saved_model.pb"):
        unpack(empty, tmp_path / "b")
