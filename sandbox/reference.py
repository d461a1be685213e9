"""The task's side of an evaluation, built the same way wherever it is built: inside the worker
for the checks and in the verifier to check the worker (`build_reference`), with the float64 run
correctness is judged against (`Reference.expect`), and the memory accounting that decides
whether a task fits (`PeakMemory`, `_check_fits`). Trusted code only: no candidate is loaded here."""

from __future__ import annotations

import copy
import hashlib
import resource
from dataclasses import dataclass
import torch

from kagent.errors import TaskTooLarge, one_line
from kagent.sandbox.backends import get_backend
from kagent.sandbox.compare import Comparison, compare, flatten
from kagent.sandbox.models import EvalRequest
from kagent.sandbox.task import InputSets, Task, build_model, check_reference, init_inputs, input_sets, load_task, nbytes


def _clone(inputs: list) -> list:
    return [x.clone() if isinstance(x, torch.Tensor) else x for x in inputs]


def _private_seed(seeds: list[int]) -> int:
    """The seed models are built under: fixed by the input seeds but revealing none of them."""
    digest = hashlib.sha256(f"kagent model seed {list(seeds)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


LOW_PRECISION = (torch.float16, torch.bfloat16, torch.float32)  # judged against a float64 run
# Copies of the inputs and outputs an evaluation holds at its peak beyond the models' (address
# space, which outlasts resident memory): the set being checked (the only one held), the
# candidate's copy (or the reference's), and the float64 copy of an fp32 set (counted as two);
# the candidate's output, its snapshot, the reference's and the honeypot run's (plus 2 for a
# float64 answer to an fp32 output). Judged outputs go to disk (messages.SavedOutputs).
HARNESS_INPUT_COPIES, HARNESS_OUTPUT_COPIES = 4, 4


# The answer's sensitivity to its inputs (compare.py, SENSITIVITY_RTOL): the float64 model run
# on inputs each scaled by (1 + SENSITIVITY_STEP x a random sign), SENSITIVITY_DRAWS times. The
# step is small enough that no comparison or rounding in the model flips (a step function's
# output moves only where an input sits within 1e-9 of its threshold), and 1e7 times float64's
# rounding, which it therefore measures nothing of.
SENSITIVITY_STEP = 2.0 ** -30
# One draw's spread is wide (|N(0, s^2)|): three make a near-zero estimate of one element ~1e-4
# rare; an output of SENSITIVITY_ELEMENTS or more has its median over elements for that.
SENSITIVITY_DRAWS, SENSITIVITY_ELEMENTS = 3, 64
HALF_NORMAL_MEDIAN = 0.6745  # median of |N(0, 1)|: one draw's median over elements, made ~s
SENSITIVITY_SAMPLE = 1 << 16  # output elements the median is taken over (strided)


@dataclass
class Expected:
    """The reference's answer to one input set: its output leaves in the task's dtype, their
    float64 counterparts and each one's typical sensitivity to its inputs (None where there is
    none: see Reference.expect)."""

    ref: list
    gold: list | None
    sensitivity: list | None = None

    def judge(self, out, tolerance_dtype: torch.dtype | None, allow_tf32: bool) -> Comparison:
        """`out` (flattened output leaves) against this answer: compare.compare with its
        float64 counterpart and sensitivity."""
        return compare(out, self.ref, tolerance_dtype, allow_tf32, gold=self.gold, sensitivity=self.sensitivity)


@dataclass
class Reference:
    """The task's side of an evaluation, built the same way wherever it is built: inside the
    sandbox for the checks, and again in the verifier to check the sandbox."""

    task: Task
    init: list
    model_seed: int
    model: torch.nn.Module
    sets: InputSets
    tolerance_dtype: torch.dtype | None  # overrides the outputs' dtype for tolerances
    notes: list[str]
    gold_model: torch.nn.Module | None = None  # built on first use
    gold_failed: bool = False
    # Whether the reference returns fp16/bf16/fp32 (so has a float64 answer); None until it ran.
    low_precision: bool | None = None

    def expect(self, inputs: list) -> Expected:
        """Run the reference on a copy of `inputs`, and a float64 copy of it on a float64 copy
        of them where it computes in fp16/bf16/fp32. The float64 run is dropped (with a note)
        where the model cannot run in float64 or returns something else. Once the output dtypes
        are known the float64 run goes first: the float64 inputs and answer are then never held
        beside the reference's own answer (the peak of an evaluation's memory)."""
        sensitivity, gold = self._golden(inputs) if self.low_precision and not self.gold_failed else (None, None)
        ref = self.output(inputs)
        if self.low_precision is None:
            self.low_precision = any(isinstance(r, torch.Tensor) and r.dtype in LOW_PRECISION for r in ref)
            sensitivity, gold = self._golden(inputs) if self.low_precision and not self.gold_failed else (None, None)
        gold = self._matched(gold, ref)
        return Expected(ref, gold, sensitivity if gold is not None else None)

    def output(self, inputs: list) -> list:
        """The reference's own answer (flattened) on a copy of `inputs`."""
        with torch.no_grad():
            return flatten(self.model(*_clone(inputs)))

    def _golden(self, inputs: list) -> tuple[list | None, list | None]:
        """(sensitivity, gold): each output leaf's typical sensitivity (see `_sensitivity`) and
        the float64 answer; (None, None) with a note where the model does not run in float64."""
        try:
            if self.gold_model is None:
                self.gold_model = copy.deepcopy(self.model).double()
            # The perturbed runs first, each let go but for a sample: the float64 answer is then
            # the only float64 output ever held whole.
            perturbed = [self._run_wide(inputs, 1)]
            if any(leaf is not None and leaf.numel() < SENSITIVITY_ELEMENTS for leaf in perturbed[0]):
                perturbed += [self._run_wide(inputs, draw) for draw in range(2, SENSITIVITY_DRAWS + 1)]
            gold = self._run_wide(inputs, 0)
        except Exception as err:
            self.gold_failed, self.gold_model = True, None
            self.notes.append(f"judged against the reference in its own dtype: it does not run in float64 ({one_line(err, 120)})")
            return None, None
        return _sensitivity(gold, perturbed), gold

    def _run_wide(self, inputs: list, draw: int) -> list:
        """The float64 model on float64 copies of `inputs`, scaled by (1 + SENSITIVITY_STEP x
        a random sign) for draw > 0 (signs from a generator seeded by the private model seed
        and the draw: the same in the worker and the verifier); draw 0 is the answer itself,
        the others return only a strided sample of each output leaf."""
        # A copy even of a float64 input (`.double()` would return the caller's tensor itself),
        # contiguous so it can be scaled in place.
        wide = [x.to(torch.float64, memory_format=torch.contiguous_format, copy=bool(draw))
                if isinstance(x, torch.Tensor) and x.is_floating_point() else x for x in inputs]
        if draw:
            signs = torch.Generator().manual_seed(self.model_seed + draw)
            for x in wide:
                if isinstance(x, torch.Tensor) and x.is_floating_point():
                    for part in x.view(-1).split(1 << 20):  # chunks: no temporary of a whole input
                        step = torch.randint(0, 2, part.shape, generator=signs, dtype=torch.float64, device="cpu")
                        part.mul_(step.mul_(2 * SENSITIVITY_STEP).add_(1 - SENSITIVITY_STEP).to(part.device))
        with torch.no_grad():
            out = flatten(self.gold_model(*wide))
        del wide
        return out if not draw else [_sample(leaf) for leaf in out]

    def _matched(self, gold: list | None, ref: list) -> list | None:
        """The float64 answer per output leaf (None for leaves not in fp16/bf16/fp32), or None
        (with a note) where it does not match the reference's structure."""
        if gold is None:
            return None
        if len(gold) != len(ref) or any(isinstance(r, torch.Tensor) and not (isinstance(g, torch.Tensor) and g.shape == r.shape)
                                        for r, g in zip(ref, gold)):
            self.gold_failed, self.gold_model = True, None
            self.notes.append("judged against the reference in its own dtype: its float64 run returns other shapes")
            return None
        return [g if isinstance(r, torch.Tensor) and r.dtype in LOW_PRECISION else None for r, g in zip(ref, gold)]


def _sample(leaf):
    """A strided sample of at most SENSITIVITY_SAMPLE elements of a tensor leaf, on the CPU."""
    if not isinstance(leaf, torch.Tensor) or not leaf.is_floating_point():
        return None
    flat = leaf.detach().reshape(-1)
    return flat[:: max(1, flat.numel() // SENSITIVITY_SAMPLE)][:SENSITIVITY_SAMPLE].cpu().clone()


def _sensitivity(gold: list, perturbed: list[list]) -> list:
    """Per output leaf, how far the answer moves per unit of relative change in the inputs: the
    median over sampled elements of rms over draws |y(x (1 + h s)) - y(x)| / h (h =
    SENSITIVITY_STEP, s random signs; with one draw, over HALF_NORMAL_MEDIAN). For a sum of
    terms a_i this is ~||a||_2, whatever the sum comes to: the scale of a summation's rounding error (Higham, "Accuracy and Stability of
    Numerical Algorithms", 2nd ed., ch. 4: the error of a computed sum is bounded in the
    terms' magnitudes, not the result's), where a cancelling sum's result is near zero. None
    for leaves that are not floating-point tensors."""
    out = []
    for k, leaf in enumerate(gold):
        base = _sample(leaf)
        samples = [p[k] if k < len(p) else None for p in perturbed]
        if base is None or any(s is None or s.shape != base.shape for s in samples) or base.numel() == 0:
            out.append(None)
            continue
        moved = torch.stack([(s - base).square() for s in samples]).mean(0).sqrt() / SENSITIVITY_STEP
        moved = moved[moved.isfinite()]
        scale = 1.0 if len(samples) > 1 else 1 / HALF_NORMAL_MEDIAN
        out.append(moved.median().item() * scale if moved.numel() else None)
    return out


def _memory_limit() -> int | None:
    """This process's address-space limit in bytes (the sandbox sets it on a CPU), or None."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else soft


class PeakMemory:
    """This process's peak resident memory from now on, above its resident memory now, in MB
    (Linux: clear_refs "5" resets VmHWM, proc(5)). Where the reset is refused (a confined
    worker's read-only /proc), the peak is the process's since it was forked: the fork server's
    own, held steady since its warm-up, is no higher than its resident memory at the fork. None
    where /proc cannot say."""

    def __init__(self):
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
        self.base = _status_kb("VmRSS")

    def mb(self) -> float | None:
        peak = _status_kb("VmHWM") if self.base is not None else None
        return None if peak is None else round(max(0, peak - self.base) / 1024, 1)


def _status_kb(field: str) -> int | None:
    """A kB field of /proc/self/status (VmRSS, VmHWM, VmSize), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _address_space() -> int:
    """Bytes of address space this process maps now (what RLIMIT_AS counts)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _check_fits(task: Task, inputs: list, output) -> None:
    """A task whose evaluation cannot fit under the memory limit is a task error now, before
    a candidate is built: not an allocation failure blamed on the candidate later. `inputs` and
    `output` are the first set's. Raises TaskTooLarge."""
    limit = _memory_limit()
    if limit is None:
        return
    size_in, size_out = nbytes(inputs), nbytes(flatten(output))
    widen = 2 if any(isinstance(t, torch.Tensor) and t.dtype in LOW_PRECISION for t in flatten(output)) else 0
    need = _address_space() + HARNESS_INPUT_COPIES * size_in + (HARNESS_OUTPUT_COPIES + widen) * size_out
    if need > limit:
        raise TaskTooLarge(f"{task.path}: the evaluation needs about {need / 2**20:.0f} MB (inputs {size_in / 2**20:.0f} MB, "
                           f"output {size_out / 2**20:.0f} MB, and the harness's copies of them), more than the memory "
                           f"limit of {limit / 2**20:.0f} MB: raise --memory-limit or make the task smaller")


def build_reference(request: EvalRequest, validate: bool = True) -> Reference:
    """Load the task, build its Model, draw its input sets and (with `validate`) check that the
    reference can judge a candidate (task.check_reference) and fits in memory. Raises TaskError."""
    device = torch.device(request.device)
    torch.backends.cuda.matmul.allow_tf32 = request.allow_tf32
    torch.backends.cudnn.allow_tf32 = request.allow_tf32
    task = load_task(request.task_path, request.scaled_sizes, request.variant_sizes)  # TaskError propagates: a user error, not a verdict
    init = init_inputs(task)
    # Not an input seed: the constructor's RNG state would otherwise reproduce seed:0's inputs.
    model_seed = _private_seed(request.seeds)
    model = build_model(task, task.Model, init, model_seed, device)
    sets = input_sets(task, request.seeds, device)
    reference = Reference(task, init, model_seed, model, sets, None, [])
    if validate:
        def first_run(output) -> None:
            reference.low_precision = any(isinstance(t, torch.Tensor) and t.dtype in LOW_PRECISION for t in flatten(output))
            _check_fits(task, sets.first, output)

        check_reference(task, model, sets, first_run=first_run)
    if not get_backend(request.backend).timing_meaningful(request.device) and request.device == "cpu":
        _upcast_bf16(reference)
    return reference


def _upcast_bf16(reference: Reference) -> None:
    """The Triton interpreter computes bf16 in fp32 after loading: check such a task in
    fp32 (at bf16 tolerance) so an honest kernel is not failed for the interpreter's sake."""
    first = reference.sets.first
    has_bf16 = any(isinstance(x, torch.Tensor) and x.dtype == torch.bfloat16 for x in first) or any(
        p.dtype == torch.bfloat16 for p in reference.model.parameters())
    if not has_bf16:
        return
    reference.sets.cast = lambda xs: [x.float() if isinstance(x, torch.Tensor) and x.dtype == torch.bfloat16 else x for x in xs]
    reference.model.float()
    reference.tolerance_dtype = torch.bfloat16
    reference.notes.append("bf16 task checked in fp32 at bf16 tolerance: the Triton interpreter cannot compute bf16 exactly")
