from pathlib import Path

from converters.int8_search import search_float_prefix

NODES = [f"n{i}" for i in range(32)]


def run(passes_from: int | None, always=()):
    built = []

    def build(float_nodes):
        built.append(list(float_nodes))
        return Path(f"/model-{len(float_nodes)}")

    def score(path):
        prefix = len([n for n in built[-1] if n not in always])
        return 1.0 if passes_from is not None and prefix >= passes_from else 0.5

    return search_float_prefix(NODES, build, score, 1.0, steps=16, always_float=list(always)), built


def test_full_int8_when_it_passes():
    result, built = run(0)
    assert result.float_nodes == [] and result.quantized_share == 1.0 and len(built) == 1


def test_bisects_to_the_smallest_passing_prefix_and_rebuilds_it_last():
    result, built = run(10)  # prefixes of 10+ nodes pass; steps are 2 nodes
    assert result.float_nodes == NODES[:10] and built[-1] == NODES[:10]
    assert result.quantized_share == 1 - 10 / 32
    assert [t.passed for t in result.trials][:2] == [False, True]


def test_heads_stay_float_in_every_trial():
    result, built = run(4, always=["n31"])
    assert all("n31" in b for b in built)
    assert result.float_nodes == NODES[:4] + ["n31"]


def test_gives_up_beyond_the_largest_float_share():
    result, built = run(30)  # would need 30/32 float; 75 % is the limit
    assert result.path is None and len(built) == 2
