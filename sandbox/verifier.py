"""The trusted side of an evaluation: a `correct` verdict is checked against a reference
computed outside the sandbox.

The harness runs in the candidate's process, so native code in a candidate can do whatever the
harness can: read the verdict's signing key from memory, switch checks off, sign a verdict of
its own. It cannot change what another process computes. The verifier is a long-lived process
that kagent starts beside the fork server, outside the candidates' PID namespace (a candidate
cannot name it), and that makes itself non-dumpable (a process of the same user cannot ptrace
it or read its memory). For each verdict that claims `correct`, once the candidate's processes
are dead, it rebuilds the task's reference from the request's seeds, draws the same input sets,
and compares its own results with the outputs the worker saved beside the verdict (loaded as
plain tensors: `weights_only`, no code runs).

It is also where the reference is timed (timing.py, driven by the parent in blocks that
alternate with the candidate's, blocks.py): no candidate code ever ran in this process, so
nothing a candidate does to its own process (patched torch.nn classes, thread counts, the
environment, the floating-point mode, a hooked clock) reaches the reference's timing. It draws
the same input set for each timed call as the worker, so it also checks the outputs of timed
calls.

It also compiles and times the reference under torch.compile (compiled.py) where the request
asks for that baseline: compiled once per task, before the candidate's clock starts, and kept
for the task's later evaluations (the first compiled model instance, on each evaluation's inputs).

Protocol on stdin/stdout, one JSON object per line (the models in messages.py; each reply
carries its job's id and op):
  <- Ready {"ready": true}
  -> CompileJob {"id": ID, "op": "compile", "request": {...}}  <- Compiled {"compiled": {"ok": B, "compile_s": S, "error": TEXT | null}}
  -> RingJob {"id": ID, "op": "ring", "request": {...EvalRequest}}  <- Ring {"ring": N, "batch": CALLS, "sol": {...SpeedOfLight} | null, "sol_note": TEXT | null, "compiled": B, "compile_note": TEXT | null}
  -> WarmupJob {"id": ID, "op": "warmup", "calls": N, "side": "reference" | "compiled"}  <- Warmed {"warm_ms": MS}
  -> PrepareJob {"id": ID, "op": "prepare", "calls": N, "side": ...}  <- Prepared {"prepared": N}
  -> BlockJob {"id": ID, "op": "block", "calls": N, "side": ...}  <- Timed {"times_ms": [...]}
  -> CheckJob {"id": ID, "op": "check", "request": {...EvalRequest}, "outputs": PATH, "timed_blocks": [[FIRST, END], ...]}
     (PATH: the worker's list of saved entries; their outputs beside it, messages.SavedOutputs)
  <- Checked {"check": {...OutputCheck}}
and to any job that raised: Failed {"op": "error", "error": NAME, "message": TEXT, "log": TEXT}.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections import OrderedDict
from pathlib import Path

import torch
from pydantic import BaseModel

from kagent.sandbox import compare as cmp
from kagent.sandbox import sol
from kagent.sandbox.backends import get_backend
from kagent.sandbox.confine import PR_SET_DUMPABLE, prctl
from kagent.errors import ErrorMessage, KagentError, SandboxError, one_line
from kagent.sandbox.blocks import TIMED_PREFIX
from kagent.sandbox.compiled import CompiledReference, compile_reference
from kagent.sandbox.reference import PeakMemory, Reference, build_reference
from kagent.sandbox import messages as msg
from kagent.sandbox.messages import SavedOutputs
from kagent.sandbox.models import EvalRequest, OutputCheck
from kagent.sandbox.timing import Timer, batch_calls, draw_ring, ring_set, timed_set

# Compiled references kept, most recent last: a batch alternates between a few tasks, and each
# compilation costs tens of seconds.
COMPILED_KEPT = 4
_compiled: "OrderedDict[tuple, CompiledReference]" = OrderedDict()


def _task_key(request: EvalRequest) -> tuple:
    """Which compiled reference an evaluation times: one per task source and device. Not per
    seed: each evaluation draws new seeds, and the compiled model built for the first is timed
    on every later evaluation's ring (same shapes and dtypes; its weights need not match)."""
    source = hashlib.sha256(Path(request.task_path).read_bytes()).hexdigest()
    return request.task_path, source, tuple(sorted(request.scaled_sizes.items())), request.device, request.allow_tf32


