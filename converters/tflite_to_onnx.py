"""TFLite -> ONNX with tf2onnx (NHWC input kept, as in the original); deterministic output.

tf2onnx names the tensors its optimizers create from a process-wide counter, and its node order
varies from run to run, so two conversions of one file differ in node order, tensor names and
initializer order. We order nodes depth-first from the outputs, rename every internal tensor
after the node that produces or first consumes it and order initializers by first use: the same
graph then gives the same bytes.
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
    canonicalize(model)
    with atomic_path(onnx_path) as tmp:
        onnx.save(model, tmp)
    return onnx_path


def canonicalize(model) -> None:
    """Same graph, same bytes: canonical node order, then canonical names."""
    canonical_node_order(model.graph)
    canonicalize_names(model)


def canonical_node_order(graph) -> None:
    """Order nodes depth-first from the graph outputs (each node's inputs in order) and drop
    explicitly-set empty domains.

    tf2onnx's node order, and whether it writes `domain: ""` explicitly, vary from run to run for
    the same file (MoveNet Lightning INT8 gives several variants), so `canonicalize_names`, which
    names by position, does not make the bytes identical on its own. The depth-first order
    depends only on the graph's structure; an empty domain means the default one, set or not."""
    producer = {o: k for k, n in enumerate(graph.node) for o in n.output if o}
    seen, order = set(), []
    for out in graph.output:
        root = producer.get(out.name)
        if root is None or root in seen:
            continue
        seen.add(root)
        stack = [[root, 0]]
        while stack:
            top = stack[-1]
            node = graph.node[top[0]]
            if top[1] < len(node.input):
                name = node.input[top[1]]
                top[1] += 1
                source = producer.get(name) if name else None
                if source is not None and source not in seen:
                    seen.add(source)
                    stack.append([source, 0])
            else:
                order.append(top[0])
                stack.pop()
    nodes = []
    for k in order:
        node = _copy_node(graph.node[k])
        if not node.domain:
            node.ClearField("domain")
        nodes.append(node)
    graph.ClearField("node")
    graph.node.extend(nodes)


def _copy_node(node):
    from onnx import NodeProto

    copy = NodeProto()
    copy.CopyFrom(node)
    return copy


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
