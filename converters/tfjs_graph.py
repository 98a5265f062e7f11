"""A TensorFlow.js graph model original (`model.json` + the weight files it names): its topology
and weights turned into a TensorFlow graph and run in TensorFlow as the reference for parity,
then converted like a SavedModel (its function to ONNX with tf2onnx).

Loading runs nothing from the file: `model.json` is parsed as JSON, its `modelTopology` as a
GraphDef protobuf (no Python, no functions: a graph with a function library is refused), and every
op must be a pure compute op of the SavedModel allowlist (converters/saved_model.py ALLOWED_OPS),
or one of the fused ops the tfjs converter writes, which are rewritten into plain TensorFlow ops
(`FusedDepthwiseConv2dNative` exists only in TensorFlow.js). The weights are raw little-endian
bytes cut by the manifest's shapes and dtypes; float16-stored weights (tfjs `quantization`
float16) and uint8/uint16 affine ones are expanded to float32 exactly as tfjs does when it loads
them. The weight files are read beside `model.json` by their plain names (no folders), as tfjs
itself reads them; the build has verified each against the recipe's sha256 (converters/sources.py
companions) before we get here.
"""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np

from posezoo.errors import PosezooError

from .saved_model import ALLOWED_OPS

MAX_JSON_BYTES = 32 << 20  # the topology of a pose model is well under 1 MB
MAX_WEIGHT_BYTES = 512 << 20
FUSED_OPS = {"_FusedConv2D": "Conv2D", "FusedDepthwiseConv2dNative": "DepthwiseConv2dNative",
             "_FusedMatMul": "MatMul"}
ACTIVATIONS = {"Relu", "Relu6", "Elu", "Sigmoid", "Tanh", "LeakyRelu"}  # TF ops; tfjs's Prelu is not one
DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_, "uint8": np.uint8}
STORED = {"float16": np.float16, "uint8": np.uint8, "uint16": np.uint16}  # tfjs `quantization.dtype`


# What posezoo reads of a model.json (checked before anything else is read).
MODEL_JSON_SCHEMA = {
    "type": "object", "required": ["format", "modelTopology", "weightsManifest", "signature"],
    "properties": {
        "modelTopology": {"type": "object"},
        "signature": {"type": "object", "required": ["inputs", "outputs"],
                      "properties": {"inputs": {"type": "object"}, "outputs": {"type": "object"}}},
        "weightsManifest": {"type": "array", "items": {
            "type": "object", "required": ["paths", "weights"],
            "properties": {"paths": {"type": "array", "items": {"type": "string"}},
                           "weights": {"type": "array", "items": {
                               "type": "object", "required": ["name", "shape", "dtype"],
                               "properties": {"name": {"type": "string"}, "dtype": {"type": "string"},
                                              "shape": {"type": "array", "items": {"type": "integer"}},
                                              "quantization": {"type": "object"}}}}}}},
    },
}


class TfjsGraphError(PosezooError):
    pass


def read_model_json(path: Path) -> dict:
    """model.json parsed, with its format and required keys checked."""
    path = Path(path)
    if path.stat().st_size > MAX_JSON_BYTES:
        raise TfjsGraphError(f"{path}: {path.stat().st_size} bytes is too large for a tfjs model.json "
                             f"(cap {MAX_JSON_BYTES >> 20} MiB)")
    try:
        model = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise TfjsGraphError(f"{path}: not a tfjs model.json ({e})") from e
    if not isinstance(model, dict) or model.get("format") != "graph-model":
        found = model.get("format") if isinstance(model, dict) else type(model).__name__
        raise TfjsGraphError(f"{path}: not a TensorFlow.js graph model (format {found!r}, expected "
                             "'graph-model'); a tfjs layers model is not supported")
    try:
        jsonschema.validate(model, MODEL_JSON_SCHEMA)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise TfjsGraphError(f"{path}: not a tfjs graph model.json at {where}: {e.message}") from None
    return model