def compiled_reference(request: EvalRequest) -> CompiledReference:
    """The task's reference under torch.compile, compiled on first use (tens of seconds) and
    kept. Its output on the first timing set must match the reference's within the task's
    tolerance, else `error` says so and it is not used."""
    key = _task_key(request)
    if key in _compiled:
        _compiled.move_to_end(key)
        return _compiled[key]
    reference = build_reference(request, validate=False)
    first = ring_set(reference.task.get_inputs, request.seeds, 0, torch.device(request.device), reference.tolerance_dtype is not None)
    expected = reference.expect(first)

    def matches(output, want) -> bool:
        return want.judge(cmp.flatten(output), reference.tolerance_dtype, request.allow_tf32).ok

    _compiled[key] = compile_reference(reference.model, first, expected, matches)
    while len(_compiled) > COMPILED_KEPT:
        _compiled.popitem(last=False)
    return _compiled[key]


class _Timing:
    """The reference of one evaluation, built once for its timing blocks and its check."""

    def __init__(self, job_id: str, request: EvalRequest):
        self.job_id = job_id
        self.peak = PeakMemory()
        self.reference = build_reference(request, validate=False)  # the worker validates the task
        self.reference.sets.release(first=True)  # not held beside the ring: drawn again for the check
        device = torch.device(request.device)
        self.ring = draw_ring(self.reference.task.get_inputs, request.seeds, device, self.reference.tolerance_dtype is not None)

        def run(*inputs):
            with torch.no_grad():
                return self.reference.model(*inputs)

        upcast = self.reference.tolerance_dtype is not None
        draw = lambda g: timed_set(self.reference.task.get_inputs, request.seeds, g, device, upcast)  # noqa: E731
        self.timer = Timer(run, self.ring, device, draw, keep=False)  # the worker's samples are what is checked
        self.sol, self.sol_note = _speed_of_light(self.reference, self.ring[0], request.device)
        self.compiled_timer: Timer | None = None
        self.compile_note: str | None = None
        if request.compile_baseline:
            compiled = _compiled.get(_task_key(request))  # compiled by the "compile" op, never here
            if compiled is None:
                self.compile_note = "torch.compile baseline not measured: the reference was not compiled before timing"
            elif compiled.forward is None:
                self.compile_note = f"torch.compile baseline not measured: {compiled.error}"
            else:
                forward = compiled.forward

                def run_compiled(*inputs):
                    with torch.no_grad():
                        return forward(*inputs)

                self.compiled_timer = Timer(run_compiled, self.ring, device, draw, keep=False)

    def release_ring(self) -> None:
        """Let the warm-up ring (and the timers' last samples) go once timing is over."""
        for timer in (self.timer, self.compiled_timer):
            if timer is not None:
                timer.ring, timer.pending, timer.prepared = [], None, []
        self.ring = []

    def side(self, job: msg.WarmupJob | msg.PrepareJob | msg.BlockJob) -> Timer:
        """The timer a warm-up or block job names: the reference's (default) or the compiled one."""
        if job.side == "compiled":
            if self.compiled_timer is None:
                raise KagentError("no compiled reference to time")
            return self.compiled_timer
        return self.timer


def _speed_of_light(reference: Reference, inputs: list, device: str) -> tuple[dict | None, str | None]:
    """The task's speed of light on this device (sol.py), for the parent's verdict, or None and
    why not (a GPU the table does not know, an op FlopCounterMode cannot run)."""
    try:
        work = sol.workload(reference.model, inputs)
        peaks = sol.device_peaks(device, work.bytes_moved)
    except Exception as err:
        return None, f"no speed of light for this task: {one_line(err, 160)}"
    if peaks is None:
        return None, "no speed of light: this GPU is not in sandbox/sol.py's table"
    return sol.speed_of_light(work, peaks).model_dump(mode="json"), None


_current: _Timing | None = None


def _timing(job: msg.RingJob) -> _Timing:
    global _current
    if _current is None or _current.job_id != job.id:
        _current = _Timing(job.id, job.request)
    return _current


