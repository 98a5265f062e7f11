"""posezoo's runtime side: run any artifact of a posezoo build knowing nothing but its manifest.

    import posezoo
    predict = posezoo.load("zoo/manifest.json", "movenet-lightning", format="tflite", precision="int8")
    pose = predict(rgb)  # pose.keypoints, pose.scores, pose.names

This package alone (`pip install posezoo-runtime[onnx,tflite]`, built from zoo/pyproject.toml)
needs numpy and the runtime of the formats it runs. The full install (`pip install posezoo`) adds
the build system as subpackages: posezoo.converters, posezoo.recipes, posezoo.scripts.
"""
__all__ = ["load", "LoaderError", "Pose", "Predictor"]


def __getattr__(name: str):
    """posezoo.load and friends, imported on first use: importing a build module
    (posezoo.converters.sandbox's confined child above all) does not load the runtime side."""
    if name in __all__:
        from posezoo import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'posezoo' has no attribute {name!r}")
