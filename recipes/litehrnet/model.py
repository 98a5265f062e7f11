"""LiteHRNet-18/30 top-down heatmap models (Yu et al., "Lite-HRNet", CVPR 2021), in plain PyTorch.

Written after mmpose 0.x (`mmpose/models/backbones/litehrnet.py` + `TopdownHeatmapSimpleHead`,
which produced the official checkpoints). Module names follow mmpose's, so an official file loads
by renaming its prefixes only. The forward pass returns the heatmaps (N, K, H/4, W/4).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from posezoo.recipes.torch_checkpoint import load_mapped_state_dict

STEM_CHANNELS = 32
STAGE_CHANNELS = ((40, 80), (40, 80, 160), (40, 80, 160, 320))
BLOCKS_PER_MODULE = 2
REDUCE_RATIO = 8
MODULES_PER_STAGE = {18: (2, 4, 2), 30: (3, 8, 3)}

VARIANTS = {
    "18-coco-256x192": {"depth": 18, "num_keypoints": 17, "input_hw": (256, 192)},
    "18-coco-384x288": {"depth": 18, "num_keypoints": 17, "input_hw": (384, 288)},
    "18-mpii-256x256": {"depth": 18, "num_keypoints": 16, "input_hw": (256, 256)},
    "30-coco-256x192": {"depth": 30, "num_keypoints": 17, "input_hw": (256, 192)},
    "30-coco-384x288": {"depth": 30, "num_keypoints": 17, "input_hw": (384, 288)},
    "30-mpii-256x256": {"depth": 30, "num_keypoints": 16, "input_hw": (256, 256)},
}

# checkpoint prefix -> our module: mmpose 0.x files say `keypoint_head.`, mmpose 1.x `head.`
CHECKPOINT_PREFIXES = {"backbone.": "backbone.", "keypoint_head.": "head.", "head.": "head."}


def build(variant: str) -> nn.Module:
    settings = _settings(variant)
    return LiteHRNetTopDown(MODULES_PER_STAGE[settings["depth"]], settings["num_keypoints"]).eval()


def load_official(path, variant: str) -> nn.Module:
    return load_mapped_state_dict(build(variant), path, CHECKPOINT_PREFIXES)


def _settings(variant: str) -> dict:
    if variant not in VARIANTS:
        raise ValueError(f"unknown LiteHRNet variant {variant!r}; known: {', '.join(VARIANTS)}")
    return VARIANTS[variant]


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    batch, channels, height, width = x.shape
    x = x.view(batch, groups, channels // groups, height, width).transpose(1, 2)
    return x.reshape(batch, channels, height, width)


class ConvModule(nn.Module):
    """Conv, then BatchNorm (`bn`) or a conv bias, then an optional activation (mmcv's ConvModule)."""

    def __init__(self, in_channels, out_channels, kernel_size=1, stride=1, groups=1, norm=True, activation=None):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2,
                              groups=groups, bias=not norm)
        self.bn = nn.BatchNorm2d(out_channels) if norm else nn.Identity()
        self.activation = activation or nn.Identity()

    def forward(self, x):
        return self.activation(self.bn(self.conv(x)))


def depthwise(channels, stride=1, activation=None):
    return ConvModule(channels, channels, 3, stride, groups=channels, activation=activation)


def depthwise_then_pointwise(in_channels, out_channels, stride, last_relu):
    """Unnamed conv/BN sequence used by the transition and fuse layers (keys .0 .. .3)."""
    layers = [nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False),
              nn.BatchNorm2d(in_channels),
              nn.Conv2d(in_channels, out_channels, 1, bias=False),
              nn.BatchNorm2d(out_channels)]
    return nn.Sequential(*layers, nn.ReLU()) if last_relu else nn.Sequential(*layers)