def provenance(path: Path) -> dict:
    """What model.json says about its own making (the manifest's `source.derived`): who converted
    it, from what, how many weights are stored at reduced precision, and that in words."""
    model = read_model_json(path)
    weights = [w for group in model["weightsManifest"] for w in group["weights"]]
    stored: dict[str, int] = {}
    for w in weights:
        kind = (w.get("quantization") or {}).get("dtype")
        if kind:
            stored[kind] = stored.get(kind, 0) + 1
    by, source = str(model.get("convertedBy", "someone unnamed")), str(model.get("generatedBy", "an unnamed model"))
    rounded = ", ".join(f"{n} are stored as {kind} (their values rounded to it)" for kind, n in stored.items())
    return {"format": "tfjs graph model", "converted_by": by, "converted_from": source, "weights": len(weights),
            "weights_stored_as": stored,
            "summary": (f"A TensorFlow.js graph model converted from {source} by {by}: the publisher's trained "
                        f"weights, not the publisher's own file. Of its {len(weights)} weight tensors, "
                        f"{rounded or 'none are stored at reduced precision'}.")}


def weight_files(model: dict, where: str) -> list[str]:
    """The weight files model.json names, each a plain file name beside it."""
    names = [p for group in model["weightsManifest"] for p in group["paths"]]
    for name in names:
        if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
            raise TfjsGraphError(f"{where}: weight file {name!r} is not a plain file name beside model.json")
    return names


def load_graph(path: Path):
    """The tfjs graph model at `path` as a tf.compat.v1 GraphDef with its weights in place and its
    fused ops rewritten, plus its signature (input and output tensor names)."""
    from google.protobuf import json_format
    from tensorflow.core.framework import graph_pb2

    path = Path(path)
    model = read_model_json(path)
    graph = graph_pb2.GraphDef()
    try:
        json_format.ParseDict(model["modelTopology"], graph)
    except json_format.ParseError as e:
        raise TfjsGraphError(f"{path}: modelTopology is not a TensorFlow GraphDef ({e})") from e
    if graph.library.function:
        raise TfjsGraphError(f"{path}: the graph has a function library (control flow); posezoo loads tfjs graph "
                             "models of plain ops only")
    for node in graph.node:
        if node.op not in ALLOWED_OPS and node.op not in FUSED_OPS:
            raise TfjsGraphError(f"{path}: op {node.op!r} (node {node.name!r}) is not a pure compute op; posezoo "
                                 "runs only graphs of the ops in converters/saved_model.py ALLOWED_OPS")
    _fill_weights(graph, model, path)
    return _unfused(graph, path), model["signature"]


def _fill_weights(graph, model: dict, path: Path) -> None:
    """Put each weight of the manifest into the Const node of its name."""
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

    consts = {n.name: n for n in graph.node if n.op == "Const"}
    names = weight_files(model, str(path))
    total = sum((path.parent / name).stat().st_size for name in names if (path.parent / name).is_file())
    if total > MAX_WEIGHT_BYTES:
        raise TfjsGraphError(f"{path}: its weight files hold {total} bytes (cap {MAX_WEIGHT_BYTES >> 20} MiB)")
    for group in model["weightsManifest"]:
        missing = [name for name in group["paths"] if not (path.parent / name).is_file()]
        if missing:
            raise TfjsGraphError(f"{path}: weight file {missing[0]} is missing; tfjs models keep their weight files "
                                 "beside model.json")
        data = b"".join((path.parent / name).read_bytes() for name in group["paths"])
        offset = 0
        for w in group["weights"]:
            value, used = _decode(w, data, offset, path)
            offset += used
            node = consts.get(w["name"])
            if node is None:
                raise TfjsGraphError(f"{path}: weight {w['name']!r} has no Const node in the graph")
            dtype = {np.float32: types_pb2.DT_FLOAT, np.int32: types_pb2.DT_INT32, np.bool_: types_pb2.DT_BOOL,
                     np.uint8: types_pb2.DT_UINT8}[value.dtype.type]
            shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d)
                                                           for d in value.shape])
            node.attr["value"].tensor.CopyFrom(tensor_pb2.TensorProto(
                dtype=dtype, tensor_shape=shape, tensor_content=value.astype(value.dtype.newbyteorder("<")).tobytes()))
            node.attr["dtype"].type = dtype
        if offset != len(data):
            raise TfjsGraphError(f"{path}: the weight files {group['paths']} hold {len(data)} bytes, the manifest "
                                 f"describes {offset}")
    empty = [n.name for n in consts.values() if not n.attr["value"].tensor.ListFields()]
    if empty:
        raise TfjsGraphError(f"{path}: {len(empty)} Const nodes have no value (first: {empty[0]!r})")


