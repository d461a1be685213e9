"""Timed calls inside one process: the candidate's in the worker, the reference's in the
verifier, never both in one process (a candidate's process-wide changes, patched torch.nn
classes and native hooks cannot reach the reference). The parent (blocks.py) drives the two
processes in alternating blocks and timestamps each block with its own clock.

Every timed call gets an input set of its own, drawn from the task's `get_inputs` under a seed
the candidate cannot predict (one per call: `timed_set`), prepared before its block starts
(outside the block's wall time, which the parent checks the claimed times against; a block
holds at most `batch_calls` sets' worth of RING_BYTES): no input values are ever timed twice, so a cache keyed on the input object, its version counter, its
address, sampled values or the whole contents (even one with an entry per set) never serves a
timed call correctly. Warm-up runs on a small ring of sets drawn beforehand. One call per block,
chosen at random, has its output copied the moment it returns; that copy is compared with the
output itself when the next block begins (work left running has had the reference's block in
between to land), the output is then let go, and the copy later compared with the reference on
the same inputs, drawn again from the same seed (here and again in the verifier): one output
per block is held, not two.

On a GPU each call is bracketed by CUDA events, the L2 cache is flushed before it, and the
device is synchronised before the end event so work left on other streams is counted. On a
CPU, a monotonic clock.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from kagent.sandbox.blocks import FROM_WORKER, TO_WORKER
from pydantic import BaseModel

from kagent.sandbox import messages as msg
from kagent.sandbox.compare import flatten, same_values
from kagent.sandbox.task import nbytes

L2_FLUSH_BYTES = 256 * 1024 * 1024  # larger than any current GPU's L2
# A process's first ~0.1 s of calls run a few percent slower than the rest (measured on CPU:
# caches, TLB, the OpenMP pool settling): warm up for at least this long, not just a few calls.
WARMUP_S = 0.1
# The warm-up ring: as many distinct sets as fit in this many bytes, within these bounds (the
# timed calls draw their own sets, so one is enough for a large task).
RING_BYTES = 32 * 1024 * 1024
RING_MIN, RING_MAX = 1, 16


class _Clock:
    """Times one call: CUDA events around it (L2 flushed first) on a GPU, else a monotonic clock."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        if self.cuda:
            self.flush = torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.int32, device=device)

    def run(self, fn: Callable[[], object]) -> tuple[float, object]:
        """One timed call: (milliseconds, what it returned)."""
        if self.cuda:
            self.flush.zero_()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn()
            torch.cuda.synchronize()  # all streams: side-stream work is part of the call
            end.record()
            end.synchronize()
            return start.elapsed_time(end), out
        began = time.perf_counter_ns()
        out = fn()
        return (time.perf_counter_ns() - began) / 1e6, out


def _seed(stream: str, seeds: list[int], index: int) -> int:
    """Seed number `index` of a stream ("timing ring": the warm-up sets, "timed call": one per
    timed call): fixed by the request's seeds (so the verifier draws the same sets), revealing
    none of them."""
    return int.from_bytes(hashlib.sha256(f"kagent {stream} {list(seeds)} {index}".encode()).digest()[:8], "little") >> 1


def ring_set(get_inputs: Callable[[], list], seeds: list[int], index: int, device: torch.device,
             upcast_bf16: bool = False) -> list:
    """Input set `index` of the warm-up ring (the same values draw_ring gives it), drawn on its own."""
    return draw_set(get_inputs, _seed("timing ring", seeds, index), device, upcast_bf16)


def timed_set(get_inputs: Callable[[], list], seeds: list[int], call: int, device: torch.device,
              upcast_bf16: bool = False) -> list:
    """The input set of global timed call `call`, the same in the worker and the verifier."""
    return draw_set(get_inputs, _seed("timed call", seeds, call), device, upcast_bf16)


def draw_set(get_inputs: Callable[[], list], seed: int, device: torch.device, upcast_bf16: bool = False) -> list:
    """One input set from `get_inputs` under `seed`, on `device`; bf16 tensors as fp32 where
    `upcast_bf16` (the reference then computes in fp32)."""
    torch.manual_seed(seed)
    # Python scalars (int, float, bool) are passed as they are, as in the input sets.
    inputs = [x.to(device) if isinstance(x, torch.Tensor) else x for x in get_inputs()]
    if upcast_bf16:
        inputs = [x.float() if isinstance(x, torch.Tensor) and x.dtype == torch.bfloat16 else x for x in inputs]
    return inputs


def draw_ring(get_inputs: Callable[[], list], seeds: list[int], device: torch.device,
              upcast_bf16: bool = False) -> list[list[torch.Tensor]]:
    """RING_MIN..RING_MAX distinct input sets (as many as fit in RING_BYTES), on `device`."""
    ring: list[list[torch.Tensor]] = []
    size = RING_MAX
    for index in range(RING_MAX):
        if len(ring) >= size:
            break
        inputs = ring_set(get_inputs, seeds, index, device, upcast_bf16)
        if not ring:
            size = ring_length(inputs)
        ring.append(inputs)
    return ring


