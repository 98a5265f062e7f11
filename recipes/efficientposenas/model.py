"""EfficientPose-NAS A/B/C (Zhang et al. 2021, hustvl/EfficientPose) in plain PyTorch.

A NAS-searched MobileNetV2-style backbone (output stride 16), two 4x4 transposed convolutions
(64 and 32 channels) and a depthwise 3x3 + 1x1 head, giving heatmaps at 1/4 of the input size.
Module names follow the official code so that its checkpoints load with strict=True.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from posezoo.recipes.torch_checkpoint import load_mapped_state_dict

# Searched architectures (lib/nasnet_function/modeldef.py): groups of
# (output channels, stride of the group's first block, block ops). "ir_k{k}_e{e}" is an inverted
# residual block with a k x k depthwise convolution and expansion e; "skip" is an identity.
ARCHS = {
    "a": {"stem": 16, "groups": [
        (24, 2, "ir_k3_e6 ir_k7_e3 ir_k3_e6 ir_k3_e3"),
        (32, 2, "ir_k3_e6 ir_k3_e3 ir_k5_e3 ir_k3_e3 ir_k3_e3 ir_k3_e3"),
        (64, 2, "ir_k5_e6 ir_k7_e3 ir_k7_e3 ir_k7_e3 ir_k7_e3 ir_k7_e3 ir_k7_e3 ir_k7_e3"),
        (96, 1, "ir_k5_e6 ir_k5_e6 ir_k7_e6 ir_k5_e6 ir_k7_e3 ir_k7_e3 ir_k7_e3 ir_k7_e6"),
    ]},
    "b": {"stem": 24, "groups": [
        (32, 2, "ir_k3_e6 ir_k3_e6 ir_k5_e3 ir_k7_e3 ir_k5_e3 ir_k7_e3"),
        (64, 2, "ir_k5_e6 ir_k5_e3 ir_k7_e3 ir_k7_e3 ir_k7_e3 ir_k7_e3 ir_k7_e3 ir_k7_e3"),
        (96, 2, "ir_k7_e6 ir_k5_e6 ir_k5_e6 ir_k7_e3 ir_k7_e3 ir_k3_e6 ir_k7_e3 ir_k7_e6 ir_k7_e6 ir_k7_e3"),
        (160, 1, "ir_k7_e3 ir_k7_e3 ir_k7_e3 ir_k7_e3 ir_k7_e3 ir_k7_e3 skip ir_k7_e3 ir_k7_e6 ir_k7_e3"),
    ]},
    "c": {"stem": 24, "groups": [
        (32, 2, "ir_k5_e3 ir_k3_e6 ir_k3_e3 ir_k3_e3 skip ir_k5_e3"),
        (64, 2, "ir_k3_e6 ir_k7_e6 ir_k5_e6 ir_k3_e6 ir_k5_e6 ir_k3_e6 ir_k3_e6 ir_k3_e6"),
        (96, 2, "ir_k7_e6 ir_k7_e6 ir_k7_e6 ir_k7_e6 ir_k7_e6 ir_k7_e6 ir_k7_e6 ir_k7_e6 ir_k7_e3 ir_k7_e6"),
        (160, 1, "ir_k7_e6 ir_k7_e6 ir_k7_e3 ir_k7_e3 ir_k7_e6 ir_k7_e6 ir_k7_e6 ir_k7_e6 ir_k7_e6 ir_k7_e6"),
    ]},
}

# Variant -> (architecture, keypoints, input (H, W)), from the official experiments/*.yaml.
VARIANTS = {
    "a-coco-256x192": ("a", 17, (256, 192)),
    "b-coco-256x192": ("b", 17, (256, 192)),
    "b-mpii-256x256": ("b", 16, (256, 256)),
    "c-coco-256x192": ("c", 17, (256, 192)),
    "c-mpii-256x256": ("c", 16, (256, 256)),
}

# tools/test.py loads TEST.MODEL_FILE (final_state.pth) into the bare model with strict=True,
# so the released files are a plain state_dict without a "module." prefix.
OFFICIAL_PREFIXES = {"": ""}


class ConvBN(nn.Sequential):
    """conv (no bias) -> bn [-> relu], named like the official ConvBNRelu."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, relu: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        if relu:
            self.relu = nn.ReLU(inplace=True)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, expansion: int, stride: int):
        super().__init__()
        mid = cin * expansion
        self.pw = ConvBN(cin, mid, 1)
        self.dw = ConvBN(mid, mid, kernel, stride, groups=mid)
        self.pwl = ConvBN(mid, cout, 1, relu=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pwl(self.dw(self.pw(x)))
        return x + y if self.residual else y


def _stages(arch: dict) -> nn.Sequential:
    blocks = OrderedDict()
    cin = arch["stem"]
    for cout, stride, ops in arch["groups"]:
        for op in ops.split():
            if op == "skip":
                assert cin == cout and stride == 1, "skip is only an identity in these architectures"
                block = nn.Identity()
            else:
                kernel, expansion = (int(part[1:]) for part in op.split("_")[1:])
                block = InvertedResidual(cin, cout, kernel, expansion, stride)
            blocks[f"x{len(blocks)}_{op}"] = block
            cin, stride = cout, 1
    return nn.Sequential(blocks)


class EfficientPoseNAS(nn.Module):
    def __init__(self, arch: dict, num_keypoints: int):
        super().__init__()
        stem = arch["stem"]
        self.first = nn.Sequential(
            ConvBN(3, 32, 3, stride=2),
            ConvBN(32, 32, 3, groups=32),
            nn.Conv2d(32, stem, 1, bias=False),
            nn.BatchNorm2d(stem),
        )
        self.blocks = nn.Sequential(OrderedDict(stages=_stages(arch)))  # official keys: blocks.stages.x<i>_<op>
        cin = arch["groups"][-1][0]
        self.deconv_layers = nn.Sequential(
            nn.ConvTranspose2d(cin, 64, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
        )
        self.final = nn.Sequential(
            nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, num_keypoints, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final(self.deconv_layers(self.blocks(self.first(x))))


def build(variant: str) -> nn.Module:
    arch, num_keypoints, _ = VARIANTS[variant]
    return EfficientPoseNAS(ARCHS[arch], num_keypoints).eval()


def load_official(path, variant: str) -> nn.Module:
    """The model with the official final_state.pth weights, loaded strictly."""
    return load_mapped_state_dict(build(variant), path, OFFICIAL_PREFIXES)
