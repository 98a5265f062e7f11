"""converters/activation_ranges.py (fast; the quantizers that use it are tested on real
conversions in test_converters.py and test_mixed_precision.py)."""
import numpy as np

from posezoo.converters.activation_ranges import least_error_range, least_error_ranges


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


def test_ranges_of_a_set_of_inputs_do_not_depend_on_their_order():
    rng = np.random.default_rng(1)
    runs = [(rng.normal(size=(4, 4)), {"a": rng.laplace(size=5000), "b": rng.normal(size=100)}) for _ in range(6)]
    forward, backward = least_error_ranges(runs), least_error_ranges(runs[::-1])
    assert forward == backward and set(forward) == {"a", "b"}
    assert least_error_ranges(runs[:3]) != forward  # and they are each set's own
