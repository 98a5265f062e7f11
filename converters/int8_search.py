"""Mixed-precision search for INT8 artifacts: how much of the graph's front stays float.

Measured on BlazePose (shared/TOOLCHAIN.md and this project's build logs): INT8 error builds up
in the early, high-resolution layers, single-layer sensitivities do not add up, and keeping a
contiguous front part of the graph in float recovers the keypoints. So the search is over whole
stages: the float share of the graph (in execution order, steps of 1/`steps`) is bisected for
the smallest one whose decoded keypoints pass the recipe's INT8 gate on real inputs. The
output heads stay float in every trial (see `onnx_int8.output_head_nodes`); the first trial
quantizes everything else.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass
class Trial:
    float_steps: int
    float_nodes: int
    score: float
    passed: bool


@dataclass
class SearchResult:
    path: Path | None
    float_nodes: list[str]
    quantized_share: float
    trials: list[Trial] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"quantized_share": round(self.quantized_share, 4), "float_nodes": len(self.float_nodes),
                "trials": [t.__dict__ for t in self.trials]}


def search_float_prefix(ordered_nodes: list[str], build: Callable[[list[str]], Path],
                        score: Callable[[Path], float], target: float, steps: int = 16,
                        max_float_share: float = 0.75, always_float: list[str] = ()) -> SearchResult:
    """Smallest float prefix of `ordered_nodes` (in steps of 1/steps) with score >= target.

    `build(float_nodes)` writes an INT8 artifact and returns its path; `score(path)` measures it.
    `always_float` (the output heads) stay float in every trial. Prefixes above
    `max_float_share` are not tried: such a file is no longer an INT8 model.
    """
    trials: list[Trial] = []
    n = len(ordered_nodes)

    def float_set(k: int) -> list[str]:
        prefix = ordered_nodes[: round(k * n / steps)]
        return prefix + [x for x in always_float if x not in prefix]

    def attempt(k: int) -> tuple[Path, float]:
        float_nodes = float_set(k)
        path = build(float_nodes)
        s = score(path)
        trials.append(Trial(k, len(float_nodes), round(s, 4), s >= target))
        return path, s

    path, s = attempt(0)
    if s >= target:
        return SearchResult(path, float_set(0), 1.0 - len(float_set(0)) / max(n, 1), trials)
    lo, best = 0, int(steps * max_float_share)  # lo fails; best is tried next
    if attempt(best)[1] < target:
        return SearchResult(None, [], 0.0, trials)
    while best - lo > 1:
        mid = (lo + best) // 2
        _, s_mid = attempt(mid)
        if s_mid >= target:
            best = mid
        else:
            lo = mid
    float_nodes = float_set(best)
    path = build(float_nodes)  # rebuild the winner last so the file on disk is the chosen one
    return SearchResult(path, float_nodes, 1.0 - len(float_nodes) / max(n, 1), trials)
