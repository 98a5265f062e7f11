"""LiteHRNet-18/30: heatmap shapes, size, compute, and strict loading of official-structure checkpoints.

The key tables in tests/data/official_keys come from mmpose's own model (see their "source"), not
from ours. Expected parameters are PyTorch's count (= mmpose's) and the seed's BN-folded Conv count;
compute is the multiply-accumulates of every convolution, each evaluated once. mmpose's forward
evaluates some fuse convolutions twice (242.35 M MACs for 18-coco-256x192 against 198.63 M here,
same outputs); the seed's FLOPs are 2 x these MACs plus the elements of the Add/Mul ops.
"""
from __future__ import annotations

import pytest
import torch

from official_checkpoint_cases import (assert_code_executing_pickle_refused, assert_loads_exactly,
                                       assert_missing_extra_and_wrong_shape_refused, assert_refused, conv_macs,
                                       official_keys, seed_param_count)
from official_checkpoint_cases import one_torch_thread  # noqa: F401  (an autouse fixture: imported = applied)
from posezoo.recipes.litehrnet.model import CHECKPOINT_PREFIXES, VARIANTS, build, load_official

# variant -> (official key table, heatmaps CxHxW, parameters, seed's parameters in M, MACs)
EXPECTED = {
    "18-coco-256x192": ("litehrnet-18-coco", (17, 64, 48), 1_130_769, 1.11, 198_626_688),
    "18-coco-384x288": ("litehrnet-18-coco", (17, 96, 72), 1_130_769, 1.11, 446_778_048),
    "18-mpii-256x256": ("litehrnet-18-mpii-256x256", (16, 64, 64), 1_130_728, 1.11, 264_636_544),
    "30-coco-256x192": ("litehrnet-30-coco", (17, 64, 48), 1_763_717, 1.74, 309_451_488),
    "30-coco-384x288": ("litehrnet-30-coco", (17, 96, 72), 1_763_717, 1.74, 696_046_848),
    "30-mpii-256x256": ("litehrnet-30-mpii-256x256", (16, 64, 64), 1_763_676, 1.74, 412_379_744),
}
RESHAPED_KEY = "backbone.stage1.0.layers.0.cross_resolution_weighting.conv1.conv.weight"


def test_every_variant_is_expected():
    assert set(EXPECTED) == set(VARIANTS)


@pytest.mark.parametrize("variant", VARIANTS)
def test_heatmaps_params_and_macs(variant):
    _, heatmap_shape, params, seed_params_m, macs = EXPECTED[variant]
    model = build(variant)
    assert not model.training
    heatmaps, counted_macs = conv_macs(model, torch.zeros(1, 3, *VARIANTS[variant]["input_hw"]))
    assert tuple(heatmaps.shape) == (1, *heatmap_shape)
    assert sum(p.numel() for p in model.parameters()) == params
    assert round(seed_param_count(model) / 1e6, 2) == seed_params_m
    assert counted_macs == macs


@pytest.mark.parametrize("variant", VARIANTS)
def test_official_checkpoint_loads_strictly(variant, tmp_path):
    keys = official_keys(EXPECTED[variant][0])
    assert_loads_exactly(load_official, variant, keys, tmp_path, CHECKPOINT_PREFIXES)


@pytest.mark.parametrize("variant", VARIANTS)
def test_missing_extra_and_wrongly_shaped_keys_refused(variant, tmp_path):
    keys = official_keys(EXPECTED[variant][0])
    assert_missing_extra_and_wrong_shape_refused(load_official, variant, keys, tmp_path, RESHAPED_KEY)


def test_mpii_checkpoint_refused_for_coco_variant(tmp_path):
    keys = official_keys("litehrnet-18-mpii-256x256")
    assert_refused(load_official, "18-coco-256x192", keys, tmp_path, "keypoint_head.final_layer.weight")


def test_code_executing_pickle_refused(tmp_path):
    assert_code_executing_pickle_refused(load_official, "18-coco-256x192", tmp_path)


def test_unknown_variant_named():
    with pytest.raises(ValueError, match="18-coco-256x192"):
        build("18-coco-999x999")
