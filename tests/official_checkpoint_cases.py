"""Checks shared by the tests of the mmpose families (LiteHRNet, SimpleBaseline): an official key
table, the seed's parameter convention, and checkpoints that must be refused."""
from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import pytest
import torch
from torch import nn

from posezoo.recipes.torch_checkpoint import CheckpointError, read_state_dict, write_random_official_checkpoint

OFFICIAL_KEYS = Path(__file__).parent / "data" / "official_keys"


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """These nets are many small ops: one intra-op thread runs a forward pass in 0.2 s where two
    threads contending for the machine's two cores took 1 to 15 s. Restored after the module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def official_keys(table: str) -> dict[str, list[int]]:
    """{key: shape} of the official checkpoint, dumped from mmpose's own model (see its "source")."""
    return json.loads((OFFICIAL_KEYS / f"{table}.json").read_text())["keys"]


def seed_param_count(model: nn.Module) -> int:
    """Parameters as the seed table counts them: the Conv layers of the BatchNorm-folded graph
    (weights plus one bias per output channel); transposed convolutions are left out."""
    return sum(m.weight.numel() + m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))


def conv_macs(model: nn.Module, image: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Heatmaps and the multiply-accumulates of every Conv and ConvTranspose in one forward pass."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        positions = output if isinstance(module, nn.Conv2d) else inputs[0]  # a transposed conv scatters its input
        total += positions[0, 0].numel() * module.weight.shape[0] * module.weight[0].numel()

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.no_grad():
        heatmaps = model(image)
    for hook in hooks:
        hook.remove()
    return heatmaps, total


def assert_loads_exactly(load_official, variant: str, keys: dict, tmp_path: Path, prefix_map: dict) -> None:
    """Both layouts (mmpose's nested `state_dict` beside `meta`, and a bare state dict) load strictly,
    and every value lands where the prefix table says."""
    for nest in ("state_dict", None):
        path = write_random_official_checkpoint(keys, tmp_path / f"official-{nest}.pth", seed=3, nest=nest)
        written = read_state_dict(path)
        ours = load_official(path, variant).state_dict()
        for key, value in written.items():
            prefix = next(p for p in sorted(prefix_map, key=len, reverse=True) if key.startswith(p))
            assert torch.equal(ours[prefix_map[prefix] + key[len(prefix):]], value), key


def assert_refused(load_official, variant: str, keys: dict, tmp_path: Path, named: str) -> None:
    path = write_random_official_checkpoint(keys, tmp_path / "broken.pth", seed=0)
    with pytest.raises(CheckpointError, match=re.escape(named)) as refused:
        load_official(path, variant)
    assert str(path) in str(refused.value)


def assert_missing_extra_and_wrong_shape_refused(load_official, variant, keys, tmp_path, shaped_key: str) -> None:
    for missing_key in (next(k for k in keys if k.endswith("running_var")), "keypoint_head.final_layer.bias"):
        missing = dict(keys)
        del missing[missing_key]
        assert_refused(load_official, variant, missing, tmp_path, missing_key)

    extra = {**keys, "keypoint_head.extra_layer.weight": [4, 4]}
    assert_refused(load_official, variant, extra, tmp_path, "keypoint_head.extra_layer.weight")

    reshaped = {**keys, shaped_key: [keys[shaped_key][0] + 1, *keys[shaped_key][1:]]}
    assert_refused(load_official, variant, reshaped, tmp_path, shaped_key)


class _RunsACommand:
    """Unpickling this runs a shell command: what a malicious checkpoint would do."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def assert_code_executing_pickle_refused(load_official, variant, tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "malicious.pth"
    torch.save({"meta": _RunsACommand(f"touch {shlex.quote(str(marker))}"), "state_dict": {}}, path)

    with pytest.raises(CheckpointError, match="weights_only"):
        load_official(path, variant)
    assert not marker.exists()

    torch.load(path, weights_only=False)  # control: the same file without weights_only does run the command
    assert marker.exists()
