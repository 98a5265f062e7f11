"""Quiet by default: the log lines and warnings of TensorFlow, absl, onnxruntime, onnx2tf and the
other converters are hidden unless `posezoo --verbose`; posezoo's own messages and warnings show.

`configure` must run before TensorFlow is imported (its C++ side reads TF_CPP_MIN_LOG_LEVEL then).
It works through the environment where it can, so that child processes inherit it: the sandbox's
child logs less into the file quoted when it dies, and onnx_to_tflite passes onnx2tf's captured
output on only when verbose (it quotes the tail when onnx2tf fails either way).
"""
from __future__ import annotations

import logging
import os
import warnings

VERBOSE_ENV = "POSEZOO_VERBOSE"
OWN_MODULES = r"posezoo\."  # posezoo's packages: their warnings always show


def configure(verbose: bool) -> None:
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
        return
    os.environ.pop(VERBOSE_ENV, None)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO and WARNING lines
    logging.getLogger().setLevel(logging.ERROR)  # Python loggers that inherit the root's level: tensorflow, absl, ...
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=OWN_MODULES)


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"
