"""Red-team variants of the kinds of ../shared/cases/verdicts (tests/cases_redteam/<kind>_<name>/):
each folder holds a candidate.py, a task.py unless it runs against tasks/03_sum_dim.py, and an
expect.txt in the shared cases' format. Each is run through `kagent eval --json` as a user runs
it (relative paths from the checkout), and its verdict must be one EXPECTED allows. The compile
baseline is off (`--baseline eager`): it judges nothing here and would double the run time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from conftest import ROOT
from kagent.sandbox import compare as cmp

CASES = ROOT / "tests" / "cases_redteam"
SUM_TASK = "tasks/03_sum_dim.py"

CORRECT = (("correct", "ok"),)
TASK_ERROR = (("error", "task_error"),)
# A replayed answer: rejected as a cache, or wrong where the replay shows.
CACHED = (("rejected", "cached_output"), ("rejected", "kernel_not_launched"), ("rejected", "faster_than_light"),
          ("incorrect", None))

# folder -> the (status, reason) pairs a trustworthy harness may give (reason None: any).
EXPECTED: dict[str, tuple] = {
    # comparison: element-wise bounds, exact NaN/inf positions, shapes, dtypes, structure
    "comparison_fp32_all_zero_below_atol": (("incorrect", "mismatch"),),
    "comparison_fp32_zero_below_atol_bounded": (("incorrect", "mismatch"),),
    "comparison_fp32_small_outputs_exact": CORRECT,
    "comparison_fp32_bounded_small_honest": CORRECT,
    "comparison_half_zeroed_with_outlier": (("incorrect", "mismatch"),),
    "comparison_inf_sign_flipped": (("incorrect", "mismatch"),),
    "comparison_nan_replaced_by_zero": (("incorrect", "mismatch"),),
    "comparison_log_honest": CORRECT,
    "comparison_broadcastable_shape": (("incorrect", "wrong_shape"),),
    "comparison_fp64_output_for_fp32_task": (("incorrect", "wrong_dtype"),),
    "comparison_strided_output_view": CORRECT,
    "comparison_tuple_second_wrong": (("incorrect", "mismatch"), ("incorrect", "precision_loss")),
    "comparison_argmax_off_by_one": (("incorrect", "mismatch"),),
    "comparison_noncontiguous_input_honest": CORRECT,
    "comparison_output_aliases_mutated_input": (("rejected", "output_aliases_input"), ("rejected", "mutates_input")),
    # accuracy: more accurate than the reference passes, much less accurate does not
    "accuracy_kahan_sum": CORRECT,
    "accuracy_fp64_accumulation": CORRECT,
    "accuracy_fp16_accumulation": (("incorrect", "mismatch"), ("incorrect", "precision_loss")),
    "accuracy_fp16_task_fp32_accumulation": CORRECT,
    "accuracy_fp16_task_fp16_accumulation": (("incorrect", "mismatch"),),
    "accuracy_bf16_inputs_rounding": (("incorrect", "precision_loss"), ("incorrect", "mismatch")),
    # task validation: tasks that cannot judge a kernel are exit 2 before any candidate code
    "task_bernoulli_reference": TASK_ERROR,
    "task_numpy_random_reference": TASK_ERROR,
    "task_python_random_reference": TASK_ERROR,
    "task_randn_like_small_noise": TASK_ERROR,
    "task_shape_only_reference": TASK_ERROR,
    "task_missing_module": TASK_ERROR,
    "task_none_and_bool_inputs": CORRECT + TASK_ERROR,  # None is refused by name, never blamed on the kernel
    "task_batchnorm_training_mode": (("incorrect", "mismatch"),),  # the reference runs in eval mode (see README)
    # caching and replay
    "cache_keyed_on_data_ptr": CACHED,
    "cache_keyed_on_shape": CACHED,
    "cache_keyed_on_id_and_samples": CORRECT,  # one entry: never hits on the ring, so honest timing
    "cache_native_hash_of_row_ends": CORRECT + CACHED,  # one entry, as above
    # An entry per input set: each timed call has values never used before, so it never hits;
    # `correct` only at the speed of its honest path (SPEEDUP_AT_MOST).
    "cache_many_entries_python_id": CORRECT + CACHED,
    "cache_many_entries_sampled_values": CORRECT + CACHED,
    "cache_lagging_by_one": CACHED,
    "cache_static_output_buffer": (("rejected", "cached_output"),),  # an output returned again is not fresh
    # background work
    "background_python_thread": (("rejected", "forbidden_import"), ("rejected", "background_work")),
    "background_python_fork": (("rejected", "forbidden_call"),),
    "background_native_fork": (("rejected", "forbidden_call"),),
    "background_native_thread_every_call": (("rejected", "background_work"),),
    # influencing the reference or the clock: the reference is timed in the verifier
    "influence_torch_set_num_threads": CORRECT,
    "influence_sched_setaffinity": CORRECT,
    "influence_patch_tensor_sum": (("rejected", "patched_harness"),),
    "influence_patch_tensor_method": CORRECT + (("rejected", "patched_harness"),),
    "influence_patch_perf_counter": (("rejected", "patched_harness"),),
    "influence_ftz_daz": CORRECT,
    # weights
    "weights_module_list": CORRECT,
    "weights_tied": CORRECT,
    "weights_tied_untied_in_candidate": CORRECT,
    "weights_nonpersistent_in_module_list": CORRECT,
    "weights_plain_tensor_attribute": CORRECT,
    "weights_parameter_list": CORRECT,
}
# Variants kagent still judges wrongly (README, "What the sandbox does not stop"): a cache with
# an entry per ring set serves every timed call after the first turn of the ring.
EXIT = {"correct": 0, "error": 2}
# Caches judged `correct` must not show the speedup of their hits: served from the cache they
# measured 13x eager; their honest path (a naive loop) is well under 1x.
SPEEDUP_AT_MOST = {"cache_many_entries_python_id": 3.0, "cache_many_entries_sampled_values": 3.0}


def _args(name: str) -> list[str]:
    folder = CASES / name
    task = folder / "task.py"
    return [str((task if task.exists() else ROOT / SUM_TASK).relative_to(ROOT)), str((folder / "candidate.py").relative_to(ROOT))]


def test_every_case_folder_has_an_expectation():
    folders = {p.name for p in CASES.iterdir() if p.is_dir()}
    assert folders == set(EXPECTED)
    for name in folders:
        assert (CASES / name / "expect.txt").read_text().strip(), name


@pytest.fixture(scope="module")
def verdicts(request) -> dict[str, subprocess.CompletedProcess]:
    """`kagent eval --json` of every selected case, run from the checkout, three at a time."""
    selected = {item.callspec.params["name"] for item in request.session.items
                if getattr(item, "callspec", None) and "name" in item.callspec.params}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV_"))}
    env["COLUMNS"] = "200"

    def run(name: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "kagent.agent.cli", "eval", *_args(name), "--baseline", "eager", "--json"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)

    with ThreadPoolExecutor(3) as pool:
        futures = {name: pool.submit(run, name) for name in sorted(selected)}
        return {name: future.result() for name, future in futures.items()}


def _check(result: subprocess.CompletedProcess, allowed: tuple, speedup_at_most: float | None = None) -> None:
    lines = result.stdout.splitlines()
    assert len(lines) == 1, f"expected one JSON object on stdout: {result.stdout[-1500:]!r} {result.stderr[-1500:]}"
    verdict = json.loads(lines[0])
    got = (verdict["status"], verdict["reason"])
    assert any(got[0] == status and (reason is None or got[1] == reason) for status, reason in allowed), (got, verdict["message"])
    assert result.returncode == EXIT.get(got[0], 1), (result.returncode, got)
    if got[0] == "correct" and speedup_at_most is not None:
        assert (verdict["speedup"] or 0.0) <= speedup_at_most, f"a cache's hits were timed: {verdict['message']}"
    if got[0] == "error":  # one clear line, no traceback
        stderr = result.stderr.strip().splitlines()
        assert len(stderr) == 1 and "Traceback" not in result.stderr and "task.py" in stderr[0], result.stderr


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_redteam_case(verdicts, name):
    _check(verdicts[name], EXPECTED[name], SPEEDUP_AT_MOST.get(name))


# -- the comparison's fixes, directly -------------------------------------------------------


def test_all_zero_output_below_fp32_atol_is_a_mismatch():
    """Within atol (1e-5) at every element of an output of 1e-6's, an all-zero answer is still
    100% off in norm: a mismatch."""
    torch.manual_seed(0)
    x = torch.randn(128, 128)
    ref, gold = torch.sigmoid(x) * 1e-6, [torch.sigmoid(x.double()) * 1e-6]
    result = cmp.compare(torch.zeros_like(ref), ref, gold=gold)
    assert (result.ok, result.reason) == (False, "mismatch")
    assert result.max_rel_error == pytest.approx(1.0)
    assert cmp.compare(1e-6 / (1 + torch.exp(-x)), ref, gold=gold).ok  # the same values computed otherwise
    sparse = torch.relu(x - 1) * 1e-6  # mostly zero
    assert not cmp.compare(torch.zeros_like(sparse), sparse).ok
    zero = torch.zeros(8)
    assert cmp.compare(zero + 1e-9, zero).ok  # an all-zero answer keeps assert_close's atol


def test_infinity_of_the_wrong_sign_is_a_mismatch_not_precision_loss():
    want = torch.tensor([-float("inf"), 1.0, 2.0])
    result = cmp.compare(torch.tensor([float("inf"), 1.0, 2.0]), want)
    assert (result.ok, result.reason) == (False, "mismatch")
    assert result.worst.index == (0,)
