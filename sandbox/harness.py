"""One evaluation, inside the worker process: load the task and the candidate, check the
candidate on every input set with the anti-cheat checks, then time it in the blocks the parent
asks for (blocks.py; the reference is timed in the verifier) and check what the timed calls
returned.

Order matters for honesty:
- input sets are drawn from seeds the candidate cannot predict, before its code is imported,
  and the torch seed its code then sees (at import and in its constructor) reveals none of them;
- on every input set the candidate runs *before* the reference, and every uninitialised tensor
  it allocates (torch.empty and kin) is filled with NaNs, so it cannot return stale memory
  holding the reference's answer; it then runs again with such tensors holding the reference's
  answer (a honeypot): right only then means it read stale memory;
- everything the candidate returns is checked for being a plain, freshly allocated tensor that
  aliases nothing it was given, and judged as it was when the forward returned.

A `correct` verdict from here is a claim, not the last word: the outputs it was judged on are
handed to a trusted verifier process (verifier.py), which recomputes the reference on its own.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

import torch

from kagent.sandbox import compare as cmp
from kagent.sandbox import launches, ncu
from kagent.sandbox import guard as guards
from kagent.sandbox.backends import get_backend
from kagent.sandbox.compare import flatten
from kagent.sandbox.errors import CandidateError, CompileError
from kagent.sandbox.models import Artifacts, EvalRequest, Verdict
from kagent.sandbox.task import DISTRIBUTION_SHIFT, Task, build_model, check_reference, init_inputs, input_sets, load_module, load_task
from kagent.sandbox.blocks import TIMED_PREFIX
from kagent.sandbox.timing import Timer, WorkerChannel, draw_ring, serve
from kagent.sandbox.trace import ForwardTrace, traced_call

REJECTED_REASONS = {
    "torch_op_in_forward", "fallback_to_reference", "kernel_not_launched", "output_aliases_input",
    "mutates_input", "cached_output", "stale_memory", "not_a_plain_tensor", "background_work",
    "patched_harness", "introspection", "forbidden_import", "forbidden_call",
}
# torch reports a failed CPU allocation as a RuntimeError, not a MemoryError.
ALLOCATION_FAILED = re.compile(r"DefaultCPUAllocator: (can't allocate|not enough) memory")
# A wrong first result is given this long to change on its own (work left on a thread) before
# it is judged: paid only by failing candidates.
SETTLE_S = 0.1
# Right on the honeypot, wrong on at least this share of the elements when memory held NaNs:
# the output was stale memory (a kernel that only misses a tail is just wrong).
STALE_FRACTION = 0.5


class Outcome(Exception):
    """Ends an evaluation early with a verdict's status, reason and message."""

    def __init__(self, status: str, reason: str, message: str, **fields):
        super().__init__(message)
        self.status, self.reason, self.message, self.fields = status, reason, message, fields


def _reject(reason: str, message: str, **fields) -> Outcome:
    return Outcome("rejected", reason, message, **fields)


