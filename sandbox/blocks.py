"""The parent's side of timing: alternating blocks of timed calls, the candidate's in the
worker and the reference's in the verifier, each block timestamped with the parent's own
monotonic clock.

The reference's times come only from the verifier, where no candidate code ever ran (so do the
times of the reference under torch.compile, a third side where the request asks for it): a
candidate that patches torch.nn classes, calls `omp_set_num_threads` or `torch.set_num_threads`,
changes the environment, CPU affinity or the floating-point control word changes its own
process only. The two sides alternate block by block (who goes first alternates too) so both
see the same machine conditions, and before each block the other side must have gone quiet:
- after a candidate block, the candidate's processes must stop using CPU within
  QUIET_TIMEOUT_S (an idle OpenMP pool spins a few ms, then sleeps; a thread left computing or
  spinning does not stop): else `background_work`;
- while the reference runs, the candidate's processes may use at most a small share of the
  CPU time the reference gets (both read from outside: the kernel's per-process CPU clocks):
  else `background_work`;
- the candidate's per-call times, which come from its own process and so from a clock it can
  hook, must account for at least FORGED_SHARE of what the parent saw its blocks take, less the
  harness's own per-call overhead (measured on the verifier's blocks, which run the same loop),
  in the upper quartile of its blocks (`clock_share`), in a timing re-done once when it falls
  short: else `forged_result` where other processes left the CPUs quiet (noise.LOAD_LIMIT),
  and the parent's clock in place of the candidate's where they did not (`to_parent_clock`).

This module never imports torch: it runs in the parent.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

from pydantic import BaseModel, ValidationError

from kagent.errors import SandboxError, one_line
from kagent.sandbox import messages as msg
from kagent.sandbox import noise, sol
from kagent.sandbox.models import EvalRequest, TimingStats, Verdict

IMPLAUSIBLE_SPEEDUP = 10.0

BLOCKS = 16  # blocks per side: enough alternation to share machine conditions, few round trips
QUIET_WINDOW_S = 0.01  # quiet: no CPU used by a side's processes for this long
QUIET_TIMEOUT_S = 0.5
QUIET_POLL_S = 0.001
# Candidate CPU allowed while the reference runs: a share of the reference's own CPU time,
# plus an idle OpenMP pool's spin before it sleeps.
IDLE_SHARE, IDLE_ALLOWANCE_MS = 0.25, 10.0
FORGED_SHARE = 0.5
FORGED_SLACK_MS = 5.0  # per block: pipe wake-ups under load, not the candidate's to account for
# After this many times the budget, stop at the next block once min_runs are done: a stalled
# machine must not stretch the timing tenfold.
STALL_FACTOR = 2
# The parent <-> worker channel: FIFOs the parent makes in the evaluation's workdir; the worker
# opens them before any candidate code runs and removes the names.
TO_WORKER, FROM_WORKER = "timing.in", "timing.out"
TIMED_PREFIX = "timed:"  # outputs entries "timed:G": the output of global timed call G


def stats(samples_ms: list[float]) -> TimingStats:
    """Median, mean, spread and quantiles of per-call times in milliseconds."""
    ordered = sorted(samples_ms)

    def quantile(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return TimingStats(
        median_ms=statistics.median(ordered), mean_ms=statistics.fmean(ordered),
        std_ms=statistics.pstdev(ordered), min_ms=ordered[0], p20_ms=quantile(0.2),
        p80_ms=quantile(0.8), runs=len(ordered),
    )


class Refused(Exception):
    """The timing ended in a verdict: background work, a forged clock, a protocol breach."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


def cpu_ms(pids: list[int]) -> float:
    """CPU time used so far by these processes (all their threads, exited ones included), in
    ms, from the kernel's per-process CPU clock (clock_getcpuclockid(3): any visible process
    can be read, no ptrace rights needed). Processes already gone count as 0."""
    total = 0
    for pid in pids:
        try:
            total += time.clock_gettime_ns((~pid << 3) | 2)  # MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)
        except OSError:
            pass
    return total / 1e6


