"""One evaluation, inside the worker process: load the task and the candidate, check the
candidate on every input set with the anti-cheat checks, then time it in the blocks the parent
asks for (blocks.py; the reference is timed in the verifier) and check what the timed calls
returned.

Order matters for honesty:
- input sets are drawn from seeds the candidate cannot predict, each once before its code is
  imported (a fingerprint kept, only the first set held), and the torch seed its code then sees
  (at import and in its constructor) reveals none of them; a set drawn again to be checked must
  match its fingerprint (else `patched_harness`), and the verifier draws every set on its own;
- on every input set the candidate runs *before* the reference, and every uninitialised tensor
  it allocates (torch.empty and kin) is filled with NaNs, so it cannot return stale memory
  holding the reference's answer; it then runs again with such tensors holding the reference's
  answer (a honeypot): right only then means it read stale memory;
- everything the candidate returns is checked for being a plain, freshly allocated tensor that
  aliases nothing it was given, and judged as it was when the forward returned.

Memory (issue 9: about 3x the task's own inputs and outputs beyond the models'): one input set
is held at a time (the first too is let go once checked, and drawn again when needed), each
judged output goes to disk the moment it is judged (messages.SavedOutputs), one sampled timed
output is held at a time, and the timed outputs are checked one at a time, each against its
own input set drawn again.

A `correct` verdict from here is a claim, not the last word: the outputs it was judged on are
handed to a trusted verifier process (verifier.py), which recomputes the reference on its own.
"""

from __future__ import annotations

import re
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
from kagent.errors import CandidateError, CompileError, TaskTooLarge
from kagent.sandbox.models import Artifacts, EvalRequest, MemoryUse, Verdict
from kagent.sandbox.reference import Expected, PeakMemory, Reference, _clone, build_reference
from kagent.sandbox.task import DISTRIBUTION_SHIFT, SHAPE_VARIANT, InputsChanged, build_model, load_module, nbytes
from kagent.sandbox.blocks import TIMED_PREFIX
from kagent.sandbox.messages import Hello, SavedOutputs
from kagent.sandbox.timing import Timer, WorkerChannel, draw_ring, serve, timed_set
from kagent.sandbox.trace import ForwardTrace, traced_call

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


