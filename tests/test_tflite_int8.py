"""converters/tflite_int8.py's choice of an activation range (fast; the quantizer itself is tested
on a real conversion in test_converters.py)."""
import numpy as np

from posezoo.converters.tflite_int8 import least_error_range


def test_a_long_thin_tail_is_clipped_where_that_costs_less_than_the_resolution_it_takes():
    values = np.random.default_rng(0).laplace(0.0, 1.0, 1_000_000).astype(np.float32)  # how activations spread
    low, high = least_error_range(values, float(values.min()), float(values.max()))
    assert values.min() < low < -8 and 8 < high < values.max()


def test_evenly_spread_values_keep_their_extremes_and_the_range_holds_zero():
    values = np.linspace(1.0, 3.0, 10_000, dtype=np.float32)  # no tail to clip
    low, high = least_error_range(values, 1.0, 3.0)
    assert low == 0.0 and 2.995 < high <= 3.0
    low, high = least_error_range(-values, -3.0, -1.0)
    assert -3.0 <= low < -2.995 and high == 0.0