def wait_quiet(pids: Callable[[], list[int]], timeout_s: float = QUIET_TIMEOUT_S) -> bool:
    """Whether the processes stopped using CPU (none for QUIET_WINDOW_S) within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last, since = cpu_ms(pids()), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(QUIET_POLL_S)
        now_cpu, now = cpu_ms(pids()), time.monotonic()
        if now_cpu - last > 0.05:
            last, since = now_cpu, now
        elif now - since >= QUIET_WINDOW_S:
            return True
    return False


@dataclass
class Block:
    """One block as both clocks saw it: the side's per-call times and the parent's wall time."""

    times_ms: list[float]
    wall_ms: float


def harness_overhead_ms(reference: list[Block]) -> float:
    """The harness's own time per call outside the timed calls (the loop, the pipe's wake-ups),
    from the verifier's blocks, which run the same loop: the median of (wall - sum(times)) /
    calls; 0 without blocks."""
    if not reference:
        return 0.0
    return max(0.0, statistics.median((b.wall_ms - sum(b.times_ms)) / len(b.times_ms) for b in reference))


def clock_share(candidate: list[Block], reference: list[Block]) -> float:
    """How much of what the parent's clock saw the candidate's blocks take its own per-call
    times account for: per block, sum(times) / (wall - harness_overhead_ms x calls -
    FORGED_SLACK_MS); the upper quartile over blocks. A clock hooked inside the
    candidate's process lowers every block's share; load (a pipe wake-up delayed, the worker
    descheduled between calls) lowers some, so the upper quartile and not the median: a
    quarter of the blocks seen on a quiet machine clears an honest candidate. 1.0 where no
    block is long enough to tell."""
    if not candidate or not reference:
        return 1.0
    overhead = harness_overhead_ms(reference)
    shares = []
    for block in candidate:
        seen = block.wall_ms - overhead * len(block.times_ms) - FORGED_SLACK_MS
        shares.append(sum(block.times_ms) / seen if seen > 0 else 1.0)
    shares.sort()
    return shares[min(len(shares) - 1, (3 * len(shares)) // 4)]


def to_parent_clock(candidate: list[Block], reference: list[Block]) -> None:
    """Scale each candidate block's per-call times so that they add up to what the parent saw
    it take, less harness_overhead_ms per call, keeping their spread; an even split where it
    claimed nothing. In place."""
    overhead = harness_overhead_ms(reference)
    for block in candidate:
        seen = max(0.0, block.wall_ms - overhead * len(block.times_ms))
        claimed = sum(block.times_ms)
        if seen > claimed:
            block.times_ms = [t * seen / claimed for t in block.times_ms] if claimed > 0 else [seen / len(block.times_ms)] * len(block.times_ms)


@dataclass
class Session:
    """One evaluation's timing, driven from the parent. `tell_verifier(job)` sends a job
    (messages.VerifierJob) to the verifier, `ask_verifier(job, wait_s, sent)` (sends it unless
    `sent` and) returns its reply (messages.VerifierReply); `candidate_pids()` lists the
    candidate's processes; `verifier_pid` is the verifier's."""

    workdir: str
    key: bytes
    sign: Callable[[bytes, str], str]
    request: EvalRequest
    job_id: str
    tell_verifier: Callable[[BaseModel], None]
    ask_verifier: Callable[..., BaseModel]
    candidate_pids: Callable[[], list[int]]
    verifier_pid: int
    started: bool = False
    finished: bool = False
    meaningful: bool = False
    refused: Refused | None = None
    candidate: list[Block] = field(default_factory=list)
    reference: list[Block] = field(default_factory=list)
    compiled: list[Block] = field(default_factory=list)  # the reference under torch.compile
    time_compiled: bool = False  # the verifier holds a compiled reference for this evaluation
    # Blocks before these indices (candidate, reference, compiled) belong to a timing that was
    # noisy and re-timed: their outputs are still checked, their times no longer count.
    kept_from: tuple[int, int, int] = (0, 0, 0)
    noise: noise.Noise | None = None
    notes: list[str] = field(default_factory=list)  # for the verdict's artifacts
    sol: "sol.SpeedOfLight | None" = None  # the task's speed of light, from the verifier

    def open(self) -> None:
        """Make the FIFOs before the job is sent; held open read-write, so neither end blocks."""
        from kagent.sandbox.processes import _Messages  # one JSON-lines reader for every pipe

        paths = [os.path.join(self.workdir, name) for name in (TO_WORKER, FROM_WORKER)]
        for path in paths:
            os.mkfifo(path, 0o600)
        self.to_worker = os.open(paths[0], os.O_RDWR | os.O_NONBLOCK)
        self.from_worker = os.open(paths[1], os.O_RDWR | os.O_NONBLOCK)
        self.messages = _Messages(self.from_worker)

    def prepare_reference(self) -> None:
        """Have the verifier build the reference and draw its ring now, while the worker runs
        the checks: the reply is read when timing starts."""
        self.tell_verifier(self._ring_job())

    def _ring_job(self) -> msg.RingJob:
        return msg.RingJob(id=self.job_id, request=self.request)

    def close(self) -> None:
        """Close the parent's ends of the FIFOs."""
        for fd in (self.to_worker, self.from_worker):
            os.close(fd)

    # -- talking to each side ---------------------------------------------------------------

    def _from_worker(self, deadline: float, expected: type[BaseModel]) -> BaseModel | None:
        """The worker's next message, an `expected` (a messages.WorkerReply); None when it did
        not come by `deadline`, the candidate's process is gone, or the worker gave up timing
        (its candidate failed). The worker runs candidate code: a message that is not signed
        with the evaluation's key, or not an `expected`, is `forged_result`."""
        while True:
            message = self.messages.read(max(0.0, min(0.05, deadline - time.monotonic())))
            if message is not None:
                break
            if time.monotonic() >= deadline or not self.candidate_pids():
                return None
        try:
            signed = msg.Signed.model_validate(message)
        except ValidationError:
            signed = None
        if signed is None or not signed.valid(self.key, self.sign):
            raise Refused("forged_result", "a timing message from the worker carries no valid harness signature")
        try:
            reply = msg.WORKER_REPLY.validate_python(json.loads(signed.body), strict=True)
        except ValueError as err:
            raise Refused("forged_result", f"a timing message from the worker is malformed: {one_line(err, 200)}") from None
        if isinstance(reply, msg.Aborted):
            return None
        if not isinstance(reply, expected):
            raise Refused("forged_result", f"the worker answered {expected.__name__} with {type(reply).__name__}")
        return reply

    def _ask_worker(self, request: msg.Warmup | msg.Prepare | msg.Block, expected: type[BaseModel],
                    deadline: float) -> BaseModel | None:
        os.write(self.to_worker, (msg.dumps(request) + "\n").encode())
        return self._from_worker(deadline, expected)

    def _ask_reference(self, job: BaseModel, expected: type[BaseModel], deadline: float) -> BaseModel:
        """The verifier's reply to a timing job: trusted, so any other reply is kagent's bug."""
        reply = self.ask_verifier(job, max(1.0, deadline - time.monotonic()))
        if not isinstance(reply, expected):
            raise SandboxError(f"the verifier answered {type(job).__name__} with {type(reply).__name__}")
        return reply

    def _times(self, reply: msg.Timed | None, calls: int) -> list[float] | None:
        if reply is not None and len(reply.times_ms) != calls:
            raise Refused("forged_result", f"a timing block's reply is not {calls} per-call times")
        return reply.times_ms if reply is not None else None

    # -- the session --------------------------------------------------------------------------

    def poll(self, deadline: float) -> None:
        """If the worker asks for timing, run the whole session (until `deadline` at most).
        A candidate that stops answering leaves the session unfinished: the caller's own
        timeout and death checks then give the verdict."""
        if self.started or self.refused:
            return
        try:
            hello = self._from_worker(time.monotonic(), msg.Hello)
            if hello is None:
                return
            self.started = True
            self.meaningful = hello.meaningful
            self._run(deadline)
        except Refused as refused:
            self.refused = refused
        finally:
            if self.started:
                try:
                    os.write(self.to_worker, (msg.dumps(msg.End()) + "\n").encode())
                except OSError:
                    pass

    def _run(self, deadline: float) -> None:
        request = self.request
        ring = self.ask_verifier(self._ring_job(), max(1.0, deadline - time.monotonic()), True)
        if not isinstance(ring, msg.Ring):
            raise SandboxError(f"the verifier answered RingJob with {type(ring).__name__}")
        self.sol = sol.SpeedOfLight.model_validate(ring.sol) if ring.sol else None
        self.notes += [note for note in (ring.sol_note, ring.compile_note) if note]
        self.time_compiled = ring.compiled and self.meaningful
        warmup = request.warmup if self.meaningful else 1
        cand_warm = self._ask_worker(msg.Warmup(calls=warmup), msg.Warmed, deadline)
        if cand_warm is None:
            return
        ref_warm = self._ask_reference(msg.WarmupJob(id=self.job_id, calls=warmup), msg.Warmed, deadline)
        comp_warm = (self._ask_reference(msg.WarmupJob(id=self.job_id, calls=warmup, side="compiled"), msg.Warmed, deadline)
                     if self.time_compiled else None)
        if self.meaningful:
            pair_ms = ref_warm.warm_ms + cand_warm.warm_ms + (comp_warm.warm_ms if comp_warm else 0.0)
            runs = max(request.min_runs, min(request.max_runs, int(request.timing_budget_s * 1000 / max(pair_ms, 1e-3))))
        else:
            runs = 3
        # Each block's input sets are drawn before it and held until called: no more calls per
        # block than the verifier says fit in memory (timing.batch_calls), so more blocks.
        batch = ring.batch
        count = max(min(BLOCKS, runs), -(-runs // batch))
        sizes = [runs // count + (k < runs % count) for k in range(count)]
        for attempt in range(2 if self.meaningful else 1):  # a noisy timing is re-timed once
            self.kept_from = (len(self.candidate), len(self.reference), len(self.compiled))
            before = self._load()
            if not self._blocks(sizes, deadline):
                return
            ref, cand = self._stats()
            self.noise = noise.assess(ref, cand, before, self._load())
            share = clock_share(self.candidate[self.kept_from[0]:], self.reference[self.kept_from[1]:])
            if not self.noise.noisy and share >= FORGED_SHARE:
                break
            if attempt == 0:
                why = self.noise.describe() if self.noise.noisy else f"the candidate's clock accounted for {share:.0%} of its blocks"
                self.notes.append(f"re-timed: the first timing was noisy ({why})")
        if share < FORGED_SHARE:
            blocks = self.candidate[self.kept_from[0]:]
            claimed = statistics.median(sum(b.times_ms) for b in blocks)
            seen = statistics.median(b.wall_ms for b in blocks)
            if self.noise.other_load is not None and self.noise.other_load <= noise.LOAD_LIMIT:
                raise Refused("forged_result", f"the candidate's timed calls claim {claimed:.2f} ms per block, but the parent's clock saw its blocks take {seen:.2f} ms (a clock hooked inside its process?)")
            # Other processes held the CPUs: they delay blocks in ways no clock inside the
            # candidate sees, so a short claim is no proof of a forged one. The parent's clock
            # then stands for the candidate's: never faster than it was, maybe slower.
            to_parent_clock(blocks, self.reference[self.kept_from[1]:])
            self.notes.append(f"the candidate's own clock accounted for {share:.0%} of what the parent saw on a loaded machine "
                              f"({self.noise.describe()}): its times are the parent's ({claimed:.2f} ms claimed per block, {seen:.2f} ms seen)")
        self.finished = True

    def _load(self) -> noise.LoadSample:
        """The machine's CPU accounting, the evaluation's own processes (worker, verifier) as
        ours: their CPU is the timing, not a disturbance."""
        return noise.sample_load(cpu_ms(self.candidate_pids() + [self.verifier_pid]) / 1000)

    def _stats(self) -> tuple[TimingStats, TimingStats]:
        """The reference's and the candidate's stats over the blocks that count."""
        ref = stats([t for b in self.reference[self.kept_from[1]:] for t in b.times_ms])
        cand = stats([t for b in self.candidate[self.kept_from[0]:] for t in b.times_ms])
        return ref, cand

    def _compiled_stats(self) -> TimingStats | None:
        """The compiled reference's stats over the blocks that count, if it was timed."""
        times = [t for b in self.compiled[self.kept_from[2]:] for t in b.times_ms]
        return stats(times) if times else None

    def _blocks(self, sizes: list[int], deadline: float) -> bool:
        """One timing: the blocks of `sizes` calls, alternating sides. False when the candidate
        stopped answering."""
        request = self.request
        stop_at = time.monotonic() + STALL_FACTOR * request.timing_budget_s
        done = 0
        idle = [0.0, 0.0]  # CPU ms of the candidate and of the reference during reference blocks
        verifier = lambda: [self.verifier_pid]  # noqa: E731
        sides = ("candidate", "reference", "compiled") if self.time_compiled else ("candidate", "reference")
        for k, calls in enumerate(sizes):
            for side in (sides if k % 2 == 0 else sides[::-1]):
                if side == "candidate":
                    # The last block's sampled output is checked and written to disk, and this
                    # block's input sets drawn, now: that time is no block's wall time.
                    if self._ask_worker(msg.Prepare(calls=calls), msg.Prepared, deadline) is None:
                        return False
                    wait_quiet(verifier)  # trusted: a slow pool is not held against anyone
                    began = time.monotonic()
                    times = self._times(self._ask_worker(msg.Block(calls=calls), msg.Timed, deadline), calls)
                    if times is None:
                        return False
                    self.candidate.append(Block(times, (time.monotonic() - began) * 1000))
                else:
                    self._ask_reference(msg.PrepareJob(id=self.job_id, calls=calls, side=side), msg.Prepared, deadline)
                    if not wait_quiet(self.candidate_pids):
                        raise Refused("background_work", "the candidate's process kept using CPU after its timed calls returned (work left running)")
                    cpu_before, ref_before = cpu_ms(self.candidate_pids()), cpu_ms(verifier())
                    began = time.monotonic()
                    reply = self._ask_reference(msg.BlockJob(id=self.job_id, calls=calls, side=side), msg.Timed, deadline)
                    wall_ms = (time.monotonic() - began) * 1000
                    used_ms, ref_ms = cpu_ms(self.candidate_pids()) - cpu_before, cpu_ms(verifier()) - ref_before
                    # Against the CPU the reference itself got, not the wall time: on a loaded
                    # machine a spinning thread gets a share of a core, not all of it.
                    idle[0], idle[1] = idle[0] + used_ms, idle[1] + ref_ms
                    # Per block, and over all blocks so far: short blocks hide a thread that only
                    # gets a slice of a core now and then.
                    for used, ref in ((used_ms, ref_ms), idle):
                        if used > IDLE_ALLOWANCE_MS + IDLE_SHARE * ref:
                            raise Refused("background_work", f"the candidate's processes used {used:.1f} ms of CPU while the reference was timed (the reference: {ref:.1f} ms): work left running")
                    (self.reference if side == "reference" else self.compiled).append(Block(self._times(reply, calls), wall_ms))
            done += calls
            if k >= 1 and done >= request.min_runs and time.monotonic() > stop_at:
                break
        # The last candidate block may have no reference block after it: work it left running
        # must stop all the same.
        if not wait_quiet(self.candidate_pids):
            raise Refused("background_work", "the candidate's process kept using CPU after its timed calls returned (work left running)")
        return True

    def timed_blocks(self) -> list[list[int]]:
        """Global call ranges [first, end) of the candidate's blocks: one sampled output each."""
        ranges, first = [], 0
        for block in self.candidate:
            ranges.append([first, first + len(block.times_ms)])
            first += len(block.times_ms)
        return ranges

    def apply(self, verdict: Verdict) -> None:
        """Put the parent's timing into a `correct` verdict from the worker: the reference's
        stats from the verifier, the candidate's from the blocks the parent timed, and where
        the timing is meaningful the speedup and the fraction of the speed of light. A kernel
        measurably faster than the speed of light becomes `rejected (faster_than_light)`."""
        ref, cand = self._stats()
        verdict.artifacts.notes += self.notes
        verdict.ref_timing, verdict.candidate_timing = ref, cand
        verdict.ref_time_ms, verdict.candidate_time_ms = ref.median_ms, cand.median_ms
        verdict.timing_meaningful = self.meaningful
        if not self.meaningful:
            return
        verdict.speedup = ref.median_ms / max(cand.median_ms, 1e-9)
        verdict.message += f"; {verdict.speedup:.2f}x vs eager PyTorch"
        compiled = self._compiled_stats()
        if compiled is not None:
            verdict.compile_timing, verdict.compile_time_ms = compiled, compiled.median_ms
            verdict.speedup_vs_compile = compiled.median_ms / max(cand.median_ms, 1e-9)
            verdict.message += f", {verdict.speedup_vs_compile:.2f}x vs torch.compile"
        if self.sol is None:
            if verdict.speedup > IMPLAUSIBLE_SPEEDUP:  # no bound to judge by: a warning only
                verdict.implausible_speedup = True
                verdict.message += f" — implausible (>{IMPLAUSIBLE_SPEEDUP:.0f}x): check the task for redundancy before trusting it"
            self._apply_noise(verdict)
            return
        verdict.sol_time_ms = self.sol.sol_time_ms
        verdict.sol_fraction = self.sol.sol_time_ms / max(cand.median_ms, 1e-9)
        verdict.artifacts.notes.append(self.sol.describe())
        if sol.faster_than_light(verdict.sol_fraction, self.request.device):
            verdict.status, verdict.reason, verdict.implausible_speedup = "rejected", "faster_than_light", True
            verdict.message = (f"measured {cand.median_ms:.4f} ms per call, {verdict.sol_fraction:.2f}x the speed of light "
                               f"({self.sol.sol_time_ms:.4f} ms, {self.sol.bound}-bound): no kernel can be that fast; "
                               f"the timing or the kernel is wrong")
            return
        verdict.message += f", {verdict.sol_fraction:.0%} of the speed of light ({self.sol.bound}-bound)"
        self._apply_noise(verdict)

    def _apply_noise(self, verdict: Verdict) -> None:
        """The noise assessment's fields, and its warning in the message when noisy."""
        if self.noise is not None:
            verdict.timing_noisy, verdict.timing_spread = self.noise.noisy, self.noise.spread
            verdict.timing_other_load = self.noise.other_load
            if self.noise.noisy:
                verdict.message += f" — timing noisy after a re-timing ({self.noise.describe()}): do not trust this speedup"