def _cpu_copy(values: list) -> list:
    """`values` on the CPU for the verifier: tensors already there are not copied again (they
    are the harness's own snapshots, which no candidate code holds)."""
    return [v.detach().cpu() if isinstance(v, torch.Tensor) else v for v in values]


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
        self.setup: Reference | None = None
        # The entries (input set names, `timed:G`) whose outputs, as judged, are on disk for the
        # verifier (SavedOutputs); the zygote saves this list once the verdict is `correct`.
        # The folder is fixed now, before candidate code could change the working directory.
        self.outputs: list[str] = []
        self.workdir = Path.cwd()
        self.unloaded: list[str] = []  # reference tensors that found no place in the candidate
        self.peak = PeakMemory()
        self.task_io_mb: float | None = None

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
            if any(_overlaps(t, x) for x in inputs if isinstance(x, torch.Tensor)):
                raise _reject("output_aliases_input", "the output shares memory with an input")
            if owned is None:  # parameters() and kin may be overridden: candidate code
                owned = self._guarded("listing the model's tensors", _module_tensors, model)
            if any(_overlaps(t, p) for p in owned) or span[0] not in trace.allocated:
                raise _reject("cached_output", "the output was not freshly allocated in this call (cached or precomputed)")

    def _write(self, values: list, path: Path) -> None:
        """Write output leaves to disk (on the CPU): plain tensors and numbers only, so nothing a
        candidate made runs while it is written (pickling calls an object's own methods)."""
        for v in values:
            if not (type(v) is torch.Tensor or v is None or type(v) in (bool, int, float, complex, str)):
                raise _reject("not_a_plain_tensor", f"returned a {type(v).__name__}, not a tensor or a number")
        path.parent.mkdir(exist_ok=True)
        torch.save(_cpu_copy(values), path)

    def _save_output(self, entry: str, values: list) -> None:
        """Write a judged output (flattened leaves) to disk for the verifier; it is not held."""
        self._write(values, SavedOutputs.entry_path(self.workdir, len(self.outputs)))
        self.outputs.append(entry)

    def _saved_output(self, position: int) -> list:
        """A saved output, mapped from its file (pages read as compared, let go with it)."""
        return self._load(SavedOutputs.entry_path(self.workdir, position))

    @staticmethod
    def _load(path: Path) -> list:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)

    def _check_set(self, name: str, inputs, candidate) -> cmp.Comparison:
        """Run the candidate on one input set (with the anti-cheat checks) and judge its output
        against the reference's answer. Raises Outcome for anything but a right answer.
        Held at once, at most: the set, the candidate's copy of it or output, the reference's
        answer, and the float64 run's inputs and answer; what was judged waits on disk."""
        # `inputs` never reaches candidate code (it gets a copy): it is the pristine set the
        # copy is compared with, so no third copy of the inputs is made.
        cand_inputs = _clone(inputs)
        threads_before = threading.active_count()
        out, trace = self._guarded(f"forward on {name}", self._traced, candidate, cand_inputs, _poison)
        self._inspect_call(out, cand_inputs, trace, candidate)
        # Judged as it was when the forward returned: copied now, kept on disk (as the verifier
        # will read it), and read back as compared.
        position = len(self.outputs)
        judged = SavedOutputs.entry_path(self.workdir, position)
        self._write([t.clone() if isinstance(t, torch.Tensor) else t for t in flatten(out)], judged)
        if not cmp.same_values(cand_inputs, inputs):
            raise _reject("mutates_input", f"the forward modified its inputs on {name}")
        del cand_inputs  # fresh tensors for the second call: a cache keyed on them must miss

        answer = self.setup.output(inputs)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        # honeypot: uninitialised memory now holds the right answer
        again, _ = self._guarded(f"second forward on {name}", self._traced, candidate, _clone(inputs), _honeypot(answer))
        del answer
        honeypot = judged.with_name("honeypot.pt")  # read back only if the first answer is wrong
        self._write(flatten(again), honeypot)
        del again

        if threading.active_count() > threads_before or not cmp.same_values(flatten(out), self._load(judged)):
            raise _reject("background_work", "the output changed after the forward returned (work left running)")
        expected = self.setup.expect(inputs)  # the float64 run while neither the honeypot's output nor an answer is held
        result = self._compare(self._load(judged), expected)
        if not result.ok:
            time.sleep(SETTLE_S)
            if not cmp.same_values(flatten(out), self._load(judged)):
                raise _reject("background_work", f"wrong when the forward returned, then changed ({name}): work left running")
            if (result.bad_fraction or 0) >= STALE_FRACTION and self._compare(self._load(honeypot), expected).ok:
                raise _reject("stale_memory", f"wrong on fresh memory but right after the reference ran ({name}): it returns stale memory", failed_input_set=name)
            if any(cmp.same_values(self._load(judged), self._saved_output(k)) for k in range(position)):
                raise _reject("cached_output", f"returned the same values as for an earlier input set ({name})", failed_input_set=name)
            raise self._mismatch(name, result)
        if self.task_io_mb is None:
            self.task_io_mb = round((nbytes(inputs) + nbytes(flatten(out))) / 2**20, 1)
        del out, expected
        self.outputs.append(name)
        return result

    def _compare(self, out: list, expected: Expected) -> cmp.Comparison:
        return expected.judge(out, self.tolerance_dtype, self.request.allow_tf32)

    @staticmethod
    def _traced(candidate, inputs: list, fill):
        return traced_call(candidate, *inputs, fill=fill)

    def _load_weights(self, reference: torch.nn.Module, candidate: torch.nn.Module) -> None:
        """Every parameter and buffer of the reference (non-persistent buffers included: they
        are not in its state_dict) goes into the candidate's tensor of the same name and shape.
        Those with no such tensor are named in a note (self.unloaded)."""
        # remove_duplicate=False: a tied weight is listed under each of its names, so ModelNew's
        # untied copies receive it too.
        own = dict(candidate.named_parameters(remove_duplicate=False))
        own.update(candidate.named_buffers(remove_duplicate=False))
        self.unloaded = []
        with torch.no_grad():
            for key, value in [*reference.named_parameters(remove_duplicate=False),
                               *reference.named_buffers(remove_duplicate=False)]:
                target = own.get(key)
                if isinstance(target, torch.Tensor) and target.shape == value.shape:
                    target.copy_(value)
                else:
                    self.unloaded.append(key if target is None else f"{key} (shape {tuple(value.shape)}, ModelNew's {tuple(target.shape)})")
        if self.unloaded:
            self.artifacts.notes.append("reference tensors not loaded into ModelNew (no parameter or buffer of that "
                                        f"name and shape): {', '.join(self.unloaded[:8])}")

    def _mismatch(self, name: str, result: cmp.Comparison) -> Outcome:
        reason = result.reason
        if reason == "mismatch" and (name.startswith("extra:") or name == SHAPE_VARIANT) and self.primary_ok:
            reason = "shape_specialized" if self._shapes_differ(name) else "input_specialized"
        elif reason == "mismatch" and name.startswith("dist:") and self.primary_ok:
            reason = "distribution_specialized"
        unloaded = f" (reference tensors not loaded into ModelNew: {', '.join(self.unloaded[:4])})" if self.unloaded else ""
        return Outcome(
            "incorrect", reason, f"wrong result on input set {name}: {result.detail}{unloaded}",
            failed_input_set=name, max_abs_error=result.max_abs_error, max_rel_error=result.max_rel_error,
        )

    def _shapes_differ(self, name: str) -> bool:
        shapes = lambda inputs: [tuple(x.shape) if isinstance(x, torch.Tensor) else x for x in inputs]  # noqa: E731
        return shapes(self.sets[name]) != shapes(next(iter(self.sets.values())))

    # -- the whole evaluation -----------------------------------------------------------------

    def run(self) -> Verdict:
        """Evaluate the candidate (load, check correctness on every input set, time both sides) and
        return its verdict; failures become verdicts, never exceptions."""
        started = time.perf_counter()
        try:
            fields = self._run()
            status, reason, message = "correct", "ok", fields.pop("message")
        except Outcome as outcome:
            status, reason, message, fields = outcome.status, outcome.reason, outcome.message, outcome.fields
        except InputsChanged as err:  # drawn before the candidate's import, different after it
            status, reason, message, fields = "rejected", "patched_harness", f"{err} after the candidate was imported", {}
        except Exception as err:
            if isinstance(err, MemoryError) or ALLOCATION_FAILED.search(str(err)):
                raise TaskTooLarge(f"{self.request.task_path}: the harness ran out of memory holding the task's inputs "
                                   "and outputs: raise --memory-limit or make the task smaller") from None
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
        if getattr(self, "setup", None) is not None:  # notes made while judging (no float64 answer)
            self.artifacts.notes += [n for n in self.setup.notes if n not in self.artifacts.notes]
        return Verdict(
            status=status, reason=reason, message=message, backend=self.backend.name,
            device=self.request.device, input_sets=self.input_set_names,
            elapsed_s=round(time.perf_counter() - started, 3), artifacts=self.artifacts,
            memory=MemoryUse(worker_peak_mb=self.peak.mb(), task_io_mb=self.task_io_mb), **fields,
        )

    def _run(self) -> dict:
        request, device = self.request, self.device
        setup = build_reference(request)
        task, init, model_seed, reference = setup.task, setup.init, setup.model_seed, setup.model
        self.task = task
        self.setup, self.sets, self.tolerance_dtype = setup, setup.sets, setup.tolerance_dtype
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
        self.guard = guards.Guard(str(path.resolve()), guards.protected_files(task.path), self.backend.violations)
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

        worst_abs = worst_rel = 0.0
        self.primary_ok = False
        for name in self.sets:  # one set held at a time, the first included: each let go before the next is drawn
            self.input_set_names.append(name)
            result = self._check_set(name, self.sets[name], candidate)
            self.sets.release(first=True)
            worst_abs = max(worst_abs, result.max_abs_error or 0.0)
            worst_rel = max(worst_rel, result.max_rel_error or 0.0)
            self.primary_ok = self.primary_ok or name.startswith("seed:")

        timing = self._time(candidate)
        report = self.backend.static_report(request.device) if request.static_analysis else None
        if report:
            self.artifacts.resources = report.resources
        self.artifacts.reference_profile = self._profile_reference(reference)
        if device.type == "cuda" and request.static_analysis:
            self.artifacts.ncu = ncu.profile(request.task_path, request.candidate_path)
        return {"max_abs_error": worst_abs, "max_rel_error": worst_rel, **timing}

    def _check_timed(self) -> None:
        """Each sampled timed call must have returned the reference's answer on its own input
        set (drawn again from its seed): read back from disk and checked one at a time."""
        request, upcast = self.request, self.tolerance_dtype is not None
        for position, entry in enumerate(self.outputs):
            if not entry.startswith(TIMED_PREFIX):
                continue
            g = int(entry[len(TIMED_PREFIX):])
            expected = self.setup.expect(timed_set(self.task.get_inputs, request.seeds, g, self.device, upcast))
            if not self._compare(self._saved_output(position), expected).ok:
                raise Outcome("incorrect", "inconsistent_under_timing", f"the result of timed call {g} is wrong")
            del expected

    def _check_inputs_followed(self, candidate, inputs: list) -> None:
        """A cache keyed on the inputs' addresses could serve a set that comes back with new
        values in place (the timed calls' sets are new each time): give the warm-up set new
        values in place; the answer must follow."""
        changed = self.sets[DISTRIBUTION_SHIFT[0]]  # same shapes as the first set, other values
        for i, tensor in enumerate(inputs):  # no loop variable left holding one of its tensors
            if isinstance(tensor, torch.Tensor):  # scalars are passed as they are
                tensor.copy_(changed[i])
        del changed
        self.sets.release(first=True)  # not held while the reference runs on the changed set
        # Copied before work left running lands; the output itself let go before the reference runs.
        returned = _clone(flatten(self._guarded("forward after its inputs changed in place", candidate, *inputs)))
        if not self._compare(returned, self.setup.expect(inputs)).ok:
            raise _reject("cached_output", "the result did not change when the inputs' values changed in place (cached by address)")

    def _profile_reference(self, reference, top: int = 6) -> str:
        """The ATen ops eager PyTorch runs for the task and their share of its time: tells the
        Judge what the kernel competes against (one GEMM, or a chain of memory-bound ops)."""
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device.type == "cuda" else [])
        inputs = _clone(next(iter(self.sets.values())))
        self.sets.release(first=True)
        with torch.no_grad(), profile(activities=activities) as prof:
            reference(*inputs)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
        del inputs
        key = "self_device_time_total" if self.device.type == "cuda" else "self_cpu_time_total"
        events = sorted((e for e in prof.key_averages() if getattr(e, key) > 0), key=lambda e: -getattr(e, key))
        total = sum(getattr(e, key) for e in events) or 1.0
        return "\n".join(f"{e.key}: {getattr(e, key) / 1000:.3f} ms ({100 * getattr(e, key) / total:.0f}%), {e.count} call(s)"
                         for e in events[:top])

    def _time(self, candidate) -> dict:
        """Serve the parent's timing blocks (blocks.py), then check what the timed calls
        returned: the sampled outputs must not have changed since they returned and must be the
        reference's answer on their own inputs. The timing fields come from the parent."""
        request = self.request
        meaningful = self.backend.timing_meaningful(request.device)
        upcast = self.tolerance_dtype is not None
        ring = draw_ring(self.task.get_inputs, request.seeds, self.device, upcast)
        timer = Timer(candidate, ring, self.device,
                      draw=lambda g: timed_set(self.task.get_inputs, request.seeds, g, self.device, upcast),
                      store=lambda g, copy: self._save_output(f"{TIMED_PREFIX}{g}", copy))
        launches.reset()
        self.channel.write(Hello(meaningful=meaningful))
        self._guarded("timed forward", serve, timer, self.channel.read, self.channel.write)
        if sum(launches.snapshot()[0].values()) < timer.calls + timer.warm_calls:
            raise _reject("kernel_not_launched", "the kernel was not launched on every timed call")
        timer.settle()
        if timer.changed:
            raise _reject("background_work", f"the output of timed call {timer.changed[0]} changed after the forward "
                                             "returned (work left running)")
        # The first warm-up set kept for the in-place check (it needs the very tensors the
        # candidate was called on), the rest let go first; then one timed set at a time.
        del ring[1:], timer
        self._check_inputs_followed(candidate, ring[0])
        ring.clear()
        self._check_timed()
        n = len(self.input_set_names)
        if not meaningful:
            note = self.artifacts.notes[0] if self.artifacts.notes else "no meaningful timer"
            return {"message": f"correct on {n} input sets; not timed for performance ({note})"}
        return {"message": f"correct on {n} input sets"}
