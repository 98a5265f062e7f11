"""TFLite -> ONNX with tf2onnx (NHWC input kept, as in the original); deterministic output.

tf2onnx names the tensors its optimizers create from a process-wide counter, visited in an
order that varies from run to run, so two conversions of one file differ in tensor names and
initializer order. We rename every internal tensor after the node that produces or first
consumes it and order initializers by first use: the same graph then gives the same bytes.
"""
from __future__ import annotations

import logging
from pathlib import Path

from .fileio import atomic_path

OPSET = 17


def tflite_to_onnx(tflite_path: Path, onnx_path: Path, opset: int = OPSET) -> Path:
    import onnx
    from tf2onnx import convert, utils

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    utils.INTERNAL_NAME = 1
    model, _ = convert.from_tflite(str(tflite_path), opset=opset)
    model.producer_name, model.producer_version = "tf2onnx", _tf2onnx_version()
    canonicalize_names(model)
    with atomic_path(onnx_path) as tmp:
        onnx.save(model, tmp)
    return onnx_path


def canonicalize_names(model) -> None:
    """Rename internal tensors and nodes by position; order initializers by first use."""
    graph = model.graph
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    inits = {i.name: i for i in graph.initializer}
    renamed: dict[str, str] = {}
    order: list[str] = []
    for i, node in enumerate(graph.node):
        node.name = f"{node.op_type}_{i}"
        for k, name in enumerate(node.input):
            if name in inits and name not in renamed:
                renamed[name] = f"{node.name}_in{k}"
                order.append(name)
        for k, name in enumerate(node.output):
            if name and name not in keep:
                renamed[name] = f"{node.name}_out{k}"
    for node in graph.node:
        node.input[:] = [renamed.get(n, n) for n in node.input]
        node.output[:] = [renamed.get(n, n) for n in node.output]
    ordered = [inits[n] for n in order] + [i for n, i in inits.items() if n not in renamed]
    for init in ordered:
        init.name = renamed.get(init.name, init.name)
    graph.ClearField("initializer")
    graph.initializer.extend(ordered)
    infos = sorted(graph.value_info, key=lambda v: renamed.get(v.name, v.name))
    graph.ClearField("value_info")
    for v in infos:
        v.name = renamed.get(v.name, v.name)
        graph.value_info.append(v)


def _tf2onnx_version() -> str:
    from importlib.metadata import version

    return version("tf2onnx")
