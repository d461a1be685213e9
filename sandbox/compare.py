"""Compare a candidate's output with the reference's, element by element.

An element passes when |got - want| <= atol + rtol * (|want| + typical), the rule of
`torch.testing.assert_close` with its per-dtype defaults (torch.testing docs, "assert_close":
fp16 rtol 1e-3, bf16 1.6e-2, fp64 1e-7; atol 1e-5, 1e-7 for fp64; fp32 rtol 1e-5, see
TOLERANCE), where `typical` is the output's median magnitude: a sum or dot product whose
result cancels to near zero carries the rounding error of its terms, not of its result. Each
element has its own bound: a few huge elements move neither the median nor any other element's
bound, and an output smaller than atol is still checked relative to the output's size: its
error's norm must stay within NORM_RTOL of its norm (an all-zero answer for outputs of 1e-6 is
within atol everywhere, and 100% off).

`want` is the task's answer computed in float64 (the *golden* reference) where the task
computes in fp16/bf16/fp32, so a kernel more accurate than the reference is not failed for it.
The reference in its own dtype says how exact an answer can be expected: where it is itself far
from the golden result (cancellation, long reductions), the bound grows with its error, so a
kernel as accurate as the reference passes and one much worse does not (the fp64-golden check
of torchtitan PR 4348 and FlashAttention's tests: error vs golden <= k x the reference's own).

A long reduction's rounding error scales with its terms, not its result: a row of 100003 values
whose sum cancels to ~18 carries an honest fp32 kernel's error of ~5e-4, while torch's cascade
sum (the reference) is nearly exact, so neither `typical` nor the reference's own error bounds
it. The bound therefore also grows by SENSITIVITY_RTOL x the answer's typical sensitivity to its
inputs (reference.py: how far the float64 answer moves when every input moves by a relative
step of random sign; ~||terms||_2 for a sum), where a float64 answer exists: accumulation at
fp32's precision whatever the output dtype (fp16/bf16 kernels accumulate in fp32, as torch and
cuBLAS do), while inputs rounded to bf16 or sums accumulated in fp16 stay far outside it.

NaN and infinity positions must match the reference's exactly. Work is done in float64 chunks
of CHUNK elements: the comparison never holds a float64 copy of a whole output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

TOLERANCE = {  # dtype: (atol, rtol), torch.testing.assert_close's defaults
    torch.float64: (1e-7, 1e-7),
    torch.float32: (1e-5, 1e-5),  # assert_close: 1.3e-6; see below
    torch.float16: (1e-5, 1e-3),
    torch.bfloat16: (1e-5, 1.6e-2),
}
# fp32's rtol is looser than assert_close's 1.3e-6: a kernel that sums a long row serially is
# as honest as torch's pairwise sum and ~sqrt(n) x less exact (tests/candidates/03_sum_dim);
# lowered precision (bf16 ~4e-3, TF32 ~5e-4 per rounding) stays 50x and more outside it.
TF32_TOLERANCE = (1e-5, 5e-3)  # fp32 tasks evaluated with TF32 explicitly allowed (10-bit mantissa)
# A failure whose every error is within this share of the element's magnitude or the output's
# typical one (its median: a dot product's rounding error scales with its terms, not with its
# possibly cancelled result) is an fp32 result computed in lower precision (bf16 keeps 8 bits), not a wrong one.
# Only names the failure: the bound is the element-wise one above.
LOWERED_PRECISION_RTOL = 2e-2
# How much worse than the reference an answer may be, in the reference's own error: a kernel
# with a different but equally good summation order lands within 2x of it; 4x leaves margin.
REFERENCE_ERROR_FACTOR = 4.0
# The reference's typical error, for the whole output: this quantile of its error in units of
# the dtype bound (a quantile, so one ill-conditioned element widens nothing but itself).
REFERENCE_ERROR_QUANTILE = 0.99
# The largest relative error of a whole output, ||got - want|| / ||want|| over its finite
# elements: honest kernels are near rtol; this catches answers wrong by more than atol allows
# nowhere but in sum (all-zero or part-zero outputs smaller than atol).
NORM_RTOL = 0.05
# Accumulation error allowed, in units of the answer's sensitivity to its inputs (see above):
# fp32's rtol, x4 for the spread of a three-draw estimate and a kernel's own summation order.
SENSITIVITY_RTOL = 4e-5
SAMPLE = 1 << 20  # elements the quantile is estimated on
CHUNK = 1 << 20  # elements compared at a time


@dataclass
class WorstElement:
    """The element furthest outside its bound: output number, index in that output's shape."""

    output: int
    index: tuple[int, ...]
    got: float
    want: float
    allowed: float  # the bound its error was held to

    def describe(self, outputs: int) -> str:
        """The element as one line for a verdict message (`outputs`: how many outputs the model has)."""
        where = f"output {self.output}" if outputs > 1 else "element"
        return f"worst {where} {list(self.index)}: got {self.got:.6g}, want {self.want:.6g} (allowed error {self.allowed:.3g})"


