"""Official PyTorch checkpoints into our own architectures: safely, strictly, with clear errors.

A checkpoint is read with `weights_only=True`, so a pickle that would run code is refused. Its
keys are renamed through an explicit prefix table and compared with the model, key by key and
shape by shape, before anything is loaded: a wrong or damaged file fails with a message that
names the file and the offending keys.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from posezoo.errors import PosezooError

# What mmcv (mmpose 0.x) and mmengine (mmpose 1.x) save beside `state_dict`: training metadata,
# never weights. `meta` holds the best validation score as a numpy scalar: numpy scalars and
# dtypes are plain data, allowed so that such a file unpickles under weights_only.
NON_WEIGHT_ENTRIES = {"meta", "optimizer", "message_hub", "param_schedulers"}
_NUMPY_SCALAR = np._core.multiarray.scalar
NUMPY_SCALAR_GLOBALS = [
    _NUMPY_SCALAR,
    (_NUMPY_SCALAR, "numpy.core.multiarray.scalar"),  # the name numpy 1.x wrote
    np.dtype,
    *{type(np.dtype(code)) for code in "?bhilqBHILQefd"},
]
MAX_LISTED_PROBLEMS = 10


class CheckpointError(PosezooError):
    """The file is not the checkpoint the model expects (unreadable, wrong keys or shapes)."""


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint: its `state_dict` entry (mmpose nests it) or the whole file."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals(NUMPY_SCALAR_GLOBALS):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file; pass the path of the downloaded checkpoint") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint that loads with weights_only=True ({_reason(error)}). "
            "Download the official file again; never load an untrusted pickle without weights_only") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: holds a {type(checkpoint).__name__}, not a state dict; "
                              "pass a checkpoint saved from the model's state_dict()")
    if isinstance(checkpoint.get("state_dict"), dict):
        unknown = sorted(set(checkpoint) - {"state_dict"} - NON_WEIGHT_ENTRIES)
        if unknown:
            raise CheckpointError(f"{path}: unknown top-level entries {unknown} beside 'state_dict' "
                                  f"(known non-weight entries: {sorted(NON_WEIGHT_ENTRIES)}); "
                                  "pass the official checkpoint, or save the weights alone as a bare state dict")
        state = checkpoint["state_dict"]
    else:
        state = checkpoint
    not_tensors = [key for key, value in state.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{path}: entry {not_tensors[0]!r} is not a tensor ({len(not_tensors)} such entries); "
                              "the file is not a state dict nor a checkpoint with a 'state_dict' entry")
    return state


def _reason(error: Exception) -> str:
    """The specific line of torch's load error, without its generic advice around it."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    specific = [line for line in lines[1:-1] if not line.startswith("Please file an issue")]
    return (specific or lines or [type(error).__name__])[0]


def load_mapped_state_dict(model: torch.nn.Module, path, prefix_map: dict[str, str]) -> torch.nn.Module:
    """Load `path` into `model` strictly, renaming each key's prefix through `prefix_map`.

    `prefix_map` maps a checkpoint prefix to the model's ({"keypoint_head.": "head."}); every key
    must start with one of them. Missing, unexpected, duplicated and wrongly shaped keys are all
    reported (with the file's own key names) in one CheckpointError before anything is loaded.
    Returns the model in eval mode.
    """
    path = Path(path)
    state = read_state_dict(path)
    prefixes = sorted(prefix_map, key=len, reverse=True)  # the longest matching prefix wins
    renamed, file_key_of = {}, {}
    problems = []
    for key, tensor in state.items():
        prefix = next((p for p in prefixes if key.startswith(p)), None)
        if prefix is None:
            problems.append(f"unexpected key {key!r}: it starts with none of the known prefixes {list(prefix_map)}")
            continue
        model_key = prefix_map[prefix] + key[len(prefix):]
        if model_key in renamed:
            problems.append(f"keys {file_key_of[model_key]!r} and {key!r} both map to {model_key!r}")
            continue
        renamed[model_key], file_key_of[model_key] = tensor, key
    expected = model.state_dict()
    for model_key, tensor in renamed.items():
        if model_key not in expected:
            problems.append(f"unexpected key {file_key_of[model_key]!r}: the model has no {model_key!r}")
        elif tuple(tensor.shape) != tuple(expected[model_key].shape):
            problems.append(f"key {file_key_of[model_key]!r} has shape {list(tensor.shape)} in the file, "
                            f"the model expects {list(expected[model_key].shape)}")
    for model_key in (key for key in expected if key not in renamed):
        as_in_file = [prefix + model_key[len(ours):] for prefix, ours in prefix_map.items()
                      if model_key.startswith(ours)]
        problems.append(f"missing key {' or '.join(map(repr, as_in_file)) or repr(model_key)}")
    if problems:
        listed = "; ".join(problems[:MAX_LISTED_PROBLEMS])
        more = f" (and {len(problems) - MAX_LISTED_PROBLEMS} more)" if len(problems) > MAX_LISTED_PROBLEMS else ""
        raise CheckpointError(
            f"{path}: does not match {type(model).__name__}: {listed}{more}. Check that the file is the "
            "official checkpoint of this exact variant (architecture, keypoint count), or download it again")
    model.load_state_dict(renamed, strict=True)
    return model.eval()


def write_random_official_checkpoint(key_shapes: dict, path, seed: int = 0, nest: str | None = "state_dict") -> Path:
    """Write a checkpoint with exactly the keys and shapes of `key_shapes`, with random values.

    Stands in for an official file that cannot be downloaded in tests: float tensors are
    normal * 0.05, BatchNorm running variances positive, `num_batches_tracked` int64 scalars. Such
    weights give flat heatmaps whose argmax float noise decides, so keypoint parity means nothing
    on them (tensor parity does); judge keypoints only on genuine weights. With `nest`, the
    tensors go under that entry beside an mmcv-like `meta` (numpy scalar included); with
    nest=None the file is the bare state dict.
    """
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in key_shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(int(torch.randint(1, 10**6, (), generator=generator)), dtype=torch.int64)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.05
    checkpoint = {"meta": {"hook_msgs": {"best_score": np.float64(0.5)}}, nest: state} if nest else state
    path = Path(path)
    torch.save(checkpoint, path)
    return path
