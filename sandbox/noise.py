"""Whether a timing can be trusted: the spread of its samples, and the CPU time other processes
took on this process's CPUs while it ran.

On a loaded 2-core machine the same kernel was reported anywhere from 0.13x to 30x: a median
taken while another process held one of the cores is a measurement of that process. Two signs,
both read around the timing window and judged by `assess`:

- **spread**: (p80 - p20) / median of each side's samples, the larger of the two. A quiet
  machine keeps the middle 60% of samples within a few percent of the median (bench/README.md:
  2-5% for the relu and matmul of tests/candidates); preemption and stalls widen it.
- **other load**: busy CPU time on the CPUs this process may run on (`/proc/stat`, per-CPU
  lines; user + nice + system + irq + softirq + steal jiffies) minus this process's own CPU
  time (`getrusage(RUSAGE_SELF)`, all its threads: OpenMP and torch's intra-op pool included),
  as a share of those CPUs' capacity over the window (wall time x CPUs). It catches a
  disturbance the samples do not show as spread, one that slowed every sample alike.

The parent times once, and once more when the first timing was noisy (blocks.py); the second
stands, and the verdict says `timing_noisy: true` (spread and load in its message) when it is
noisy too.
"""

from __future__ import annotations

import os
import resource
import time

from pydantic import BaseModel

from kagent.sandbox.models import TimingStats

# A spread above this is not the machine's floor. Quiet runs here measure 2-5% (bench/README.md);
# short kernels (~10 us) reach ~10-15% from clock granularity and interrupts alone. At 25% a
# median can move by a tenth between two evaluations of the same code.
SPREAD_LIMIT = 0.25
# Other processes using more than this share of our CPUs: on 2 cores, 0.3 of a core for the
# whole window, more than the parent's polling, the idle verifier and the kernel's own
# housekeeping (~1-3%) plus /proc/stat's 10 ms tick resolution (~1% of a 0.8 s x 2-core window)
# account for. A timing whose threads fill every core loses that much time to the intruder.
LOAD_LIMIT = 0.15
# Fields of a /proc/stat cpu line that count as busy (proc(5)): user, nice, system, irq,
# softirq, steal. idle and iowait are not; guest and guest_nice are already in user and nice.
BUSY_FIELDS = (0, 1, 2, 5, 6, 7)


class LoadSample(BaseModel):
    """The machine's CPU accounting at one instant, for `assess` to difference."""

    wall_s: float  # time.monotonic()
    busy_s: float | None  # CPU-seconds busy on this process's CPUs since boot; None: no /proc/stat
    own_cpu_s: float  # this process's user + system CPU-seconds (all threads)
    cpus: int  # CPUs this process may run on


class Noise(BaseModel):
    """How disturbed one timing was (see the module docstring for both measures)."""

    spread: float  # max over the two sides of (p80 - p20) / median
    other_load: float | None  # share of our CPUs' capacity used by other processes; None: unknown
    noisy: bool

    def describe(self) -> str:
        """One clause for a verdict's message, e.g. 'spread 41%, other processes 62% of 2 CPUs'."""
        text = f"spread {self.spread:.0%}"
        if self.other_load is not None:
            text += f", other processes used {self.other_load:.0%} of the CPUs"
        return text


def _busy_s(cpus: set[int]) -> float | None:
    """Busy CPU-seconds since boot, summed over `cpus`, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    jiffies = 0
    found = False
    for line in lines:
        name, _, rest = line.partition(" ")
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            values = rest.split()
            jiffies += sum(int(values[i]) for i in BUSY_FIELDS if i < len(values))
            found = True
    return jiffies / os.sysconf("SC_CLK_TCK") if found else None


def sample_load(others_own_s: float = 0.0) -> LoadSample:
    """The CPU accounting now: take one before and one after the timing. `others_own_s`: CPU
    seconds of other processes that belong to the timing (the worker and the verifier, when
    the parent times), counted as this process's own."""
    cpus = os.sched_getaffinity(0)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return LoadSample(wall_s=time.monotonic(), busy_s=_busy_s(cpus),
                      own_cpu_s=usage.ru_utime + usage.ru_stime + others_own_s, cpus=len(cpus))


def spread(stats: TimingStats) -> float:
    """(p80 - p20) / median: the relative width of the middle 60% of the samples."""
    return (stats.p80_ms - stats.p20_ms) / stats.median_ms if stats.median_ms > 0 else 0.0


def assess(ref: TimingStats, candidate: TimingStats, before: LoadSample, after: LoadSample) -> Noise:
    """Judge one timing of reference and candidate from its samples and the CPU accounting
    taken before and after it. `other_load` is None where /proc/stat could not be read."""
    worst = max(spread(ref), spread(candidate))
    other = None
    wall = after.wall_s - before.wall_s
    if before.busy_s is not None and after.busy_s is not None and wall > 0:
        foreign_s = (after.busy_s - before.busy_s) - (after.own_cpu_s - before.own_cpu_s)
        # Tick-sampled jiffies can fall short of getrusage's precise own time: not negative load.
        other = max(0.0, foreign_s) / (wall * max(1, after.cpus))
    noisy = worst > SPREAD_LIMIT or (other is not None and other > LOAD_LIMIT)
    return Noise(spread=round(worst, 4), other_load=None if other is None else round(other, 4), noisy=noisy)

