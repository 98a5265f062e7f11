"""EfficientPose-NAS A/B/C: shapes, size, and strict loading against the official key tables.

The key tables in tests/data/official_keys were dumped from the official code (hustvl/EfficientPose),
not from our model. Expected numbers are those of the official model: parameters as PyTorch counts
them, FLOPs as multiply-accumulates of every Conv and ConvTranspose (converters/complexity.py).
(The seed table's 1.15/3.03/4.77 M parameters and 726.30 M... FLOPs describe the same network
counted on a BN-folded ONNX graph with both transposed convolutions left out, FLOPs = 2 x MACs.)
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import onnx
import pytest
import torch

from posezoo.converters.complexity import complexity
from posezoo.recipes.efficientposenas.model import VARIANTS, load_official
from posezoo.recipes.torch_checkpoint import CheckpointError, write_random_official_checkpoint

KEYS = Path(__file__).parent / "data" / "official_keys"

# variant -> (heatmap shape, parameters, Conv/ConvTranspose multiply-accumulates)
EXPECTED = {
    "a-coco-256x192": ((17, 64, 48), 1_299_393, 406_763_520),
    "b-coco-256x192": ((17, 64, 48), 3_252_945, 1_046_065_152),
    "b-mpii-256x256": ((16, 64, 64), 3_252_912, 1_394_622_464),
    "c-coco-256x192": ((17, 64, 48), 5_002_345, 1_396_623_360),
    "c-mpii-256x256": ((16, 64, 64), 5_002_312, 1_862_033_408),
}


def official_keys(variant: str) -> dict[str, list[int]]:
    return json.loads((KEYS / f"efficientposenas-{variant}.json").read_text())["keys"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_shape_params_flops(variant, tmp_path):
    heatmaps, params, macs = EXPECTED[variant]
    ckpt = write_random_official_checkpoint(official_keys(variant), tmp_path / "final_state.pth", seed=0, nest=None)
    model = load_official(ckpt, variant)
    assert sum(p.numel() for p in model.parameters()) == params

    # One traced forward pass gives both the output shape and the graph to count (CPU time is
    # scarce). Random weights matter here: with default BatchNorm statistics the exporter merges
    # the equal folded biases into Identity nodes, which complexity() does not follow.
    height, width = VARIANTS[variant][2]
    onnx_path = tmp_path / "model.onnx"
    torch.onnx.export(model, torch.randn(1, 3, height, width), str(onnx_path), opset_version=17, dynamo=False)
    output = onnx.load(str(onnx_path)).graph.output[0]
    assert [d.dim_value for d in output.type.tensor_type.shape.dim] == [1, *heatmaps]
    assert complexity(onnx_path)["flops"] == macs


def _refused(variant: str, keys: dict, tmp_path: Path, name: str) -> None:
    ckpt = write_random_official_checkpoint(keys, tmp_path / "final_state.pth", seed=0, nest=None)
    with pytest.raises(CheckpointError, match=re.escape(name)):
        load_official(ckpt, variant)


def test_missing_key_refused(tmp_path):
    keys = official_keys("b-coco-256x192")
    name = "blocks.stages.x31_ir_k7_e3.dw.conv.weight"
    del keys[name]
    _refused("b-coco-256x192", keys, tmp_path, name)


def test_extra_key_refused(tmp_path):
    keys = official_keys("a-coco-256x192")
    name = "final.3.weight"
    keys[name] = [17]
    _refused("a-coco-256x192", keys, tmp_path, name)


def test_wrong_shape_refused(tmp_path):
    keys = official_keys("c-mpii-256x256")
    name = "final.2.weight"
    keys[name] = [17, 32, 1, 1]  # a COCO head in an MPII model
    _refused("c-mpii-256x256", keys, tmp_path, name)
