"""Measuring: per thread count, one worker process per file, all loaded and warmed up, then timed
round-robin (one inference per file per repetition), so machine noise hits them all alike."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from posezoo.scripts.bench.targets import Target
from posezoo.scripts.bench.worker import Worker, baseline_kb


@dataclass
class Measurement:
    """One target at one thread count: its times, peak memory, what the file takes, or what failed."""
    target: Target
    threads: int
    times_ms: list[float] = field(default_factory=list)
    peak_kb: int | None = None  # the run's process peak RSS minus the runtime-only baseline
    info: dict = field(default_factory=dict)
    error: str | None = None


def measure(targets: list[Target], threads=(1,), runs: int = 20, warmup: int = 3, pause_ms: float = 2.0,
            progress: bool = True, trace: list | None = None) -> list[Measurement]:
    """Time every target at every thread count: per thread count, one fresh process per target,
    all loaded and warmed up, then `runs` repetitions of one inference per target, round-robin.

    `trace` (a list) receives (target index, threads, repetition, start_ns) in the order run."""
    from tqdm import tqdm

    baselines = {fmt: baseline_kb(fmt) for fmt in sorted({t.format for t in targets})}
    results: dict[tuple[int, int], Measurement] = {}
    bar = tqdm(total=len(threads) * len(targets) * runs, desc="bench", unit="run", file=sys.stderr,
               disable=None if progress else True, leave=False)
    try:
        for th in threads:
            workers = [Worker(t, th) for t in targets]  # the processes start (import) in parallel
            try:
                for w in workers:
                    w.load()
                for w in workers:
                    w.send(cmd="warmup", n=warmup)
                for rep in range(runs):
                    for i, w in enumerate(workers):
                        ans = w.send(cmd="run")
                        if ans:
                            w.times.append(ans["ms"])
                            if trace is not None:
                                trace.append((i, th, rep, ans["start_ns"]))
                        bar.update(1)
                        if pause_ms:
                            time.sleep(pause_ms / 1e3)
            finally:
                for w in workers:
                    w.close()
            for i, w in enumerate(workers):
                peak = None if w.maxrss_kb is None else w.maxrss_kb - baselines[w.target.format]
                results[i, th] = Measurement(w.target, th, w.times, peak, w.info, w.error)
    finally:
        bar.close()
    return [results[i, th] for i in range(len(targets)) for th in threads]
