"""Time the reference and the candidate in the same process, interleaved, so both see the same
machine state (clock, thermal, other load). Median and spread of many runs after warm-up.

On a GPU each run is bracketed by CUDA events, the L2 cache is flushed before it, and the
device is synchronised before the end event so work left on other streams is counted. On a
CPU, a monotonic clock.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

from kagent.sandbox.models import TimingStats

L2_FLUSH_BYTES = 256 * 1024 * 1024  # larger than any current GPU's L2
# A process's first ~0.1 s of calls run a few percent slower than the rest (measured on CPU:
# caches, TLB, the OpenMP pool settling): warm up for at least this long, not just a few calls.
WARMUP_S = 0.1


def _stats(samples_ms: list[float]) -> TimingStats:
    ordered = sorted(samples_ms)

    def quantile(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return TimingStats(
        median_ms=statistics.median(ordered),
        mean_ms=statistics.fmean(ordered),
        std_ms=statistics.pstdev(ordered),
        min_ms=ordered[0],
        p20_ms=quantile(0.2),
        p80_ms=quantile(0.8),
        runs=len(ordered),
    )


class _Clock:
    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        if self.cuda:
            self.flush = torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.int32, device=device)

    def run(self, fn: Callable[[], object]) -> float:
        """One timed call in milliseconds."""
        if self.cuda:
            self.flush.zero_()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            torch.cuda.synchronize()  # all streams: side-stream work is part of the call
            end.record()
            end.synchronize()
            return start.elapsed_time(end)
        began = time.perf_counter_ns()
        fn()
        return (time.perf_counter_ns() - began) / 1e6


def time_interleaved(
    reference: Callable[[], object],
    candidate: Callable[[], object],
    device: torch.device,
    warmup: int,
    min_runs: int,
    max_runs: int,
    budget_s: float,
) -> tuple[TimingStats, TimingStats, float]:
    """Returns both sides' stats and the speedup, the ratio of their medians (a stall that
    hits a minority of runs moves neither median)."""
    clock = _Clock(device)
    pair_ms = float("inf")
    warm_until = time.monotonic() + WARMUP_S
    done = 0
    while done < max(1, warmup) or time.monotonic() < warm_until:
        # The fastest warm-up pair sizes the run count: one slow first call must not shrink it.
        pair_ms = min(pair_ms, clock.run(reference) + clock.run(candidate))
        done += 1
    runs = int(budget_s * 1000 / max(pair_ms, 1e-3))
    runs = max(min_runs, min(max_runs, runs))
    ref_samples, cand_samples = [], []
    deadline = time.monotonic() + 2 * budget_s
    for i in range(runs):
        # Alternate who goes first so neither always runs on a cache the other warmed.
        if i % 2:
            cand_samples.append(clock.run(candidate))
            ref_samples.append(clock.run(reference))
        else:
            ref_samples.append(clock.run(reference))
            cand_samples.append(clock.run(candidate))
        if i + 1 >= min_runs and time.monotonic() > deadline:
            break  # a stalled machine must not stretch the budget tenfold
    ref_stats, cand_stats = _stats(ref_samples), _stats(cand_samples)
    return ref_stats, cand_stats, ref_stats.median_ms / max(cand_stats.median_ms, 1e-9)