def batch_calls(first: list) -> int:
    """How many timed calls' input sets one block may prepare at once, given one set: as many as
    fit in RING_BYTES, at least one (blocks.py then makes more, smaller blocks)."""
    return max(1, RING_BYTES // max(nbytes(first), 1))


def ring_length(first: list) -> int:
    """How many sets the warm-up ring has, given its first: RING_MIN..RING_MAX, as many as fit
    in RING_BYTES."""
    return max(RING_MIN, min(RING_MAX, batch_calls(first)))


@dataclass
class Timer:
    """Timed calls of one function, block by block: warm-up on the `ring` of input sets, then
    calls numbered globally, call G on `draw(G)`, an input set of its own prepared before its
    block (`prepare`) and let go once called."""

    fn: Callable[..., object]
    ring: list[list[torch.Tensor]]
    device: torch.device
    draw: Callable[[int], list]
    # Keep the sampled copies (the worker's side, for the checks). The verifier samples too, so
    # that both sides spend the same time per block (the parent compares them, blocks.py), but
    # keeps nothing: the worker's samples are what is checked.
    keep: bool = True
    # Where a kept copy goes once its block is settled (the worker writes it to disk: a copy per
    # block held in memory would be 16 outputs); None keeps it in `sampled`.
    store: Callable[[int, list], None] | None = None
    calls: int = 0
    warm_calls: int = 0
    # The one sampled call per block: G -> the copy of its output taken when it returned.
    sampled: dict[int, list] = field(default_factory=dict)
    changed: list[int] = field(default_factory=list)  # sampled calls whose output changed after it returned
    pending: tuple[int, list, list] | None = None  # the last block's sample: (G, copy, the output itself)
    prepared: list[list] = field(default_factory=list)  # the next block's input sets, in call order

    def __post_init__(self):
        self.clock = _Clock(self.device)
        self.rng = random.SystemRandom()  # not torch's or random's state: a candidate sets those

    def _call(self, inputs: list[torch.Tensor]) -> tuple[float, object]:
        return self.clock.run(lambda: self.fn(*inputs))

    def warm_up(self, at_least: int) -> float:
        """At least `at_least` calls and WARMUP_S seconds; the fastest call's milliseconds
        (one slow first call must not shrink the run count)."""
        fastest, done = float("inf"), 0
        until = time.monotonic() + WARMUP_S
        while done < max(1, at_least) or time.monotonic() < until:
            fastest = min(fastest, self._call(self.ring[done % len(self.ring)])[0])
            done += 1
        self.warm_calls += done
        return fastest

    def prepare(self, count: int) -> int:
        """Draw the input sets of the next block's `count` calls; how many are ready."""
        self.settle()  # the last sample's output let go before more sets are drawn
        self.prepared = []  # sets of a block never run (a failed re-timing) let go first
        self.prepared = [self.draw(g) for g in range(self.calls, self.calls + count)]
        return len(self.prepared)

    def block(self, count: int) -> list[float]:
        """`count` timed calls, each on an input set of its own (prepared before, else drawn
        here); per-call milliseconds."""
        if len(self.prepared) != count:
            self.prepare(count)
        self.settle()
        sample = self.calls + self.rng.randrange(count)
        times = []
        self.prepared.reverse()  # popped from the end, in call order
        for g in range(self.calls, self.calls + count):
            inputs = self.prepared.pop()
            ms, out = self._call(inputs)
            del inputs  # let go once called (held by the output only if it aliases them)
            times.append(ms)
            if g == sample:  # copied outside the timed window, the instant the call returned
                leaves = flatten(out)
                self.pending = (g, [t.clone() if isinstance(t, torch.Tensor) else t for t in leaves], leaves)
                if self.keep:
                    self.sampled[g] = self.pending[1]
            del out
        self.calls += count
        return times

    def settle(self) -> None:
        """Compare the pending sample with its output now (`changed` if it differs), then let
        the output go. Called when a block begins, and by the caller once timing is over."""
        if self.pending is not None:
            g, copy, out = self.pending
            self.pending = None
            if not same_values(out, copy):
                self.changed.append(g)
            del out
            if self.store is not None and self.keep:
                self.sampled.pop(g, None)
                self.store(g, copy)


def serve(timer: Timer, read: Callable[[], BaseModel], write: Callable[[BaseModel], None]) -> None:
    """Answer the parent's timing requests (messages.WorkerRequest) until it says `End`:
    `Warmup` -> `Warmed`; `Prepare` -> `Prepared` (the last block's sample settled and this
    block's input sets drawn, between blocks: outside any block's wall time); `Block` -> `Timed`."""
    while True:
        request = read()
        if isinstance(request, msg.Warmup):
            write(msg.Warmed(warm_ms=timer.warm_up(request.calls)))
        elif isinstance(request, msg.Prepare):
            write(msg.Prepared(prepared=timer.prepare(request.calls)))
        elif isinstance(request, msg.Block):
            write(msg.Timed(times_ms=timer.block(request.calls)))
        else:
            return


class WorkerChannel:
    """The worker's end of the FIFOs: JSON lines, messages.WorkerRequest in, each reply
    messages.Signed with the evaluation's key out."""

    def __init__(self, sign: Callable[[str], str]):
        self.sign = sign
        self.inbox = os.fdopen(os.open(TO_WORKER, os.O_RDONLY), "r")
        self.outbox = os.open(FROM_WORKER, os.O_WRONLY)
        for name in (TO_WORKER, FROM_WORKER):  # candidate code cannot open them by name
            os.unlink(name)

    def read(self) -> BaseModel:
        """The parent's next request (a messages.WorkerRequest); `End` once the parent is gone."""
        line = self.inbox.readline()
        return msg.WORKER_REQUEST.validate_python(json.loads(line)) if line else msg.End()

    def write(self, message: BaseModel) -> None:
        """One signed line to the parent (a messages.WorkerReply; see blocks.Session._from_worker)."""
        os.write(self.outbox, (msg.dumps(msg.Signed.of(message, self.sign)) + "\n").encode())

    def close(self) -> None:
        """Tell the parent timing is over on this side (it may be waiting for a block that a
        failing candidate never finished), then close."""
        if self.inbox.closed:
            return
        self.write(msg.Aborted())
        self.inbox.close()
        os.close(self.outbox)
