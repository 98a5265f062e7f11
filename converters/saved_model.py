"""A TensorFlow SavedModel original (TF Hub / Kaggle tarball): unpacked safely, checked, and run
through its serving signature (converters/keras_to_onnx.py turns that function into ONNX).

A SavedModel holds no Python code, but its graph could still call ops that touch files, the
network or call back into Python. Before loading we walk everything a serving call and
`tf.saved_model.load` itself can run, and refuse any op outside an allowlist of pure compute ops
(ALLOWED_OPS): the serving signature (as the meta graph's signature_def and as the object graph's
`signatures` entry, which is what TF2's loader calls), the `__saved_model_init_op`, and the
functions the loader runs on its own (resources' create/initialize/destroy functions, checkpoint
restore functions). Every attribute that names a function (`func` and lists of them: If/While/Case
branches, nested calls) is followed through the function library; no function is exempt by name.
TF1-format SavedModels are refused: their loader runs the file's own restore op, which reads files.

The tarball is unpacked with tarfile's `data` filter (no absolute paths, no `..`, no links out of
the folder, no device files) after its member sizes and count are checked against caps. The
original then runs in a sandboxed child process (converters/sandbox.py).
"""
from __future__ import annotations

import tarfile
from pathlib import Path

from posezoo.errors import PosezooError

MAX_UNPACKED_BYTES = 512 << 20  # Google's MoveNet SavedModels are 10-40 MB
MAX_MEMBERS = 10_000

# Ops that only compute on tensors in memory (no files, network, Python callbacks, queues,
# datasets, printing or summaries). Grouped for reading; checked as one set.
ALLOWED_OP_GROUPS = {
    "graph structure": {
        "Const", "Identity", "IdentityN", "NoOp", "Placeholder", "PlaceholderWithDefault", "StopGradient",
        "PreventGradient", "Snapshot", "EnsureShape", "CheckNumerics", "CheckNumericsV2", "Assert",
    },
    "variable reads": {"VarHandleOp", "ReadVariableOp", "VariableShape"},
    "function calls and control flow": {
        "PartitionedCall", "StatefulPartitionedCall", "If", "StatelessIf", "While", "StatelessWhile", "Case",
        "StatelessCase", "Switch", "Merge", "Enter", "Exit", "NextIteration", "LoopCond",
        "TensorListReserve", "TensorListFromTensor", "TensorListGetItem", "TensorListSetItem",
        "TensorListStack", "TensorListElementShape", "TensorListLength", "TensorListPushBack",
        "TensorListPopBack",
    },
    "element-wise math": {
        "Add", "AddV2", "AddN", "Sub", "Mul", "MulNoNan", "Div", "DivNoNan", "RealDiv", "FloorDiv", "FloorMod",
        "TruncateDiv", "TruncateMod", "Mod", "Neg", "Abs", "Sign", "Square", "Sqrt", "Rsqrt", "Reciprocal",
        "Inv", "Exp", "Expm1", "Log", "Log1p", "Pow", "Maximum", "Minimum", "SquaredDifference", "Floor",
        "Ceil", "Round", "Rint", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Atan2", "Sinh", "Cosh", "Tanh",
        "Sigmoid", "Erf", "Erfc", "IsNan", "IsInf", "IsFinite", "ClipByValue", "Cast", "Bitcast",
        "Less", "LessEqual", "Greater", "GreaterEqual", "Equal", "NotEqual", "ApproximateEqual",
        "LogicalAnd", "LogicalOr", "LogicalNot", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "Invert",
        "LeftShift", "RightShift", "Select", "SelectV2",
    },
    "reductions and linear algebra": {
        "Sum", "Mean", "Max", "Min", "Prod", "All", "Any", "ArgMax", "ArgMin", "Cumsum", "Cumprod",
        "MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum", "TopKV2", "Unique",
    },
    "shapes and indexing": {
        "Shape", "ShapeN", "Size", "Rank", "Reshape", "Squeeze", "ExpandDims", "Transpose", "BroadcastTo",
        "BroadcastArgs", "BroadcastGradientArgs", "ConcatV2", "Concat", "Pack", "Unpack", "Split", "SplitV",
        "Slice", "StridedSlice", "Tile", "Pad", "PadV2", "MirrorPad", "Fill", "ZerosLike", "OnesLike", "Range",
        "LinSpace", "GatherV2", "Gather", "GatherNd", "ScatterNd", "TensorScatterUpdate", "TensorScatterAdd",
        "TensorScatterMax", "TensorScatterMin", "Where", "OneHot", "ReverseV2", "SpaceToDepth", "DepthToSpace",
        "SpaceToBatchND", "BatchToSpaceND", "InvertPermutation", "DynamicStitch", "MatrixBandPart",
        "MatrixDiagV3", "MatrixDiagPartV3",
    },
    "neural network layers": {
        "Conv2D", "Conv3D", "Conv2DBackpropInput", "DepthwiseConv2dNative", "DepthwiseConv2dNativeBackpropInput",
        "BiasAdd", "FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3", "Relu", "Relu6", "Elu", "Selu",
        "LeakyRelu", "Softplus", "Softsign", "Softmax", "LogSoftmax", "MaxPool", "MaxPoolV2", "AvgPool",
        "MaxPool3D", "AvgPool3D", "LRN",
    },
    "images": {
        "ResizeBilinear", "ResizeNearestNeighbor", "ResizeBicubic", "ResizeArea", "ScaleAndTranslate",
        "CropAndResize", "NonMaxSuppressionV3", "NonMaxSuppressionV4", "NonMaxSuppressionV5",
    },
    "quantization-aware training": {
        "FakeQuantWithMinMaxArgs", "FakeQuantWithMinMaxVars", "FakeQuantWithMinMaxVarsPerChannel",
        "QuantizeAndDequantizeV2", "QuantizeAndDequantizeV3", "QuantizeAndDequantizeV4",
    },
}
ALLOWED_OPS = frozenset().union(*ALLOWED_OP_GROUPS.values())
INIT_OP_SIGNATURE = "__saved_model_init_op"


