"""SimpleBaseline ResNet-50: heatmap shape, size, compute, and strict loading of official-structure checkpoints.

The key table in tests/data/official_keys comes from mmpose's own model (see its "source"), not
from ours. The seed's 23.49 M parameters / 8041.66 M FLOPs leave out the head's three transposed
convolutions (10.49 M parameters, 1409.29 M MACs): they count the BN-folded Conv layers only, and
FLOPs as 2 x their MACs plus the elements of the Add/Mul ops. Expected here: PyTorch's parameter
count (= mmpose's) and the multiply-accumulates of every Conv and ConvTranspose.
"""
from __future__ import annotations

import pytest
import torch

from official_checkpoint_cases import (assert_code_executing_pickle_refused, assert_loads_exactly,
                                       assert_missing_extra_and_wrong_shape_refused, conv_macs, official_keys,
                                       seed_param_count)
from official_checkpoint_cases import one_torch_thread  # noqa: F401  (an autouse fixture: imported = applied)
from posezoo.recipes.simplebaseline.model import CHECKPOINT_PREFIXES, VARIANTS, build, load_official

# variant -> (official key table, heatmaps CxHxW, parameters, seed's parameters in M, MACs)
EXPECTED = {
    "res50-coco-256x192": ("simplebaseline-res50-coco-256x192", (17, 64, 48), 33_999_697, 23.49, 5_426_380_800),
}
RESHAPED_KEY = "keypoint_head.deconv_layers.3.weight"


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


def test_mmpose_1x_head_prefix_loads(tmp_path):
    """mmpose 1.x re-saves these checkpoints with `head.` instead of `keypoint_head.`."""
    keys = {key.replace("keypoint_head.", "head.", 1): shape
            for key, shape in official_keys("simplebaseline-res50-coco-256x192").items()}
    assert_loads_exactly(load_official, "res50-coco-256x192", keys, tmp_path, CHECKPOINT_PREFIXES)


def test_code_executing_pickle_refused(tmp_path):
    assert_code_executing_pickle_refused(load_official, "res50-coco-256x192", tmp_path)


def test_unknown_variant_named():
    with pytest.raises(ValueError, match="res50-coco-256x192"):
        build("res101-coco-256x192")