def verify(request: EvalRequest, outputs_path: str, timed_blocks: list[list[int]], timing: _Timing | None = None) -> OutputCheck:
    """Recompute the reference on every input set (one at a time: never every set's answer at
    once) and on the ring sets of the sampled timed calls (one per block in `timed_blocks`,
    global call ranges), and compare the saved outputs with it, against the float64 answer where
    the task has one, exactly as the harness judges. The check carries this process's peak
    memory since the evaluation began."""
    peak = timing.peak if timing else PeakMemory()
    check = _verify(request, outputs_path, timed_blocks, timing)
    check.peak_rss_mb = peak.mb()
    return check


def _verify(request: EvalRequest, outputs_path: str, timed_blocks: list[list[int]], timing: _Timing | None) -> OutputCheck:
    reference = timing.reference if timing else build_reference(request, validate=False)
    device, upcast = torch.device(request.device), reference.tolerance_dtype is not None

    def timed_input(g: int) -> list:
        return timed_set(reference.task.get_inputs, request.seeds, g, device, upcast)

    if timing:
        timing.release_ring()
    try:
        saved = SavedOutputs(entries=torch.load(outputs_path, map_location="cpu", weights_only=True))
    except FileNotFoundError:
        return OutputCheck(ok=False, detail="no outputs were saved with the verdict")
    except Exception as err:  # anything a forger could write: a truncated zip, a pickle with code, odd objects
        return OutputCheck(ok=False, detail=f"the saved outputs cannot be read: {one_line(err)}")
    directory = Path(outputs_path).parent

    def load(position: int) -> object:
        try:  # mapped: its pages are read as it is compared and let go with it
            return torch.load(SavedOutputs.entry_path(directory, position), map_location="cpu", weights_only=True, mmap=True)
        except Exception as err:
            raise _Unreadable(f"the saved output of {saved.entries[position]} cannot be read: {one_line(err)}") from None

    try:
        return _compare(saved.entries, load, reference, timed_input, timed_blocks, request.allow_tf32)
    except _Unreadable as err:
        return OutputCheck(ok=False, detail=str(err))
    except Exception as err:  # odd objects a forger could save
        return OutputCheck(ok=False, detail=f"the saved outputs cannot be compared: {one_line(err)}")


class _Unreadable(Exception):
    """A saved output's file is missing or not a plain tensor file."""


def _timed_calls(saved: list[str], timed_blocks: list[list[int]]) -> list[int] | None:
    """The sampled timed calls named in `saved`: exactly one per block, or None."""
    calls = []
    for entry in saved:
        if isinstance(entry, str) and entry.startswith(TIMED_PREFIX) and entry[len(TIMED_PREFIX):].isdigit():
            calls.append(int(entry[len(TIMED_PREFIX):]))
    per_block = [[g for g in calls if first <= g < end] for first, end in timed_blocks]
    return sorted(calls) if all(len(found) == 1 for found in per_block) and len(calls) == len(timed_blocks) else None


def _compare(saved: list[str], load, reference: Reference, timed_input, timed_blocks: list[list[int]],
             allow_tf32: bool) -> OutputCheck:
    """The input sets first (their failures name the set), then the sampled timed calls, each on
    its own input set (`timed_input(g)` draws timed call g's). `load(position)` reads one saved
    output: one is held at a time."""
    names = list(reference.sets)
    position = {entry: k for k, entry in enumerate(saved)}
    if len(position) != len(saved) or not set(names) <= set(position):
        return OutputCheck(ok=False, detail=f"the saved outputs are not one entry per input set ({', '.join(names)})")
    worst = [0.0, 0.0]

    def check(entry: str, expected) -> OutputCheck | None:
        result = expected.judge(load(position[entry]), reference.tolerance_dtype, allow_tf32)
        if not result.ok:
            return OutputCheck(ok=False, input_sets=names, failed_input_set=entry, reason=result.reason, detail=result.detail,
                               max_abs_error=result.max_abs_error, max_rel_error=result.max_rel_error)
        worst[:] = max(worst[0], result.max_abs_error or 0.0), max(worst[1], result.max_rel_error or 0.0)
        return None

    for name in names:  # one input set and its answer at a time: each let go before the next
        expected = reference.expect(reference.sets[name])
        reference.sets.release(first=True)
        failed = check(name, expected)
        del expected
        if failed:
            return failed
    calls = _timed_calls(saved, timed_blocks)
    if calls is None or set(position) != {*names, *(f"{TIMED_PREFIX}{g}" for g in calls)}:
        return OutputCheck(ok=False, input_sets=names, detail="the saved outputs are not one per timing block besides the input sets")
    for g in calls:  # its input let go before the output is read
        expected = reference.expect(timed_input(g))
        failed = check(f"{TIMED_PREFIX}{g}", expected)
        del expected
        if failed:
            return failed
    return OutputCheck(ok=True, input_sets=names, max_abs_error=worst[0], max_rel_error=worst[1])