def _decode(weight: dict, data: bytes, offset: int, path: Path) -> tuple[np.ndarray, int]:
    """One weight's float32/int32 value from `data` at `offset`, and the bytes it used."""
    try:
        dtype = DTYPES[weight["dtype"]]
        shape = [int(d) for d in weight["shape"]]
        quantization = weight.get("quantization") or {}
        stored = STORED.get(quantization["dtype"]) if quantization else dtype
        scale, low = (float(quantization["scale"]), float(quantization["min"])) if stored in (np.uint8, np.uint16) \
            else (None, None)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise TfjsGraphError(f"{path}: weight {weight.get('name')!r} has an unsupported dtype, shape or "
                             f"quantization ({type(e).__name__}: {e})") from e
    if stored is None:
        raise TfjsGraphError(f"{path}: weight {weight['name']!r} is stored as {quantization['dtype']!r}, "
                             f"which posezoo does not read (float16, uint8, uint16)")
    if any(d < 0 for d in shape):
        raise TfjsGraphError(f"{path}: weight {weight['name']!r} has a negative dimension {shape}")
    count = int(np.prod(shape)) if shape else 1
    size = count * np.dtype(stored).itemsize
    if offset + size > len(data):
        raise TfjsGraphError(f"{path}: the weight files end inside weight {weight['name']!r}")
    raw = np.frombuffer(data, dtype=np.dtype(stored).newbyteorder("<"), count=count, offset=offset)
    if scale is not None:  # affine: value = q * scale + min (tfjs's dequantization)
        raw = raw.astype(np.float32) * np.float32(scale) + np.float32(low)
    return raw.astype(dtype).reshape(shape), size


def _unfused(graph, path: Path):
    """`graph` with every fused op written as its plain ops: the convolution or matmul, then each
    of `fused_ops` in order (BiasAdd, an activation), the last one keeping the node's name."""
    from tensorflow.core.framework import graph_pb2

    out = graph_pb2.GraphDef(versions=graph.versions)
    for node in graph.node:
        if node.op not in FUSED_OPS:
            out.node.add().CopyFrom(node)
            continue
        steps = [s.decode() for s in node.attr["fused_ops"].list.s]
        args = list(node.input[2:2 + node.attr["num_args"].i])
        control = [i for i in node.input if i.startswith("^")]
        if not steps or steps[0] != "BiasAdd" or any(s not in ACTIVATIONS for s in steps[1:]) or len(steps) > 2:
            raise TfjsGraphError(f"{path}: node {node.name!r} fuses {steps}; posezoo unfuses BiasAdd and one "
                                 "activation only")
        chain = [(FUSED_OPS[node.op], list(node.input[:2]) + control)]
        chain.append(("BiasAdd", [args[0]]))
        if len(steps) == 2:
            chain.append((steps[1], []))
        previous = None
        for k, (op, inputs) in enumerate(chain):
            new = out.node.add(name=node.name if k == len(chain) - 1 else f"{node.name}/unfused_{op}", op=op,
                               device=node.device)
            new.input.extend(inputs if previous is None else [previous, *inputs])
            new.attr["T"].CopyFrom(node.attr["T"])
            if k == 0:
                keep = ("strides", "padding", "explicit_paddings", "data_format", "dilations", "transpose_a",
                        "transpose_b")
                for key in keep:
                    if key in node.attr and not (key == "explicit_paddings" and op == "MatMul"):
                        new.attr[key].CopyFrom(node.attr[key])
            elif op == "BiasAdd" and "data_format" in node.attr:
                new.attr["data_format"].CopyFrom(node.attr["data_format"])
            elif op == "LeakyRelu":
                new.attr["alpha"].f = node.attr["leakyrelu_alpha"].f
            previous = new.name
    return out


