"""A TensorFlow SavedModel original (TF Hub / Kaggle tarball): unpacked safely, checked, and run
through its serving signature (converters/keras_to_onnx.py turns that function into ONNX).

A SavedModel holds no Python code, but its graph could still call ops that touch files or call
back into Python. Before loading we read the graph and refuse any such op in the functions a
serving call can reach (TensorFlow's own save/restore functions, which a serving call never runs,
are the only exception). The tarball is unpacked with tarfile's `data` filter: no absolute paths,
no `..`, no links out of the folder, no device files.
"""
from __future__ import annotations

import re
import tarfile
from pathlib import Path

SIDE_EFFECT_OPS = re.compile(r"File|Py|Save|Restore|Checkpoint|Summary|Dataset|Iterator|Reader|Writer|Debug|"
                             r"ImmutableConst|Print|Shell|Exec")
SAVER_FUNCTION = re.compile(r"_traced_(save|restore)")  # TensorFlow's own, written by tf.saved_model.save


class SavedModelError(ValueError):
    pass


def unpack(archive: Path, into: Path) -> Path:
    """Unpack `archive` (.tar.gz) into `into`; returns the folder holding saved_model.pb."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise SavedModelError(f"{archive}: not a SavedModel tarball ({type(e).__name__}: {e}). MoveNet's "
                              "SavedModel is the .tar.gz that TF Hub / Kaggle Models offer as 'Download'.") from e
    found = sorted(Path(into).rglob("saved_model.pb"), key=lambda p: len(p.parts))
    if not found:
        raise SavedModelError(f"{archive}: the tarball has no saved_model.pb")
    return found[0].parent


def refuse_side_effects(root: Path) -> None:
    """Raise SavedModelError if a function a serving call can reach uses an op that touches files
    or the process (see SIDE_EFFECT_OPS)."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString((root / "saved_model.pb").read_bytes())
    except DecodeError as e:
        raise SavedModelError(f"{root / 'saved_model.pb'}: not a SavedModel protobuf ({e})") from e
    for meta in saved.meta_graphs:
        savers = {f.signature.name for f in meta.graph_def.library.function if SAVER_FUNCTION.search(f.signature.name)}
        for function in meta.graph_def.library.function:
            if function.signature.name in savers:
                continue
            for node in function.node_def:
                called = {a.func.name for a in node.attr.values() if a.HasField("func")}
                if SIDE_EFFECT_OPS.search(node.op) or called & savers:
                    raise SavedModelError(
                        f"{root}: function {function.signature.name} uses op {node.op!r} "
                        f"({node.name}), which can touch files or the process; posezoo runs only "
                        "SavedModels whose serving functions compute.")


def load_serving(root: Path, signature: str = "serving_default"):
    import tensorflow as tf

    refuse_side_effects(root)
    loaded = tf.saved_model.load(str(root))
    if signature not in loaded.signatures:
        raise SavedModelError(f"{root}: no signature {signature!r} (it has {sorted(loaded.signatures)})")
    return loaded, loaded.signatures[signature]


def serving_function(serving, input_spec: dict, output_names: list[str]):
    """A tf.function of the recipe's input (shape, dtype, name) returning the signature's outputs
    under the recipe's output names (in the signature's key order); inputs are cast to the
    signature's dtype (MoveNet: the pixels as uint8, as Google's TFLite files take them, into its
    int32 input)."""
    import tensorflow as tf

    (key, spec), = serving.structured_input_signature[1].items()
    keys = sorted(serving.structured_outputs)
    if len(keys) != len(output_names):
        raise SavedModelError(f"the signature has outputs {keys}; the recipe names {len(output_names)}")

    @tf.function(input_signature=[tf.TensorSpec(input_spec["shape"], tf.dtypes.as_dtype(input_spec["dtype"]),
                                                name=input_spec["name"])])
    def forward(x):
        outputs = serving(**{key: tf.cast(x, spec.dtype)})
        return {name: outputs[k] for name, k in zip(output_names, keys)}

    return forward
