"""onnx2tf's command line, run by posezoo.converters.onnx_to_tflite in a subprocess, with one fix.

onnx2tf 1.29.24 reads TopK's K with `int(k)`; ONNX stores K as a one-element 1-D tensor, and the
numpy we pin (2.4) refuses `int()` of a 1-D array ("only 0-dimensional arrays can be converted"),
so every model with a constant TopK (MoveNet MultiPose's top-6 person centres) failed to convert.
The fix hands TopK's converter its one-element constants as 0-D arrays.
"""
import sys

import numpy as np


def _zero_d(get_constant_or_variable):
    def get(*args, **kwargs):
        value = get_constant_or_variable(*args, **kwargs)
        return value.reshape(()) if isinstance(value, np.ndarray) and value.size == 1 else value
    return get


if __name__ == "__main__":
    from onnx2tf.ops import TopK
    from onnx2tf.onnx2tf import main

    TopK.get_constant_or_variable = _zero_d(TopK.get_constant_or_variable)
    sys.exit(main())