def _warm_up() -> None:
    """Pay the flop counter's one-time setup (~150 MB of modules and tables on first use,
    measured with torch 2.13) at start: a fixed cost of this long-lived process, not memory an
    evaluation's speed of light holds, so it is not counted in the first evaluation's peak."""
    try:
        sol.workload(torch.nn.Identity(), [torch.ones(1)])
    except Exception:  # the speed of light then says why, per evaluation
        pass


def _send(job_id: str, reply: BaseModel) -> None:
    """One reply line (messages.VerifierReply), with its job's id beside its fields."""
    sys.stdout.write(json.dumps(msg.envelope(job_id, reply)) + "\n")
    sys.stdout.flush()


def _answer(job: msg.VerifierJob) -> BaseModel:
    """The reply to one job (messages.VerifierReply)."""
    global _current
    if isinstance(job, msg.CompileJob):
        if get_backend(job.request.backend).timing_meaningful(job.request.device):
            compiled = compiled_reference(job.request)
        else:  # nothing is timed (the Triton interpreter): do not spend the compilation
            compiled = CompiledReference(None, 0.0, "no timing on this device")
        return msg.Compiled(compiled=msg.CompileResult(ok=compiled.forward is not None, compile_s=compiled.compile_s,
                                                       error=compiled.error))
    if isinstance(job, msg.RingJob):
        timing = _timing(job)
        return msg.Ring(ring=len(timing.ring), batch=batch_calls(timing.ring[0]), sol=timing.sol,
                        sol_note=timing.sol_note, compiled=timing.compiled_timer is not None,
                        compile_note=timing.compile_note)
    if isinstance(job, msg.WarmupJob):
        return msg.VerifierWarmed(warm_ms=_current.side(job).warm_up(job.calls))
    if isinstance(job, msg.PrepareJob):
        return msg.VerifierPrepared(prepared=_current.side(job).prepare(job.calls))
    if isinstance(job, msg.BlockJob):
        return msg.VerifierTimed(times_ms=_current.side(job).block(job.calls))
    timing = _current if _current is not None and _current.job_id == job.id else None
    check = verify(job.request, job.outputs, [list(block) for block in job.timed_blocks], timing)
    _current = None  # the evaluation is over: its model and ring are not kept
    return msg.Checked(check=check)


def main() -> None:
    """The verifier process: reads jobs (messages.VerifierJob) as JSON lines on stdin, answers
    each on stdout, until stdin closes."""
    prctl(PR_SET_DUMPABLE, 0)  # no ptrace, no /proc/PID/mem for other processes of this user
    _warm_up()
    sys.stdout.write(msg.dumps(msg.Ready()) + "\n")
    sys.stdout.flush()
    for line in sys.stdin:
        raw = json.loads(line)
        job_id = str(raw.get("id", "")) if isinstance(raw, dict) else ""
        try:
            reply = _answer(msg.VERIFIER_JOB.validate_python(raw))
        except KagentError as err:
            reply = msg.Failed(**ErrorMessage.of(err).model_dump())
        except Exception as err:  # a job that does not validate included: kagent's own bug
            reply = msg.Failed(**ErrorMessage.of(SandboxError(f"the verifier failed: {one_line(err)}")).model_dump())
        _send(job_id, reply)
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # torch's interpreter teardown takes ~0.5 s of CPU, and nothing is left to save
