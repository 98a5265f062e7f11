"""The INT8 file's size and latency targets (converters/int8_targets.py)."""
import pytest

from posezoo.converters import int8_targets


def test_size_limit_is_looser_for_small_fp32_files():
    assert int8_targets.size_limit(2_999_999) == 0.40
    assert int8_targets.size_limit(3_000_000) == 0.35


def test_check_size_records_the_ratio_and_rejects_a_file_over_its_limit(tmp_path):
    fp32, small, large = tmp_path / "fp32", tmp_path / "small", tmp_path / "large"
    fp32.write_bytes(bytes(4_000_000))
    small.write_bytes(bytes(1_400_000))
    large.write_bytes(bytes(1_400_001))
    record, reason = int8_targets.check_size(small, fp32)
    assert reason is None and record == {"bytes": 1_400_000, "fp32_bytes": 4_000_000, "vs_fp32": 0.35, "target": 0.35}
    record, reason = int8_targets.check_size(large, fp32)
    assert record["vs_fp32"] == 0.35 and "at most 0.35x" in reason and "1.40 MB" in reason


@pytest.fixture
def timed(monkeypatch):
    """median_latencies answers these milliseconds, in the order of the files it is given."""
    answer = []
    monkeypatch.setattr(int8_targets, "median_latencies", lambda paths, feed, runs: answer[:len(paths)])
    return answer


@pytest.mark.parametrize("cpu", ["AVX512-VNNI", None])
def test_a_slow_int8_tflite_is_rejected_only_where_the_cpu_has_int8_dot_products(timed, monkeypatch, cpu):
    monkeypatch.setattr(int8_targets, "int8_dot_product_cpu", lambda: cpu)
    timed[:] = [9.0, 10.0]  # 0.9x our FP32: over the 0.8x target
    record, reason = int8_targets.check_latency("int8.tflite", "fp32.tflite", None, None)
    assert record["vs_fp32"] == 0.9 and record["judged"] is (cpu is not None) and record["cpu_int8_dot_product"] == cpu
    assert (reason is not None) is (cpu is not None)
    if reason:
        assert "0.90x our FP32 TFLite" in reason and "at most 0.8x" in reason


def test_an_int8_tflite_must_also_not_be_slower_than_the_publishers(timed, monkeypatch):
    monkeypatch.setattr(int8_targets, "int8_dot_product_cpu", lambda: "dotprod")
    timed[:] = [6.0, 10.0, 5.0]
    record, reason = int8_targets.check_latency("int8.tflite", "fp32.tflite", "vendor.tflite", None)
    assert record["vs_fp32"] == 0.6 and record["vs_publisher"] == 1.2 and record["publisher_file"] == "vendor.tflite"
    assert reason.startswith("it is slower than the publisher's vendor.tflite (6.00 ms vs 5.00 ms)")
    timed[:] = [6.0, 10.0, 7.0]
    assert int8_targets.check_latency("int8.tflite", "fp32.tflite", "vendor.tflite", None)[1] is None


def test_median_latencies_times_each_file_on_the_feed_in_its_own_layout(tiny_tflite):
    import numpy as np

    feed = np.random.default_rng(0).random((1, 3, 32, 32), np.float32)  # NCHW: moved to the file's NHWC
    ms = int8_targets.median_latencies([tiny_tflite, tiny_tflite], feed, runs=3)
    assert len(ms) == 2 and all(m > 0 for m in ms)


def test_the_cpu_is_read_from_its_flags(monkeypatch, tmp_path):
    import builtins

    cpuinfo = tmp_path / "cpuinfo"
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: real_open(
        cpuinfo if path == "/proc/cpuinfo" else path, *a, **k))
    monkeypatch.setattr("platform.system", lambda: "Linux")
    cpuinfo.write_text("flags\t\t: fpu fma avx f16c avx2\n")
    assert int8_targets.int8_dot_product_cpu() is None
    cpuinfo.write_text("flags\t\t: fpu avx2 avx512f avx512_vnni\n")
    assert int8_targets.int8_dot_product_cpu() == "AVX512-VNNI"
    cpuinfo.write_text("Features\t: fp asimd evtstrm aes crc32 atomics fphp asimdhp asimddp\n")
    assert int8_targets.int8_dot_product_cpu() == "dotprod"
