"""PyTorch module (in memory) -> ONNX with torch's TorchScript exporter (BatchNorm kept as nodes;
onnxsim folds what can be folded afterwards)."""
from __future__ import annotations

from pathlib import Path

from .fileio import atomic_path
from .tflite_to_onnx import OPSET


def torch_to_onnx(module, input_spec: dict, output_names: list[str], onnx_path: Path, opset: int = OPSET) -> Path:
    import torch

    dummy = torch.zeros(input_spec["shape"], dtype=torch.float32)
    with atomic_path(onnx_path) as tmp, torch.no_grad():
        torch.onnx.export(module.eval(), (dummy,), str(tmp), input_names=[input_spec["name"]],
                          output_names=list(output_names), opset_version=opset, dynamo=False,
                          do_constant_folding=True)
    return onnx_path