class SavedModelError(PosezooError):
    pass


def unpack(archive: Path, into: Path, max_bytes: int = MAX_UNPACKED_BYTES, max_members: int = MAX_MEMBERS) -> Path:
    """Unpack `archive` (.tar.gz) into `into`; returns the folder holding saved_model.pb. Member
    sizes and count are read from the headers and capped before anything is written."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            total = 0
            for count, member in enumerate(tar, 1):
                total += member.size
                if count > max_members or total > max_bytes:
                    too_much = (f"more than {max_members} members" if count > max_members else
                                f"more than {max_bytes >> 20} MiB (at member {member.name!r}, {member.size} bytes)")
                    raise SavedModelError(
                        f"{archive}: the tarball unpacks to {too_much}; a pose model's SavedModel is a few files "
                        "of tens of MB. Pass the SavedModel tarball that TF Hub / Kaggle Models offer as 'Download'.")
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise SavedModelError(f"{archive}: not a SavedModel tarball ({type(e).__name__}: {e}). MoveNet's "
                              "SavedModel is the .tar.gz that TF Hub / Kaggle Models offer as 'Download'.") from e
    found = sorted(Path(into).rglob("saved_model.pb"), key=lambda p: len(p.parts))
    if not found:
        raise SavedModelError(f"{archive}: the tarball has no saved_model.pb")
    return found[0].parent


def refuse_side_effects(root: Path, signature: str = "serving_default", source: Path | None = None) -> None:
    """Raise SavedModelError unless every op that the `signature` call or `tf.saved_model.load`
    can run is in ALLOWED_OPS; the message names `source` (the tarball; default `root`), the op,
    its node and function, and the path by which it is reached."""
    source = source or root
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString((root / "saved_model.pb").read_bytes())
    except DecodeError as e:
        raise SavedModelError(f"{source}: saved_model.pb is not a SavedModel protobuf ({e})") from e
    if len(saved.meta_graphs) != 1 or not saved.meta_graphs[0].HasField("object_graph_def"):
        raise SavedModelError(
            f"{source}: a TF1-format SavedModel (not one meta graph with an object graph); loading it runs its own "
            "restore and init ops. posezoo loads TF2 SavedModels (tf.saved_model.save), as TF Hub publishes "
            "MoveNet; re-export the model with TensorFlow 2.")
    meta = saved.meta_graphs[0]
    if signature not in meta.signature_def:
        raise SavedModelError(f"{source}: no signature {signature!r} (it has {sorted(meta.signature_def)})")
    _Walk(source, meta).run(signature)


class _Walk:
    """Checks the main graph's nodes a signature's tensors depend on (walking inputs backward) and
    every node of every function they reach, transitively (a worklist, not recursion: a hostile
    file may nest calls deeply)."""

    def __init__(self, source: Path, meta):
        self.source, self.meta = source, meta
        self.library = {f.signature.name: f for f in meta.graph_def.library.function}
        self.nodes = {n.name: n for n in meta.graph_def.node}
        self.pending: list[tuple[str, list[str]]] = []  # (function, how it is reached)

    def run(self, signature: str) -> None:
        for name in (signature, INIT_OP_SIGNATURE):
            if name in self.meta.signature_def:
                sig = self.meta.signature_def[name]
                tensors = [t.name for t in (*sig.inputs.values(), *sig.outputs.values())]
                self.main_graph(tensors, [f"signature_def {name!r}"])
        self.pending.extend(self.loaded_functions(self.meta.object_graph_def.nodes, signature))
        checked = set()
        while self.pending:
            name, path = self.pending.pop()
            if name in checked:
                continue
            if name not in self.library:
                raise SavedModelError(f"{self.source}: {' -> '.join(path)} calls {name!r}, which is not a function "
                                      "of the SavedModel; posezoo runs only functions the SavedModel defines.")
            checked.add(name)
            for node in self.library[name].node_def:
                self.node(node, name, [*path, name])

    def loaded_functions(self, objects, signature: str):
        """(function, path) for what TF2's loader calls: the object graph's signature, resources'
        functions, checkpoint restore functions."""
        def functions_of(node_id: int) -> list[str]:
            node = objects[node_id]
            kind = node.WhichOneof("kind")
            if kind == "bare_concrete_function":
                return [node.bare_concrete_function.concrete_function_name]
            return list(node.function.concrete_functions) if kind == "function" else []

        signatures = next((c.node_id for c in objects[0].children if c.local_name == "signatures"), None)
        if signatures is not None:
            for child in objects[signatures].children:
                if child.local_name == signature:
                    yield from ((f, [f"object graph signatures/{signature}"]) for f in functions_of(child.node_id))
        for node_id, node in enumerate(objects):
            if node.WhichOneof("kind") == "resource":
                for child in node.children:
                    yield from ((f, [f"tf.saved_model.load: resource function {child.local_name}"])
                                for f in functions_of(child.node_id))
            for name, saveable in node.saveable_objects.items():
                yield from ((f, [f"tf.saved_model.load: restore function of {name!r} (object {node_id})"])
                            for f in functions_of(saveable.restore_function))

    def main_graph(self, tensors: list[str], path: list[str]) -> None:
        pending, seen = [t.split(":")[0].lstrip("^") for t in tensors], set()
        while pending:
            name = pending.pop()
            if name in seen:
                continue
            seen.add(name)
            if name not in self.nodes:
                raise SavedModelError(f"{self.source}: {path[0]} names tensor {name!r}, which the graph does not have")
            node = self.nodes[name]
            self.node(node, "the main graph", path)
            pending.extend(i.split(":")[0].lstrip("^") for i in node.input)

    def node(self, node, function: str, path: list[str]) -> None:
        """Refuse `node` unless it computes; queue the functions it calls."""
        if node.op in self.library:  # a node may call a function by naming it as its op
            self.pending.append((node.op, [*path, f"node {node.name}"]))
        elif node.op not in ALLOWED_OPS:
            raise SavedModelError(
                f"{self.source}: op {node.op!r} (node {node.name!r} in {function}) is not a pure compute op; reached "
                f"by {' -> '.join(path)}. posezoo runs only SavedModels whose serving and load-time functions "
                "compute (see ALLOWED_OPS in converters/saved_model.py).")
        self.pending.extend((called, [*path, f"node {node.name} [{attr}]"])
                            for attr, called in _called_functions(node.attr))


def _called_functions(attrs):
    """(attribute, function name) for every function an attribute map names: `func` and lists of
    them (Case branches), including functions named inside a function's own attributes."""
    for key, value in sorted(attrs.items()):
        for func in ([value.func] if value.HasField("func") else value.list.func):
            yield key, func.name
            yield from ((f"{key}.{inner}", name) for inner, name in _called_functions(func.attr))


def load_serving(root: Path, signature: str = "serving_default", source: Path | None = None):
    import tensorflow as tf

    refuse_side_effects(root, signature, source)
    loaded = tf.saved_model.load(str(root))
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
