"""SavedModel originals: what a user hands over is untrusted (tarball paths, side-effect ops)."""
import io
import tarfile

import numpy as np
import pytest

from converters.saved_model import SavedModelError, load_serving, unpack


def _saved_model(folder, reads_a_file: bool):
    import tensorflow as tf

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 2], tf.int32, name="input")])
        def serve(self, input):  # noqa: A002
            y = tf.cast(input, tf.float32) * 2.0
            if reads_a_file:
                y += tf.cast(tf.strings.length(tf.io.read_file("/etc/hostname")), tf.float32) * 0.0
            return {"output_0": y}

    model = Model()
    tf.saved_model.save(model, str(folder), signatures={"serving_default": model.serve})
    return folder


def test_a_computing_savedmodel_loads_and_runs(tmp_path):
    _, serving = load_serving(_saved_model(tmp_path / "ok", reads_a_file=False))
    assert serving(input=np.array([[1, 2]], np.int32))["output_0"].numpy().tolist() == [[2.0, 4.0]]


def test_a_savedmodel_that_reads_files_is_refused_before_it_runs(tmp_path):
    with pytest.raises(SavedModelError, match="ReadFile"):
        load_serving(_saved_model(tmp_path / "bad", reads_a_file=True))


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


def test_a_file_that_is_no_tarball_or_has_no_savedmodel_says_so(tmp_path):
    (tmp_path / "page.tar.gz").write_text("<html>sign in</html>")
    with pytest.raises(SavedModelError, match="not a SavedModel tarball"):
        unpack(tmp_path / "page.tar.gz", tmp_path / "a")
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz"):
        pass
    with pytest.raises(SavedModelError, match="no saved_model.pb"):
        unpack(empty, tmp_path / "b")