def signature_tensors(signature: dict, output_names: list[str], path: Path) -> tuple[tuple[str, str], list[str]]:
    """((input tensor, its dtype), the output tensor of each of `output_names`): the only output,
    or each recipe name's tensor (NAME or NAME:0) among the signature's outputs."""
    try:
        (entry,) = signature["inputs"].values()
        outputs = [o["name"] for o in signature["outputs"].values()]
        source = (entry["name"], entry["dtype"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise TfjsGraphError(f"{path}: the signature must name one input and its outputs ({e})") from e
    if len(outputs) != len(output_names):
        raise TfjsGraphError(f"{path}: the signature has outputs {outputs}; the recipe names {output_names}")
    if len(outputs) == 1:
        return source, outputs
    missing = [n for n in output_names if n not in outputs and f"{n}:0" not in outputs]
    if missing:
        raise TfjsGraphError(f"{path}: the signature has no output {missing[0]!r} (it has {outputs})")
    return source, [n if n in outputs else f"{n}:0" for n in output_names]


def graph_function(path: Path, input_spec: dict, output_names: list[str]):
    """The graph as a tf.function of the recipe's input (shape, dtype, name) returning the outputs
    under the recipe's output names. The input placeholder takes the recipe's shape (PoseNet's
    fully convolutional graph runs at any size) and is cast to the graph's dtype (MoveNet: uint8
    pixels, as Google's TFLite files take them, into its int32 input)."""
    import tensorflow as tf
    from tensorflow.core.framework import types_pb2

    graph, signature = load_graph(path)
    (input_name, input_dtype), outputs = signature_tensors(signature, output_names, path)
    if input_dtype not in types_pb2.DataType.keys():
        raise TfjsGraphError(f"{path}: the signature's input dtype {input_dtype!r} is not a TensorFlow dtype")
    node_name = input_name.split(":")[0]
    placeholder = next((n for n in graph.node if n.name == node_name and n.op == "Placeholder"), None)
    if placeholder is None:
        raise TfjsGraphError(f"{path}: the signature's input {input_name!r} is not a placeholder of the graph")
    placeholder.attr["shape"].shape.CopyFrom(tf.TensorShape(input_spec["shape"]).as_proto())

    def imported():
        tf.graph_util.import_graph_def(graph, name="")

    try:
        wrapped = tf.compat.v1.wrap_function(imported, [])
        pruned = wrapped.prune(wrapped.graph.get_tensor_by_name(input_name),
                               [wrapped.graph.get_tensor_by_name(o) for o in outputs])
    except (ValueError, KeyError, tf.errors.OpError) as e:
        raise TfjsGraphError(f"{path}: TensorFlow cannot build the graph at input shape {input_spec['shape']} "
                             f"({type(e).__name__}: {str(e)[:300]})") from e
    graph_dtype = tf.dtypes.as_dtype(types_pb2.DataType.Value(input_dtype))
    names = list(output_names)

    @tf.function(input_signature=[tf.TensorSpec(input_spec["shape"], tf.dtypes.as_dtype(input_spec["dtype"]),
                                                name=input_spec["name"])])
    def forward(x):
        return dict(zip(names, pruned(tf.cast(x, graph_dtype))))

    return forward