class Stem(nn.Module):
    """Stride-2 conv, then a ShuffleNet-v2-like downsampling unit: 1/4 resolution, 32 channels."""

    def __init__(self):
        super().__init__()
        half = STEM_CHANNELS // 2
        self.conv1 = ConvModule(3, STEM_CHANNELS, 3, stride=2, activation=nn.ReLU())
        self.branch1 = nn.Sequential(depthwise(half, stride=2), ConvModule(half, half, activation=nn.ReLU()))
        self.expand_conv = ConvModule(half, STEM_CHANNELS, activation=nn.ReLU())
        self.depthwise_conv = depthwise(STEM_CHANNELS, stride=2)
        self.linear_conv = ConvModule(STEM_CHANNELS, half, activation=nn.ReLU())

    def forward(self, x):
        x1, x2 = self.conv1(x).chunk(2, dim=1)
        x2 = self.linear_conv(self.depthwise_conv(self.expand_conv(x2)))
        return channel_shuffle(torch.cat((self.branch1(x1), x2), dim=1), 2)


class SpatialWeighting(nn.Module):
    def __init__(self, channels, ratio=4):
        super().__init__()
        self.conv1 = ConvModule(channels, channels // ratio, norm=False, activation=nn.ReLU())
        self.conv2 = ConvModule(channels // ratio, channels, norm=False, activation=nn.Sigmoid())

    def forward(self, x):
        return x * self.conv2(self.conv1(F.adaptive_avg_pool2d(x, 1)))


class CrossResolutionWeighting(nn.Module):
    """Channel weights computed from all branches, pooled to the smallest branch's size."""

    def __init__(self, channels, ratio):
        super().__init__()
        self.channels = channels
        total = sum(channels)
        self.conv1 = ConvModule(total, total // ratio, activation=nn.ReLU())
        self.conv2 = ConvModule(total // ratio, total, activation=nn.Sigmoid())

    def forward(self, x):
        smallest = x[-1].shape[-2:]
        pooled = [F.adaptive_avg_pool2d(s, smallest) for s in x[:-1]] + [x[-1]]
        weights = self.conv2(self.conv1(torch.cat(pooled, dim=1))).split(self.channels, dim=1)
        return [s * F.interpolate(w, size=s.shape[-2:], mode="nearest") for s, w in zip(x, weights)]


class ConditionalChannelWeighting(nn.Module):
    """Half of each branch's channels is reweighted (cross-resolution, depthwise, spatial), then shuffled back."""

    def __init__(self, channels, reduce_ratio):
        super().__init__()
        halves = [c // 2 for c in channels]
        self.cross_resolution_weighting = CrossResolutionWeighting(halves, reduce_ratio)
        self.depthwise_convs = nn.ModuleList(depthwise(c) for c in halves)
        self.spatial_weighting = nn.ModuleList(SpatialWeighting(c) for c in halves)

    def forward(self, x):
        kept, reweighted = zip(*(s.chunk(2, dim=1) for s in x))
        reweighted = self.cross_resolution_weighting(list(reweighted))
        reweighted = [sw(dw(s)) for s, dw, sw in zip(reweighted, self.depthwise_convs, self.spatial_weighting)]
        return [channel_shuffle(torch.cat((a, b), dim=1), 2) for a, b in zip(kept, reweighted)]


class LiteHRModule(nn.Module):
    """Channel weighting blocks on every branch, then every branch fused into every other."""

    def __init__(self, channels):
        super().__init__()
        self.layers = nn.Sequential(*(ConditionalChannelWeighting(channels, REDUCE_RATIO)
                                      for _ in range(BLOCKS_PER_MODULE)))
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(self._fuse_path(channels, source, target) for source in range(len(channels)))
            for target in range(len(channels)))
        self.relu = nn.ReLU()

    @staticmethod
    def _fuse_path(channels, source, target):
        if source == target:
            return None
        if source > target:  # from a lower resolution: 1x1 conv, BN, nearest upsampling
            return nn.Sequential(nn.Conv2d(channels[source], channels[target], 1, bias=False),
                                 nn.BatchNorm2d(channels[target]),
                                 nn.Upsample(scale_factor=2 ** (source - target), mode="nearest"))
        steps = target - source  # from a higher resolution: one stride-2 step per halving
        return nn.Sequential(*(
            depthwise_then_pointwise(channels[source], channels[target] if step == steps - 1 else channels[source],
                                     stride=2, last_relu=step < steps - 1)
            for step in range(steps)))

    def forward(self, x):
        branches = self.layers(x)
        # Kept exactly as mmpose computes it, since the official weights were trained with it:
        # the fuse loop adds branch 0's own term twice, and adds in place into branch 0's tensor,
        # so the other branches read branch 0 after its fusion (before the ReLU).
        top = 2 * branches[0]  # x + x, exactly
        for source in range(1, len(branches)):
            top = top + self.fuse_layers[0][source](branches[source])
        fused = [top]
        for target in range(1, len(branches)):
            from_top = self.fuse_layers[target][0](top)
            y = from_top + from_top
            for source in range(1, len(branches)):
                y = y + (branches[source] if source == target else self.fuse_layers[target][source](branches[source]))
            fused.append(y)
        return [self.relu(y) for y in fused]


class DepthwiseSeparableConv(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.depthwise_conv = depthwise(in_channels)
        self.pointwise_conv = ConvModule(in_channels, out_channels, activation=nn.ReLU())

    def forward(self, x):
        return self.pointwise_conv(self.depthwise_conv(x))


class IterativeHead(nn.Module):
    """From the lowest resolution up: add the upsampled previous result, then a separable conv."""

    def __init__(self, channels):
        super().__init__()
        low_to_high = channels[::-1]
        out_channels = low_to_high[1:] + low_to_high[-1:]
        self.projects = nn.ModuleList(DepthwiseSeparableConv(c_in, c_out)
                                      for c_in, c_out in zip(low_to_high, out_channels))

    def forward(self, branches):
        previous = None
        for x, project in zip(branches[::-1], self.projects):
            if previous is not None:
                x = x + F.interpolate(previous, size=x.shape[-2:], mode="bilinear", align_corners=True)
            previous = project(x)
        return previous  # the highest resolution


class LiteHRNet(nn.Module):
    def __init__(self, modules_per_stage):
        super().__init__()
        self.stem = Stem()
        previous = (STEM_CHANNELS,)
        for index, (num_modules, channels) in enumerate(zip(modules_per_stage, STAGE_CHANNELS)):
            setattr(self, f"transition{index}", self._transition(previous, channels))
            setattr(self, f"stage{index}", nn.Sequential(*(LiteHRModule(channels) for _ in range(num_modules))))
            previous = channels
        self.head_layer = IterativeHead(STAGE_CHANNELS[-1])
        self.num_stages = len(modules_per_stage)

    @staticmethod
    def _transition(previous, channels):
        """Existing branches pass (or change width); the one new branch is cut from the lowest one at stride 2."""
        layers = []
        for branch, width in enumerate(channels):
            if branch < len(previous):
                same = width == previous[branch]
                layers.append(None if same else depthwise_then_pointwise(previous[branch], width, 1, last_relu=True))
            else:
                assert branch == len(previous), "a stage adds one branch"
                layers.append(nn.Sequential(depthwise_then_pointwise(previous[-1], width, 2, last_relu=True)))
        return nn.ModuleList(layers)

    def forward(self, x):
        branches = [self.stem(x)]
        for index in range(self.num_stages):
            transition = getattr(self, f"transition{index}")
            inputs = []
            for branch, layer in enumerate(transition):
                x = branches[branch] if branch < len(branches) else branches[-1]
                inputs.append(x if layer is None else layer(x))
            branches = getattr(self, f"stage{index}")(inputs)
        return self.head_layer(branches)


class HeatmapHead(nn.Module):
    def __init__(self, in_channels, num_keypoints):
        super().__init__()
        self.final_layer = nn.Conv2d(in_channels, num_keypoints, 1)

    def forward(self, x):
        return self.final_layer(x)


class LiteHRNetTopDown(nn.Module):
    def __init__(self, modules_per_stage, num_keypoints):
        super().__init__()
        self.backbone = LiteHRNet(modules_per_stage)
        self.head = HeatmapHead(STAGE_CHANNELS[0][0], num_keypoints)

    def forward(self, image):
        return self.head(self.backbone(image))