def _clone(inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    return [x.clone() for x in inputs]


def _storage_span(t: torch.Tensor) -> tuple[int, int]:
    storage = t.untyped_storage()
    return storage.data_ptr(), storage.data_ptr() + storage.nbytes()


def _overlaps(a: torch.Tensor, b: torch.Tensor) -> bool:
    (a0, a1), (b0, b1) = _storage_span(a), _storage_span(b)
    return a0 < b1 and b0 < a1 and a1 > a0 and b1 > b0


def _module_tensors(model: torch.nn.Module) -> list[torch.Tensor]:
    """Parameters, buffers and any tensor attribute: where a precomputed result would live."""
    found = list(model.parameters()) + list(model.buffers())
    for module in model.modules():
        found += [v for v in vars(module).values() if isinstance(v, torch.Tensor)]
    return found


def _poison(t: torch.Tensor) -> None:
    """Fill an uninitialised tensor the candidate allocated with NaN (or a pattern), so a
    candidate that returns uninitialised memory shows garbage instead of a previous result.
    Done at allocation (trace.traced_call's fill): what a CPU allocator hands back is not
    predictable enough to poison freed memory in advance."""
    t.fill_(float("nan") if t.is_floating_point() or t.is_complex() else (-7 if t.dtype.is_signed else 7))


def _honeypot(expected: list) -> Callable[[torch.Tensor], None]:
    """A fill that makes uninitialised memory hold the right answer, as reused memory that held
    the reference's output would: for a tensor the size and dtype of an expected output."""
    def fill(t: torch.Tensor) -> None:
        for e in expected:
            if (isinstance(e, torch.Tensor) and e.dtype == t.dtype and e.numel() == t.numel()
                    and e.device == t.device and t.is_contiguous()):
                t.view(-1).copy_(e.reshape(-1))
                return
        _poison(t)
    return fill


def _candidate_traceback(err: BaseException) -> str:
    """The traceback without the harness's and torch.nn's frames: what the Coder and the Judge
    need is where the candidate's code failed, not how kagent called it."""
    harness = str(Path(__file__).parent)
    exc = traceback.TracebackException.from_exception(err)
    for link in [exc, exc.__cause__, exc.__context__]:
        if link is not None:
            kept = [f for f in link.stack if not (f.filename.startswith(harness) or f.filename.endswith("torch/nn/modules/module.py"))]
            link.stack = traceback.StackSummary.from_list(kept or list(link.stack))
    return "".join(exc.format())[-4000:]


def _private_seed(seeds: list[int]) -> int:
    """The seed models are built under: fixed by the input seeds but revealing none of them."""
    digest = hashlib.sha256(f"kagent model seed {list(seeds)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass
class Reference:
    """The task's side of an evaluation, built the same way wherever it is built: inside the
    sandbox for the checks, and again in the verifier to check the sandbox."""

    task: Task
    init: list
    model_seed: int
    model: torch.nn.Module
    sets: dict[str, list[torch.Tensor]]
    tolerance_dtype: torch.dtype | None  # overrides the outputs' dtype for tolerances
    notes: list[str]


def build_reference(request: EvalRequest) -> Reference:
    """Load the task, build its Model and draw every input set. Raises TaskError."""
    device = torch.device(request.device)
    torch.backends.cuda.matmul.allow_tf32 = request.allow_tf32
    torch.backends.cudnn.allow_tf32 = request.allow_tf32
    task = load_task(request.task_path)  # TaskError propagates: a user error, not a verdict
    init = init_inputs(task)
    # Not an input seed: the constructor's RNG state would otherwise reproduce seed:0's inputs.
    model_seed = _private_seed(request.seeds)
    model = build_model(task, task.Model, init, model_seed, device)
    sets = input_sets(task, request.seeds, device)
    reference = Reference(task, init, model_seed, model, sets, None, [])
    check_reference(task, model, _clone(next(iter(sets.values()))))
    if not get_backend(request.backend).timing_meaningful(request.device) and request.device == "cpu":
        _upcast_bf16(reference)
    return reference


def _upcast_bf16(reference: Reference) -> None:
    """The Triton interpreter computes bf16 in fp32 after loading: check such a task in
    fp32 (at bf16 tolerance) so an honest kernel is not failed for the interpreter's sake."""
    has_bf16 = any(x.dtype == torch.bfloat16 for xs in reference.sets.values() for x in xs) or any(
        p.dtype == torch.bfloat16 for p in reference.model.parameters())
    if not has_bf16:
        return
    reference.sets = {n: [x.float() if x.dtype == torch.bfloat16 else x for x in xs] for n, xs in reference.sets.items()}
    reference.model.float()
    reference.tolerance_dtype = torch.bfloat16
    reference.notes.append("bf16 task checked in fp32 at bf16 tolerance: the Triton interpreter cannot compute bf16 exactly")


def _cpu_copy(values: list) -> list:
    return [v.detach().to("cpu", copy=True) if isinstance(v, torch.Tensor) else v for v in values]


class Evaluation:
    """One evaluation in the worker. `sign(body)` signs the timing messages sent to the parent
    (with the evaluation's key); the timing channel is opened before any candidate code runs."""

    def __init__(self, request: EvalRequest, sign: Callable[[str], str]):
        self.request = request
        self.sign = sign
        self.device = torch.device(request.device)
        self.backend = get_backend(request.backend)
        self.artifacts = Artifacts()
        self.input_set_names: list[str] = []
        self.guard: guards.Guard | None = None
        # What the candidate returned on each input set (and under timing), as judged: for the
        # verifier. Flattened, on the CPU.
        self.outputs: dict[str, list] = {}

    # -- running candidate code -------------------------------------------------------------

    def _guarded(self, what: str, fn, *args):
        """Run candidate code under the audit hook; map its failures to outcomes."""
        try:
            with self.guard.watching():
                result = fn(*args)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
        except Outcome:
            raise
        except BaseException as err:  # the candidate may raise anything, SystemExit included
            self._check_guard()
            raise self._failure(what, err) from None
        self._check_guard()
        return result

    def _failure(self, what: str, err: BaseException) -> Outcome:
        self.artifacts.traceback = _candidate_traceback(err)
        text = f"{what}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".strip()
        classified = self.backend.classify(err, self.request.device)
        if classified:
            status, reason = classified
            if status == "not_run":
                return self._not_run(text)
            return Outcome(status, reason, text)
        if isinstance(err, CompileError):
            self.artifacts.compile_log = err.log
            return Outcome("compile_error", "compile_failed", f"{what}: {err}")
        if isinstance(err, SyntaxError):
            return Outcome("compile_error", "syntax_error", f"{what}: syntax error at line {err.lineno}: {err.msg}")
        if isinstance(err, (MemoryError, torch.cuda.OutOfMemoryError)) or ALLOCATION_FAILED.search(str(err)):
            return Outcome("runtime_error", "out_of_memory", text)
        if isinstance(err, (SystemExit, KeyboardInterrupt)):
            return Outcome("runtime_error", "exited_early", f"{what}: the candidate tried to exit")
        return Outcome("runtime_error", "exception", text)

    def _not_run(self, why: str) -> Outcome:
        report = self.backend.static_report(self.request.device)
        if report is not None:
            self.artifacts.resources = report.resources
            self.artifacts.compile_log = report.log or None
            if not report.ok:
                return Outcome("compile_error", "compile_failed", report.message)
            why = f"{why}; {report.message}"
        return Outcome("not_run", "no_gpu" if self.backend.name == "cuda" else "interpreter_unsupported", why)

    def _check_guard(self) -> None:
        if self.guard.violations:
            reason, detail = self.guard.violations[0]
            raise _reject(reason, f"the candidate used {detail}")
        changed = guards.integrity_changes(self.integrity, self.integrity_modules)
        if changed:
            raise _reject("patched_harness", f"the candidate replaced {', '.join(changed[:3])}")

    # -- the checks -------------------------------------------------------------------------

    def _inspect_call(self, out, inputs: list[torch.Tensor], trace: ForwardTrace, model) -> None:
        if trace.launch_failures:
            raise _reject("fallback_to_reference", f"a kernel launch failed and the forward still returned: {trace.launch_failures[0]}")
        if trace.compute_ops:
            self.artifacts.torch_ops = trace.compute_ops
            raise _reject("torch_op_in_forward", f"the forward ran PyTorch compute ops: {', '.join(trace.compute_ops[:6])}")
        if not trace.launches:
            raise _reject("kernel_not_launched", "no custom kernel was launched for the test inputs")
        self.artifacts.launches = trace.launches
        owned = None
        for t in flatten(out):
            if not isinstance(t, torch.Tensor):
                continue
            if type(t) is not torch.Tensor or t.device.type != self.device.type:
                raise _reject("not_a_plain_tensor", f"returned a {type(t).__name__} on {t.device}, not a plain tensor")
            try:
                span = _storage_span(t)
            except Exception:
                raise _reject("not_a_plain_tensor", "returned a tensor without real storage") from None
            if t.device.type == "meta" or (t.numel() and span[0] == 0):
                raise _reject("not_a_plain_tensor", "returned a tensor without real storage")
            if any(_overlaps(t, x) for x in inputs):
                raise _reject("output_aliases_input", "the output shares memory with an input")
            if owned is None:  # parameters() and kin may be overridden: candidate code
                owned = self._guarded("listing the model's tensors", _module_tensors, model)
            if any(_overlaps(t, p) for p in owned) or span[0] not in trace.allocated:
                raise _reject("cached_output", "the output was not freshly allocated in this call (cached or precomputed)")

    def _check_set(self, name: str, inputs, reference, candidate, seen_outputs: list) -> cmp.Comparison:
        cand_inputs, pristine = _clone(inputs), _clone(inputs)
        threads_before = threading.active_count()
        out, trace = self._guarded(f"forward on {name}", self._traced, candidate, cand_inputs, _poison)
        self._inspect_call(out, cand_inputs, trace, candidate)
        snapshot = [t.clone() if isinstance(t, torch.Tensor) else t for t in flatten(out)]
        if not cmp.same_values(cand_inputs, pristine):
            raise _reject("mutates_input", f"the forward modified its inputs on {name}")

        with torch.no_grad():
            ref_out = reference(*_clone(inputs))
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        expected = [t.clone() if isinstance(t, torch.Tensor) else t for t in flatten(ref_out)]
        del ref_out
        # honeypot: uninitialised memory now holds the right answer
        again, _ = self._guarded(f"second forward on {name}", self._traced, candidate, _clone(inputs), _honeypot(expected))

        if threading.active_count() > threads_before or not cmp.same_values(flatten(out), snapshot):
            raise _reject("background_work", "the output changed after the forward returned (work left running)")
        # Judge what the forward returned, not what a thread may have written since.
        result = self._compare(snapshot, expected)
        if not result.ok:
            time.sleep(SETTLE_S)
            if not cmp.same_values(flatten(out), snapshot):
                raise _reject("background_work", f"wrong when the forward returned, then changed ({name}): work left running")
            if (result.bad_fraction or 0) >= STALE_FRACTION and self._compare(flatten(again), expected).ok:
                raise _reject("stale_memory", f"wrong on fresh memory but right after the reference ran ({name}): it returns stale memory", failed_input_set=name)
            if any(cmp.same_values(snapshot, previous) for previous in seen_outputs):
                raise _reject("cached_output", f"returned the same values as for an earlier input set ({name})", failed_input_set=name)
            raise self._mismatch(name, result)
        seen_outputs.append(snapshot)
        self.outputs[name] = _cpu_copy(snapshot)
        return result

    def _compare(self, out: list, expected: list) -> cmp.Comparison:
        return cmp.compare(out, expected, self.tolerance_dtype, self.request.allow_tf32)

    def _agrees(self, out, reference, inputs: list) -> bool:
        """Whether `out` is what the reference computes from (a copy of) `inputs`."""
        with torch.no_grad():
            expected = reference(*_clone(inputs))
        return self._compare(flatten(out), flatten(expected)).ok

    @staticmethod
    def _traced(candidate, inputs: list, fill):
        return traced_call(candidate, *inputs, fill=fill)

    def _load_weights(self, reference: torch.nn.Module, candidate: torch.nn.Module) -> None:
        """Parameters named and shaped as the reference's get the reference's values."""
        own = candidate.state_dict()
        candidate.load_state_dict(
            {k: v for k, v in reference.state_dict().items() if k in own and own[k].shape == v.shape},
            strict=False,
        )

    def _mismatch(self, name: str, result: cmp.Comparison) -> Outcome:
        reason = result.reason
        if reason == "mismatch" and name.startswith("extra:") and self.primary_ok:
            reason = "shape_specialized" if self._shapes_differ(name) else "input_specialized"
        elif reason == "mismatch" and name.startswith("dist:") and self.primary_ok:
            reason = "distribution_specialized"
        return Outcome(
            "incorrect", reason, f"wrong result on input set {name}: {result.detail}",
            failed_input_set=name, max_abs_error=result.max_abs_error, max_rel_error=result.max_rel_error,
        )

    def _shapes_differ(self, name: str) -> bool:
        shapes = lambda inputs: [tuple(x.shape) for x in inputs]  # noqa: E731
        return shapes(self.sets[name]) != shapes(next(iter(self.sets.values())))

    # -- the whole evaluation -----------------------------------------------------------------

    def run(self) -> Verdict:
        started = time.perf_counter()
        try:
            fields = self._run()
            status, reason, message = "correct", "ok", fields.pop("message")
        except Outcome as outcome:
            status, reason, message, fields = outcome.status, outcome.reason, outcome.message, outcome.fields
        except Exception:
            # The guard denied something from candidate code the harness called outside a
            # guarded region (an overridden method, a returned object's hook): that, not the
            # resulting harness error, is the verdict.
            if not (self.guard and self.guard.violations):
                raise
            reason, detail = self.guard.violations[0]
            status, message, fields = "rejected", f"the candidate used {detail}", {}
        finally:
            if getattr(self, "channel", None) is not None:
                self.channel.close()
        return Verdict(
            status=status, reason=reason, message=message, backend=self.backend.name,
            device=self.request.device, input_sets=self.input_set_names,
            elapsed_s=round(time.perf_counter() - started, 3), artifacts=self.artifacts, **fields,
        )

    def _run(self) -> dict:
        request, device = self.request, self.device
        setup = build_reference(request)
        task, init, model_seed, reference = setup.task, setup.init, setup.model_seed, setup.model
        self.task = task
        self.sets, self.tolerance_dtype = setup.sets, setup.tolerance_dtype
        self.artifacts.notes += setup.notes
        torch.manual_seed(model_seed)  # at import, torch.initial_seed() would reveal an input seed

        path = Path(request.candidate_path)
        try:
            source = path.read_text()
        except OSError as err:
            raise CandidateError(f"{path}: cannot read candidate: {err.strerror}") from None
        try:
            found = guards.scan_source(source, str(path))
        except SyntaxError as err:
            raise Outcome("compile_error", "syntax_error", f"{path.name}: syntax error at line {err.lineno}: {err.msg}") from None
        if found:
            raise _reject(found[0], f"{path.name} {found[1]}")

        self.artifacts.notes += self.backend.prepare(request.device)
        self.channel = WorkerChannel(self.sign)
        self.guard = guards.Guard(str(path.resolve()), guards.protected_files(task.path))
        self.guard.install()
        traced_call(torch.empty, 1)  # settle torch's lazy rewrapping before the snapshot
        # The torch.nn classes the reference is made of: a candidate patching nn.Linear.forward
        # would change what the reference computes here (its timing comes from the verifier).
        self.integrity_modules = [task.module, task.Model, time, threading,
                                  *{type(m) for m in reference.modules()} - {task.Model}]
        self.integrity = guards.integrity_snapshot(self.integrity_modules)

        module = self._guarded("import", load_module, path.resolve(), "kagent_candidate")
        if not self.backend.runs_on(request.device):
            raise self._not_run(f"no GPU to run the {self.backend.name} kernel on")
        if not hasattr(module, "ModelNew"):
            raise Outcome("compile_error", "missing_model_new", f"{path.name} defines no ModelNew class")
        candidate = self._guarded("constructor", build_model, task, module.ModelNew, init, model_seed, device)
        self._guarded("loading the reference's weights", self._load_weights, reference, candidate)

        seen_outputs: list = []
        worst_abs = worst_rel = 0.0
        self.primary_ok = False
        for name, inputs in self.sets.items():
            self.input_set_names.append(name)
            result = self._check_set(name, inputs, reference, candidate, seen_outputs)
            worst_abs = max(worst_abs, result.max_abs_error or 0.0)
            worst_rel = max(worst_rel, result.max_rel_error or 0.0)
            self.primary_ok = self.primary_ok or name.startswith("seed:")

        timing = self._time(reference, candidate)
        report = self.backend.static_report(request.device) if request.static_analysis else None
        if report:
            self.artifacts.resources = report.resources
        self.artifacts.reference_profile = self._profile_reference(reference)
        if device.type == "cuda" and request.static_analysis:
            self.artifacts.ncu = ncu.profile(request.task_path, request.candidate_path)
        return {"max_abs_error": worst_abs, "max_rel_error": worst_rel, **timing}

    def _check_inputs_followed(self, reference, candidate, inputs: list) -> None:
        """A cache keyed on the inputs' addresses could still serve a ring set that comes back:
        give one set new values in place; the answer must follow."""
        changed = self.sets[DISTRIBUTION_SHIFT[0]]  # same shapes as the first set, other values
        for tensor, values in zip(inputs, changed):
            tensor.copy_(values)
        out = self._guarded("forward after its inputs changed in place", candidate, *inputs)
        if not self._agrees(out, reference, inputs):
            raise _reject("cached_output", "the result did not change when the inputs' values changed in place (cached by address)")

    def _profile_reference(self, reference, top: int = 6) -> str:
        """The ATen ops eager PyTorch runs for the task and their share of its time: tells the
        Judge what the kernel competes against (one GEMM, or a chain of memory-bound ops)."""
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device.type == "cuda" else [])
        inputs = _clone(next(iter(self.sets.values())))
        with torch.no_grad(), profile(activities=activities) as prof:
            reference(*inputs)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
        key = "self_device_time_total" if self.device.type == "cuda" else "self_cpu_time_total"
        events = sorted((e for e in prof.key_averages() if getattr(e, key) > 0), key=lambda e: -getattr(e, key))
        total = sum(getattr(e, key) for e in events) or 1.0
        return "\n".join(f"{e.key}: {getattr(e, key) / 1000:.3f} ms ({100 * getattr(e, key) / total:.0f}%), {e.count} call(s)"
                         for e in events[:top])

    def _time(self, reference, candidate) -> dict:
        """Serve the parent's timing blocks (blocks.py), then check what the timed calls
        returned: the sampled outputs must not have changed since they returned and must be the
        reference's answer on their own inputs. The timing fields come from the parent."""
        request = self.request
        meaningful = self.backend.timing_meaningful(request.device)
        ring = draw_ring(self.task.get_inputs, request.seeds, self.device, self.tolerance_dtype is not None)
        timer = Timer(candidate, ring, self.device)
        launches.reset()
        self.channel.write({"ring": len(ring), "meaningful": meaningful})
        self._guarded("timed forward", serve, timer, self.channel.read, self.channel.write)
        if sum(launches.snapshot()[0].values()) < timer.calls + timer.warm_calls:
            raise _reject("kernel_not_launched", "the kernel was not launched on every timed call")
        for g, (copy, out) in sorted(timer.sampled.items()):
            if not cmp.same_values(out, copy):
                raise _reject("background_work", f"the output of timed call {g} changed after the forward returned (work left running)")
            if not self._agrees(copy, reference, ring[g % len(ring)]):
                raise Outcome("incorrect", "inconsistent_under_timing", f"the result of timed call {g} is wrong")
            self.outputs[f"{TIMED_PREFIX}{g}"] = _cpu_copy(copy)
        self._check_inputs_followed(reference, candidate, ring[0])
        n = len(self.input_set_names)
        if not meaningful:
            note = self.artifacts.notes[0] if self.artifacts.notes else "no meaningful timer"
            return {"message": f"correct on {n} input sets; not timed for performance ({note})"}
        return {"message": f"correct on {n} input sets"}
