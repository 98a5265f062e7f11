"""Give a TFLite file's outputs the model's output names, in its tensors and in its signature.

onnx2tf names output tensors `PartitionedCall:<n>` (in an order of its own) and TFLiteConverter
on onnx2tf's SavedModel keys the signature `output_<i>` (i = the ONNX output's position), so a
runtime could not tell two outputs of the same shape apart (EfficientPose's two 1/8-resolution
confidence maps). We rename each output tensor after its signature key, mapping `output_<i>` to
the i-th ONNX output name (or a key that is an output name with its punctuation changed, as
onnx2tf writes `StatefulPartitionedCall:0`, to that name): then the tensor name, the signature
key and the manifest agree. The
outputs are also put in the model's order (the original's), for runtimes that read them by index
(Google's PoseNet examples take output 0 as the heatmaps).
"""
from __future__ import annotations

import re
from pathlib import Path

from .fileio import atomic_path


def name_outputs(tflite_path: Path, output_names: list[str]) -> Path:
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(tflite_path))
    subgraph = model.subgraphs[0]
    tensors = subgraph.tensors
    names = [_text(tensors[i].name) for i in subgraph.outputs]
    if not model.signatureDefs:  # onnx2tf wrote no signature: names kept (-coion), or a single output
        if set(names) == set(output_names):
            if names == list(output_names):
                return Path(tflite_path)
        elif len(names) != 1 or len(output_names) != 1:
            raise ValueError(f"{tflite_path}: outputs {names} have no signature that maps them to the "
                             f"model's outputs {output_names}")
        else:
            tensors[subgraph.outputs[0]].name = output_names[0].encode()
    _mend_outputs(model)
    by_letters = {_letters(n): n for n in output_names}
    for output in model.signatureDefs[0].outputs if model.signatureDefs else []:
        key = _text(output.name)
        position = re.fullmatch(r"output_(\d+)", key)
        name = output_names[int(position.group(1))] if position else by_letters.get(_letters(key), key)
        output.name = name.encode()
        tensors[output.tensorIndex].name = name.encode()
    index = {_text(tensors[i].name): i for i in subgraph.outputs}
    if set(index) == set(output_names):
        subgraph.outputs = [index[n] for n in output_names]
        if model.signatureDefs:
            model.signatureDefs[0].outputs.sort(key=lambda o: output_names.index(_text(o.name)))
    with atomic_path(tflite_path) as tmp:
        flatbuffer_utils.write_model(model, str(tmp))
    return Path(tflite_path)


def _mend_outputs(model) -> None:
    """Make each signature output and its graph output the same float tensor again.
    ai-edge-quantizer, when a model output is also read by int8 ops (EfficientPose RT's
    first-pass confidences), puts a (DE)QUANTIZE between the tensor and a new graph output and
    leaves the signature on the old tensor: after a QUANTIZE the graph output is int8 (the float
    tensor is the output again), after a DEQUANTIZE the signature names an int8 tensor (it is
    pointed at the float graph output)."""
    from tensorflow.lite.python import schema_py_generated as schema

    if not model.signatureDefs:
        return
    subgraph = model.subgraphs[0]
    graph_outputs = set(subgraph.outputs)
    converted = {}  # graph output -> (op code, the tensor it was made from)
    for op in subgraph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        kind = max(code.builtinCode, code.deprecatedBuiltinCode)
        if kind in (schema.BuiltinOperator.QUANTIZE, schema.BuiltinOperator.DEQUANTIZE) \
                and op.outputs[0] in graph_outputs:
            converted[op.outputs[0]] = kind, op.inputs[0]
    for output in model.signatureDefs[0].outputs:
        for position, graph_output in enumerate(list(subgraph.outputs)):
            kind, source = converted.get(graph_output, (None, None))
            if source != output.tensorIndex:
                continue
            if kind == schema.BuiltinOperator.QUANTIZE:
                subgraph.outputs[position] = output.tensorIndex
            else:
                output.tensorIndex = graph_output


def _letters(name: str) -> str:
    """A name without its punctuation: onnx2tf keeps output names (-coion) but writes
    `StatefulPartitionedCall:0` as `StatefulPartitionedCall__0`."""
    return re.sub(r"[^A-Za-z0-9]", "", name)


def _text(name) -> str:
    return name.decode() if isinstance(name, bytes) else name