@dataclass
class Comparison:
    """The judgement of one output against the reference. Errors are against `want` (the
    golden float64 answer where there is one): max_rel_error is max |got - want| / |want| over
    elements whose want is finite and non-zero."""

    ok: bool
    reason: str = "ok"  # mismatch, precision_loss, overflow, nan_output, wrong_shape, wrong_dtype, wrong_structure
    detail: str = ""
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    bad_fraction: float | None = None  # share of the failing output's elements out of tolerance
    worst: WorstElement | None = None


def flatten(value) -> list:
    """The leaves of nested tuples/lists, in order (a single value is a one-leaf list)."""
    if isinstance(value, (tuple, list)):
        return [leaf for item in value for leaf in flatten(item)]
    return [value]


def tensors(value) -> list[torch.Tensor]:
    """The tensors among the leaves of nested tuples and lists."""
    return [t for t in flatten(value) if isinstance(t, torch.Tensor)]


def tolerance(dtype: torch.dtype, allow_tf32: bool = False) -> tuple[float, float]:
    """(atol, rtol) for outputs of `dtype`."""
    if allow_tf32 and dtype == torch.float32:
        return TF32_TOLERANCE
    return TOLERANCE.get(dtype, TOLERANCE[torch.float32])


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.detach().reshape(-1)


