"""Keras files with the official signature of the authors' EfficientPose III (480x480) and IV
(600x600), whose files cannot be had here: the authors' genuine EfficientPose I file
(../shared/checkpoints/efficientpose/EfficientPoseI.h5, with its layer names, custom layers and
Lambda bytecode) declaring the larger input. Its layers are I's (III and IV scale the backbone
up), so the outputs have III's and IV's names and shapes: input `input_res1` 1xSxSx3,
`pass1_skeleton_pafs` S/8 x S/8 x 28, `pass2_detection1_confs` and `pass3_detection2_confs`
S/8 x S/8 x 16, `upscaled_confs` S x S x 16. The weights are genuine (I's), so the heatmaps
have real peaks."""
import json
import shutil
from pathlib import Path


def write_efficientpose_h5(genuine_i: Path, path: Path, side: int) -> Path:
    import h5py

    shutil.copyfile(genuine_i, path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "InputLayer":
                layer["config"]["batch_input_shape"] = [None, side, side, 3]
        f.attrs["model_config"] = json.dumps(config)
    return Path(path)
