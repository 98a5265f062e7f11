"""SimpleBaseline top-down heatmap models (Xiao et al., "Simple Baselines for Human Pose
Estimation and Tracking", ECCV 2018), in plain PyTorch.

Written after mmpose 0.x (`ResNet` backbone + `TopdownHeatmapSimpleHead`, which produced the
official checkpoints): a ResNet, three 4x4 stride-2 transposed convolutions, a 1x1 conv to one
heatmap per keypoint. Module names follow mmpose's, so an official file loads by renaming its
prefixes only. The forward pass returns the heatmaps (N, K, H/4, W/4).
"""
from __future__ import annotations

from torch import nn

from posezoo.recipes.torch_checkpoint import load_mapped_state_dict

BLOCKS_PER_STAGE = {50: (3, 4, 6, 3)}
DECONV_CHANNELS = 256
NUM_DECONV_LAYERS = 3

VARIANTS = {
    "res50-coco-256x192": {"depth": 50, "num_keypoints": 17, "input_hw": (256, 192)},
}

# checkpoint prefix -> our module: mmpose 0.x files say `keypoint_head.`, mmpose 1.x `head.`
CHECKPOINT_PREFIXES = {"backbone.": "backbone.", "keypoint_head.": "head.", "head.": "head."}


def build(variant: str) -> nn.Module:
    settings = _settings(variant)
    return SimpleBaseline(BLOCKS_PER_STAGE[settings["depth"]], settings["num_keypoints"]).eval()


def load_official(path, variant: str) -> nn.Module:
    return load_mapped_state_dict(build(variant), path, CHECKPOINT_PREFIXES)


def _settings(variant: str) -> dict:
    if variant not in VARIANTS:
        raise ValueError(f"unknown SimpleBaseline variant {variant!r}; known: {', '.join(VARIANTS)}")
    return VARIANTS[variant]


class Bottleneck(nn.Module):
    """1x1, 3x3 (carries the stride: mmpose's "pytorch" style), 1x1 with 4x the width; residual add."""

    expansion = 4

    def __init__(self, in_channels, width, stride):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, blocks_per_stage):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_channels = 64
        for index, num_blocks in enumerate(blocks_per_stage):
            width = 64 * 2 ** index
            stride = 1 if index == 0 else 2
            blocks = [Bottleneck(in_channels, width, stride)]
            in_channels = width * Bottleneck.expansion
            blocks += [Bottleneck(in_channels, width, 1) for _ in range(num_blocks - 1)]
            setattr(self, f"layer{index + 1}", nn.Sequential(*blocks))
        self.out_channels = in_channels

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class DeconvHeatmapHead(nn.Module):
    def __init__(self, in_channels, num_keypoints):
        super().__init__()
        layers = []
        for _ in range(NUM_DECONV_LAYERS):  # each doubles the resolution
            layers += [nn.ConvTranspose2d(in_channels, DECONV_CHANNELS, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(DECONV_CHANNELS),
                       nn.ReLU()]
            in_channels = DECONV_CHANNELS
        self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = nn.Conv2d(DECONV_CHANNELS, num_keypoints, 1)

    def forward(self, x):
        return self.final_layer(self.deconv_layers(x))


class SimpleBaseline(nn.Module):
    def __init__(self, blocks_per_stage, num_keypoints):
        super().__init__()
        self.backbone = ResNet(blocks_per_stage)
        self.head = DeconvHeatmapHead(self.backbone.out_channels, num_keypoints)

    def forward(self, image):
        return self.head(self.backbone(image))