def _reference_widening(ref: torch.Tensor, gold: torch.Tensor, atol: float, rtol: float) -> float:
    """How many dtype bounds the reference itself is typically off the golden answer (>= 1).
    `atol` here includes the rtol x typical term."""
    r, g = _flat(ref), _flat(gold)
    step = max(1, r.numel() // SAMPLE)
    r, g = r[::step].cpu().double(), g[::step].cpu().double()
    finite = r.isfinite() & g.isfinite()
    if not finite.any():
        return 1.0
    ratio = ((r - g).abs() / (atol + rtol * g.abs()))[finite]
    k = max(1, int(REFERENCE_ERROR_QUANTILE * ratio.numel()))
    return max(1.0, REFERENCE_ERROR_FACTOR * ratio.kthvalue(k).values.item())


class _Tally:
    """Running totals over the chunks of one output."""

    def __init__(self):
        self.bad = 0
        self.max_abs = self.max_rel = 0.0
        self.worst_excess, self.worst_at = -1.0, None
        self.lowered = True  # every bad element within LOWERED_PRECISION_RTOL
        self.overflow = self.nan = 0  # bad elements that are inf / NaN where the answer is not
        # Sums of squares over finite elements, for NORM_RTOL: the output's error, the answer,
        # and the reference's own error against the golden answer.
        self.err_sq = self.want_sq = self.ref_err_sq = 0.0
        self.finite = 0  # elements in those sums
        self.accumulation = 0.0  # the absolute error allowed every element for summation order


def _typical(ref: torch.Tensor) -> float:
    """Median magnitude of the finite values of a strided sample of `ref` (a median: a few huge
    elements do not make every other error look small)."""
    r = _flat(ref)
    r = r[:: max(1, r.numel() // SAMPLE)].cpu().double().abs()
    r = r[r.isfinite()]
    return r.median().item() if r.numel() else 0.0


def _check_chunk(tally: _Tally, start: int, o, r, g, atol: float, rtol: float, widen: float, typical: float) -> None:
    """Add one chunk of flat output `o`, reference `r` and golden `g` (or None) to `tally`."""
    o, r = o.cpu().double(), r.cpu().double()
    want = r if g is None else g.cpu().double()
    diff = (o - want).abs_()
    floor = (atol + rtol * typical) * widen + tally.accumulation
    allowed = want.abs().mul_(rtol * widen).add_(floor)
    if g is not None:
        allowed.add_((r - want).abs_(), alpha=REFERENCE_ERROR_FACTOR)
    # A finite sum means no NaN or infinity anywhere: the common case, in as few passes as can be.
    if not (math.isfinite(diff.sum().item()) and math.isfinite(allowed.sum().item())):
        diff, allowed, want = _special(o, r, want, floor, rtol * widen, g is not None)
    off = diff > allowed
    finite = diff.isfinite() & want.isfinite()
    tally.err_sq += diff.where(finite, 0.0).square().sum().item()
    tally.want_sq += want.where(finite, 0.0).square().sum().item()
    tally.finite += int(finite.sum())
    if g is not None:
        ref_diff = (r - want).abs_()
        tally.ref_err_sq += ref_diff.where(finite & ref_diff.isfinite(), 0.0).square().sum().item()
    finite_diff = diff.nan_to_num(posinf=0.0)  # JSON has no infinity: a non-finite error shows in the reason
    tally.max_abs = max(tally.max_abs, finite_diff.max().item())
    tally.max_rel = max(tally.max_rel, finite_diff.div_(want.abs()).nan_to_num_(nan=0.0, posinf=0.0).max().item())
    if not off.any():
        return
    tally.bad += int(off.sum())
    tally.overflow += int((off & o.isinf() & r.isfinite()).sum())
    tally.nan += int((off & o.isnan() & ~r.isnan()).sum())
    if tally.lowered:
        # An infinity of the wrong sign (or any error at a non-finite answer) is not lost precision.
        tally.lowered = bool((want[off].isfinite() & (diff[off] <= LOWERED_PRECISION_RTOL * (want[off].abs() + typical) + atol)).all())
    excess = torch.where(off, diff / allowed.clamp_min(1e-300), torch.zeros_like(diff))
    at = int(excess.argmax())
    if excess[at].item() > tally.worst_excess:
        tally.worst_excess = excess[at].item()
        tally.worst_at = (start + at, o[at].item(), want[at].item(), allowed[at].item())


def _special(o: torch.Tensor, r: torch.Tensor, want: torch.Tensor, atol: float, rtol: float, golden: bool):
    """diff, allowed and want where some value is NaN or infinite: where the reference is not
    finite the answer must be matched exactly (allowed 0, diff 0 or inf); a non-finite result
    where it is finite is infinitely wrong; where only the golden answer is not finite, the
    reference's value is the answer."""
    ref_finite = r.isfinite()
    want = torch.where(ref_finite & want.isfinite(), want, r)
    diff = (o - want).abs()
    same_special = (o.isnan() & r.isnan()) | (o.isinf() & (o == r))
    diff = torch.where(same_special, torch.zeros_like(diff), diff.nan_to_num(nan=float("inf")))
    diff = torch.where(ref_finite | same_special, diff, torch.full_like(diff, float("inf")))
    allowed = want.abs() * rtol + atol
    if golden:
        allowed += REFERENCE_ERROR_FACTOR * (r - want).abs()
    allowed = torch.where(ref_finite, allowed.nan_to_num(nan=0.0), torch.zeros_like(allowed))
    return diff, allowed, want


def _compare_tensor(o: torch.Tensor, r: torch.Tensor, g: torch.Tensor | None, dtype: torch.dtype,
                    allow_tf32: bool, sensitivity: float | None = None) -> _Tally:
    atol, rtol = tolerance(dtype, allow_tf32)
    typical = _typical(r if g is None else g)
    widen = _reference_widening(r, g, atol + rtol * typical, rtol) if g is not None else 1.0
    fo, fr, fg = _flat(o), _flat(r), (None if g is None else _flat(g))
    tally = _Tally()
    if g is not None and sensitivity and math.isfinite(sensitivity):
        tally.accumulation = SENSITIVITY_RTOL * sensitivity
    for start in range(0, fr.numel(), CHUNK):
        end = start + CHUNK
        _check_chunk(tally, start, fo[start:end], fr[start:end], None if fg is None else fg[start:end],
                     atol, rtol, widen, typical)
    return tally


def _unravel(flat_index: int, shape: torch.Size) -> tuple[int, ...]:
    index = []
    for size in reversed(shape):
        index.append(flat_index % size)
        flat_index //= size
    return tuple(reversed(index))


def compare(out, ref, tolerance_dtype: torch.dtype | None = None, allow_tf32: bool = False,
            gold: list | None = None, sensitivity: list | None = None) -> Comparison:
    """Judge `out` (a candidate's result, nested tensors/values) against `ref` (the reference's,
    same nesting). `gold`, when given, is flatten(ref)'s float64 counterpart (a tensor or None
    per leaf): the answer errors are measured against; `sensitivity` (a float or None per
    leaf, reference.Expected) widens each leaf's bound by SENSITIVITY_RTOL x it.
    `tolerance_dtype` overrides the dtype whose tolerance applies (a bf16 task checked in fp32
    keeps bf16's bound)."""
    outs, refs = flatten(out), flatten(ref)
    golds = gold if gold is not None else [None] * len(refs)
    sensitivities = sensitivity if sensitivity is not None and len(sensitivity) == len(refs) else [None] * len(refs)
    if len(outs) != len(refs):
        return Comparison(False, "wrong_structure", f"returned {len(outs)} values, expected {len(refs)}")
    worst_abs, worst_rel = 0.0, 0.0
    for i, (o, r, g, sens) in enumerate(zip(outs, refs, golds, sensitivities)):
        where = f"output {i}: " if len(refs) > 1 else ""
        if not isinstance(r, torch.Tensor):
            if o != r:
                return Comparison(False, "mismatch", f"{where}returned {o!r}, expected {r!r}")
            continue
        if not isinstance(o, torch.Tensor):
            return Comparison(False, "wrong_structure", f"{where}returned {type(o).__name__}, expected a tensor")
        if o.shape != r.shape:
            return Comparison(False, "wrong_shape", f"{where}shape {tuple(o.shape)}, expected {tuple(r.shape)}")
        if o.dtype != r.dtype:
            return Comparison(False, "wrong_dtype", f"{where}dtype {o.dtype}, expected {r.dtype}")
        if not r.is_floating_point():
            if not torch.equal(o.cpu(), r.cpu()):
                bad = int((o.cpu() != r.cpu()).sum())
                return Comparison(False, "mismatch", f"{where}{bad} elements differ", bad_fraction=bad / max(1, r.numel()))
            continue
        if r.numel() == 0:
            continue
        if g is not None and (not isinstance(g, torch.Tensor) or g.shape != r.shape):
            g = None
        dtype = tolerance_dtype or r.dtype
        tally = _compare_tensor(o, r, g, dtype, allow_tf32, sens)
        worst_abs, worst_rel = max(worst_abs, tally.max_abs), max(worst_rel, tally.max_rel)
        norm_error = math.sqrt(tally.err_sq / tally.want_sq) if tally.want_sq > 0 else 0.0
        # A kernel as accurate as the reference always passes: where the reference itself is
        # that far off the golden answer in norm (pure rounding noise), so may the kernel be;
        # and where a sum cancels below its own accumulation error, so may its result.
        norm_allowed = max(NORM_RTOL, REFERENCE_ERROR_FACTOR * math.sqrt(tally.ref_err_sq / tally.want_sq),
                           tally.accumulation * math.sqrt(tally.finite / tally.want_sq)) if tally.want_sq > 0 else NORM_RTOL
        if not tally.bad and norm_error > norm_allowed:
            return Comparison(False, "mismatch", f"{where}every element within atol, but the output is {norm_error:.0%} off "
                              f"in norm (||got - want|| / ||want||, at most {norm_allowed:.0%}): it is smaller than atol, "
                              f"not right", worst_abs, max(worst_rel, norm_error), 1.0)
        if tally.bad:
            flat_index, got, want, allowed = tally.worst_at
            worst = WorstElement(i, _unravel(flat_index, r.shape), got, want, allowed)
            errors = f"max abs error {tally.max_abs:.3g}, max rel error {tally.max_rel:.3g}" if not (
                tally.overflow or tally.nan) else f"max abs error of the finite ones {tally.max_abs:.3g}"
            detail = f"{where}{tally.bad} of {r.numel()} elements off, {errors}; {worst.describe(len(refs))}"
            if tally.overflow:
                reason = "overflow"
                detail = f"{where}{tally.overflow} elements are inf where the answer is finite (overflow); " + detail[len(where):]
            elif tally.nan:
                reason = "nan_output"
                detail = f"{where}{tally.nan} elements are NaN where the answer is not; " + detail[len(where):]
            elif tally.lowered and dtype in (torch.float32, torch.float64):
                reason = "precision_loss"
            else:
                reason = "mismatch"
            return Comparison(False, reason, detail, worst_abs, worst_rel, tally.bad / r.numel(), worst)
    return Comparison(True, max_abs_error=worst_abs, max_rel_error=worst_rel)


SAME_VALUES_CHUNK = 1 << 22  # elements compared at once: no temporaries the size of the outputs
_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _bits(t: torch.Tensor) -> torch.Tensor:
    """`t` flattened and viewed as integers of its element size (a view where it is contiguous)."""
    flat = t.detach().reshape(-1)
    if flat.is_complex():
        flat = torch.view_as_real(flat).reshape(-1)
    return flat.view(_BITS[flat.element_size()])


def same_values(a, b) -> bool:
    """Bitwise-equal outputs (a NaN equals the same NaN): used to spot stale and cached results.
    Compared in chunks, so checking two large outputs costs no third copy of them."""
    la, lb = flatten(a), flatten(b)
    if len(la) != len(lb):
        return False
    for x, y in zip(la, lb):
        if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
            if x != y:
                return False
            continue
        if x.shape != y.shape or x.dtype != y.dtype:
            return False
        bx, by = _bits(x), _bits(y.to(x.device))
        if not all(torch.equal(bx[i:i + SAME_VALUES_CHUNK], by[i:i + SAME_VALUES_CHUNK])
                   for i in range(0, bx.numel(), SAME_VALUES_CHUNK)):
            return False
    return True
