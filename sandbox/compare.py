"""Compare a candidate's output with the reference's, with dtype-aware tolerances.

An element passes when |out - ref| <= atol * scale + rtol * |ref|, where scale is the largest
reference magnitude (at least 1): absolute error is judged relative to the output's size, so a
matmul whose outputs are ~30 gets the same relative slack as one whose outputs are ~1. fp32 is
checked strictly: TF32 or fp16 arithmetic in an fp32 task is lowered precision, not noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

TOLERANCE = {  # dtype: (atol, rtol)
    torch.float64: (1e-7, 1e-7),
    torch.float32: (1e-4, 1e-4),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (2e-2, 2e-2),
}
TF32_TOLERANCE = (5e-3, 5e-3)  # fp32 tasks evaluated with TF32 explicitly allowed
# A failure that would pass at this looser bound is an fp32 result computed in lower precision.
LOWERED_PRECISION_TOLERANCE = (2e-2, 2e-2)


@dataclass
class Comparison:
    ok: bool
    reason: str = "ok"  # mismatch, precision_loss, wrong_shape, wrong_dtype, wrong_structure
    detail: str = ""
    max_abs_error: float | None = None
    max_rel_error: float | None = None  # max abs error / largest reference magnitude
    bad_fraction: float | None = None  # share of the failing output's elements out of tolerance


def flatten(value) -> list:
    if isinstance(value, (tuple, list)):
        return [leaf for item in value for leaf in flatten(item)]
    return [value]


def _errors(out: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """|out - ref| with matching NaNs and infinities counted as equal, |ref|, and the scale.
    fp16/bf16 are compared in fp32, fp32 in fp32 (the difference of two fp32 values near each
    other is exact), fp64 in fp64: a float64 copy of every output costs more than the check."""
    work = torch.float64 if ref.dtype == torch.float64 else torch.float32
    o, r = out.detach().cpu().to(work), ref.detach().cpu().to(work)
    diff = (o - r).abs()
    if not (diff.isfinite().all() and r.isfinite().all()):
        equal = (o.isnan() & r.isnan()) | (o.isinf() & (o == r))
        diff = diff.masked_fill(equal, 0.0).nan_to_num(nan=float("inf"))
    ref_abs = r.abs()
    finite = ref_abs[ref_abs.isfinite()] if not ref_abs.isfinite().all() else ref_abs
    scale = max(1.0, finite.max().item()) if finite.numel() else 1.0
    return diff, ref_abs.nan_to_num(posinf=0.0, neginf=0.0), scale


def _out_of_bound(diff: torch.Tensor, ref_abs: torch.Tensor, scale: float, atol: float, rtol: float) -> torch.Tensor:
    return diff > atol * scale + rtol * ref_abs


def compare(out, ref, tolerance_dtype: torch.dtype | None = None, allow_tf32: bool = False) -> Comparison:
    """tolerance_dtype overrides the dtype whose tolerance applies (bf16 checked in fp32)."""
    outs, refs = flatten(out), flatten(ref)
    if len(outs) != len(refs):
        return Comparison(False, "wrong_structure", f"returned {len(outs)} values, expected {len(refs)}")
    worst_abs, worst_rel = 0.0, 0.0
    for i, (o, r) in enumerate(zip(outs, refs)):
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
        diff, ref_abs, scale = _errors(o, r)
        max_abs = diff.max().item()
        worst_abs, worst_rel = max(worst_abs, max_abs), max(worst_rel, max_abs / scale)
        dtype = tolerance_dtype or r.dtype
        atol, rtol = TF32_TOLERANCE if (allow_tf32 and dtype == torch.float32) else TOLERANCE.get(dtype, (1e-4, 1e-4))
        off = _out_of_bound(diff, ref_abs, scale, atol, rtol)
        if off.any():
            bad = int(off.sum())
            detail = f"{where}{bad} of {r.numel()} elements off, max abs error {max_abs:.3g}"
            lowered = dtype in (torch.float32, torch.float64) and not _out_of_bound(
                diff, ref_abs, scale, *LOWERED_PRECISION_TOLERANCE).any()
            reason = "precision_loss" if lowered else "mismatch"
            return Comparison(False, reason, detail, worst_abs, worst_rel, bad / r.numel())
    return Comparison(True, max_abs_error=worst_abs, max_rel_error=worst_rel)


def same_values(a, b) -> bool:
    """Bitwise-equal outputs (NaNs equal): used to spot stale and cached results."""
    la, lb = flatten(a), flatten(b)
    if len(la) != len(lb):
        return False
    for x, y in zip(la, lb):
        if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
            if x != y:
                return False
        elif x.shape != y.shape or x.dtype != y.dtype or not torch.equal(
            x.detach().cpu().nan_to_num(nan=0.0) if x.is_floating_point() else x.detach().cpu(),
            y.detach().cpu().nan_to_num(nan=0.0) if y.is_floating_point() else y.detach().cpu(),
        ):
            return False
    return True
