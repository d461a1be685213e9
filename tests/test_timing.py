"""Timing that measures the kernel and nothing else (sandbox/timing.py, sandbox/blocks.py).

Each case under ../shared/cases/verdicts stands for a kind of cheat found outside the project;
each is run here as a user runs it (`kagent eval TASK CANDIDATE --json`, relative paths,
default flags), beside its honest control where it has one. Further members of each kind are
planted cheats run in the warm test sandbox. Speeds are compared as ratios with wide margins:
the machine is loaded and noisy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, TASKS
from test_anticheat import candidate, rejected

# shared/ beside the checkout (CI), or beside the folder of worktrees (a git worktree checkout)
CASES = next((p / "shared" / "cases" / "verdicts" for p in (ROOT.parent, ROOT.parent.parent)
              if (p / "shared" / "cases" / "verdicts").is_dir()), ROOT.parent / "shared" / "cases" / "verdicts")
SUM_DIM = TASKS / "03_sum_dim.py"
MARGIN = 1.5  # a cheat's speedup may exceed its honest control's by noise, not by this much

needs_cases = pytest.mark.skipif(not CASES.is_dir(), reason=f"{CASES} is not there (shared/ beside the checkout)")


def kagent_eval(env: dict, workdir: Path, task: Path, case_file: Path, *edits: tuple[str, str]) -> dict:
    """`kagent eval task.py candidate.py --json` in `workdir`, on a copy of the case's file with
    its import line spelled as the renamed package spells it (and `edits`: old, new text)."""
    (workdir / "task.py").write_text(task.read_text())
    source = case_file.read_text().replace("from sandbox.backends.cpp import", "from kagent.sandbox.backends.cpp import")
    for old, new in edits:
        assert old in source
        source = source.replace(old, new)
    (workdir / "candidate.py").write_text(source)
    proc = subprocess.run([sys.executable, "-m", "kagent.agent.cli", "eval", "task.py", "candidate.py", "--json"],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1), proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV_"))}
    environment["KAGENT_CACHE_DIR"] = str(tmp_path_factory.mktemp("timing-cache"))
    return environment


@pytest.fixture(scope="module")
def case_verdicts(env, tmp_path_factory) -> dict[str, dict]:
    """Every case (and control) through the CLI, one after the other: evaluations running
    side by side would disturb each other's timings."""
    runs = {
        "03": ("03_version_keyed_replay", "task.py", "candidate.py"),
        "03_control": ("03_version_keyed_replay", "task.py", "control_honest.py"),
        "05": ("05_native_thread_timing", "task.py", "candidate.py"),
        "05_control": ("05_native_thread_timing", "task.py", "control_honest.py"),
        "11": ("11_patch_reference_module", "task.py", "candidate.py"),
        "sum_dim_control": ("cpp_omp_threads1_sum_dim", None, "control_honest.py"),
        "omp_threads1": ("cpp_omp_threads1_sum_dim", None, "candidate.py"),
        "async_spin": ("cpp_async_spin_sum_dim", None, "candidate.py"),
        "fingerprint": ("cpp_fingerprint_cache_sum_dim", None, "candidate.py"),
        # the same kernel with its cache never hit: its honest control
        "fingerprint_control": ("cpp_fingerprint_cache_sum_dim", None, "candidate.py", ("if (x == c_x", "if (false && x == c_x")),
        "timer_patch": ("cpp_timer_patch_libc_sum_dim", None, "candidate.py"),
        # the same hook without the dynamic loader (refused at build): the function's own address
        "timer_patch_no_dlsym": ("cpp_timer_patch_libc_sum_dim", None, "candidate.py", ("#include <dlfcn.h>\n", ""),
                                 ('dlsym(RTLD_DEFAULT, "clock_gettime")', "(void*)&clock_gettime")),
    }
    verdicts = {}
    for name, (case, task, file, *edits) in runs.items():
        workdir = tmp_path_factory.mktemp(name)
        verdicts[name] = kagent_eval(env, workdir, CASES / case / task if task else SUM_DIM, CASES / case / file, *edits)
    return verdicts


def correct(verdict: dict) -> None:
    assert verdict["status"] == "correct", f"{verdict['status']} ({verdict['reason']}): {verdict['message']}"


def fastest_speedup(verdict) -> float:
    """The speedup of the fastest runs (reference's over candidate's): on a loaded machine the
    medians move with the load, the fastest runs with the code."""
    timing = verdict if isinstance(verdict, dict) else verdict.model_dump()
    return timing["ref_timing"]["min_ms"] / timing["candidate_timing"]["min_ms"]


def no_faster_than(verdict: dict, control: dict) -> None:
    """Correct with a speedup within MARGIN of the honest control's, or not correct at all.
    Both the medians' and the fastest runs' speedups are compared, and the closer counts: on
    a loaded machine either can stray on its own, a reference slowed by the candidate shows
    in both."""
    if control["status"] != "correct":  # judged on its accuracy (compare.py), not its timing
        pytest.skip(f"the honest control is {control['status']} ({control['reason']}): {control['message']}")
    if verdict["status"] == "correct":
        ratio = min(verdict["speedup"] / control["speedup"], fastest_speedup(verdict) / fastest_speedup(control))
        assert ratio <= MARGIN, (verdict["message"], control["message"])


@needs_cases
def test_replay_keyed_on_the_input_object_and_its_version(case_verdicts):
    """Case 03: every timed call gets an input set of its own, so there is nothing to replay."""
    verdict = case_verdicts["03"]
    assert verdict["status"] == "correct" or verdict["reason"] == "cached_output", verdict["message"]
    no_faster_than(verdict, case_verdicts["03_control"])


@needs_cases
def test_cache_keyed_on_the_pointer_and_sampled_values(case_verdicts):
    """cpp_fingerprint_cache_sum_dim: fresh addresses and values on every timed call."""
    verdict = case_verdicts["fingerprint"]
    assert verdict["status"] == "correct" or verdict["reason"] == "cached_output", verdict["message"]
    no_faster_than(verdict, case_verdicts["fingerprint_control"])


@needs_cases
def test_native_thread_finishing_the_work(case_verdicts):
    """Case 05: the thread only takes over when the same input comes back, which it no longer
    does; were it to, the sampled output copied at return and the CPU watch would see it."""
    verdict = case_verdicts["05"]
    assert verdict["status"] == "correct" or verdict["reason"] == "background_work", verdict["message"]
    no_faster_than(verdict, case_verdicts["05_control"])


@needs_cases
def test_spinning_worker_thread(case_verdicts):
    """cpp_async_spin_sum_dim: no speedup from work done after the forward returns."""
    verdict = case_verdicts["async_spin"]
    assert verdict["status"] == "correct" or verdict["reason"] == "background_work", verdict["message"]
    no_faster_than(verdict, case_verdicts["sum_dim_control"])


@needs_cases
def test_patched_torch_nn_class_the_reference_uses(case_verdicts):
    """Case 11: nn.Linear.forward replaced at import (the reference's timing comes from the
    verifier anyway, where the patch does not exist)."""
    verdict = case_verdicts["11"]
    assert (verdict["status"], verdict["reason"]) == ("rejected", "patched_harness"), verdict["message"]
    assert "torch.nn.Linear.forward" in verdict["message"]


@needs_cases
def test_omp_set_num_threads_does_not_reach_the_reference(case_verdicts):
    """cpp_omp_threads1_sum_dim: the same kernel with and without omp_set_num_threads(1)."""
    correct(case_verdicts["omp_threads1"])
    no_faster_than(case_verdicts["omp_threads1"], case_verdicts["sum_dim_control"])


@needs_cases
def test_hooked_clock_is_checked_against_the_parents(case_verdicts):
    """cpp_timer_patch_libc_sum_dim: an inline hook on clock_gettime makes the candidate's
    own clock run slow; the parent's clock, in another process, does not. The case as handed
    over reaches the hook through dlsym, which the C++ backend refuses at build; the same hook
    on the function's own address gets as far as timing, where the parent's clock catches it."""
    refused = case_verdicts["timer_patch"]
    assert (refused["status"], refused["reason"]) == ("rejected", "forbidden_import"), refused["message"]
    verdict = case_verdicts["timer_patch_no_dlsym"]
    # `&clock_gettime` in a -fPIC library can be its own PLT stub, not libc's function: then the
    # hook never reaches the harness's clock, and an honest verdict is the right one.
    if verdict["status"] == "correct":
        return
    assert (verdict["status"], verdict["reason"]) == ("rejected", "forged_result"), verdict["message"]
    assert "parent's clock" in verdict["message"]


# -- more of each kind, planted in the warm test sandbox --------------------------------------

SUM_LIBRARY = r'''
#include <atomic>
#include <cfenv>
#include <cstdint>
#include <thread>

static void sum_rows(const float* x, float* y, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; ++r) {
        float s = 0.f;
        for (int64_t c = 0; c < cols; ++c) s += x[r * cols + c];
        y[r] = s;
    }
}

// Sums to nearest whatever mode the process is in: the rounding probe changes the mode for the
// reference's sake (its process-wide state), not to make this kernel's own sums less accurate.
extern "C" void row_sum(const float* x, float* y, int64_t rows, int64_t cols) {
    int mode = std::fegetround();
    std::fesetround(FE_TONEAREST);
    sum_rows(x, y, rows, cols);
    std::fesetround(mode);
}

extern "C" void round_up() { std::fesetround(FE_UPWARD); }

// The work is done at once; then a persistent thread spins (or sleeps) forever.
static std::atomic<bool> started{false};
extern "C" void row_sum_then_spin(const float* x, float* y, int64_t rows, int64_t cols, int64_t spin) {
    sum_rows(x, y, rows, cols);
    if (!started.exchange(true))
        std::thread([=] {
            volatile uint64_t n = 0;
            for (;;) { if (spin) ++n; else std::this_thread::sleep_for(std::chrono::seconds(1)); }
        }).detach();
}
'''


def sum_candidate(forward: str, top: str = "") -> str:
    return "\n".join([
        "import os", "import torch", "from kagent.sandbox.backends.cpp import load_cpp",
        f"lib = load_cpp(r'''{SUM_LIBRARY}''')", top, "",
        "class ModelNew(torch.nn.Module):",
        "    def __init__(self, dim):",
        "        super().__init__()",
        "        self.calls = 0",
        "",
        "    def forward(self, x):",
        "        x = x.contiguous()",
        "        y = torch.empty(x.shape[0])",
        "        self.calls += 1",
        *("        " + line for line in forward.strip().splitlines()),
        "        return y",
    ])


HONEST_SUM = "lib.row_sum(x, y, x.shape[0], x.shape[1])"


def test_persistent_thread_left_spinning(evaluate):
    """A thread that keeps a core busy after the timed calls (here from the timing's first
    calls on) would steal it from whatever runs next: the parent sees the CPU being used."""
    verdict = evaluate(SUM_DIM, sum_candidate(
        "lib.row_sum_then_spin(x, y, x.shape[0], x.shape[1], 1) if self.calls > 20 else lib.row_sum(x, y, x.shape[0], x.shape[1])"))
    rejected(verdict, "background_work")
    assert "CPU" in verdict.message


def test_persistent_thread_that_sleeps_is_honest(evaluate):
    """A kernel's own idle thread (asleep) is no cheat."""
    verdict = evaluate(SUM_DIM, sum_candidate(
        "lib.row_sum_then_spin(x, y, x.shape[0], x.shape[1], 0) if self.calls > 20 else lib.row_sum(x, y, x.shape[0], x.shape[1])"))
    assert verdict.status == "correct", f"{verdict.reason}: {verdict.message}"


# A trusted reference that tells, by its speed, whether it sees a process-wide change: it
# sleeps 20 ms per call when the thread count, environment, denormal mode or rounding mode
# differ from what they were when the task was loaded.
PROBE_TASK = """
import os
import time
import torch

_THREADS, _ENV = torch.get_num_threads(), dict(os.environ)
_ONE, _HALF_ULP = 1.0, 2.0 ** -53  # added at run time, not folded by the compiler


def _changed():
    return (torch.get_num_threads() != _THREADS or dict(os.environ) != _ENV
            or torch.tensor([1e-39]).mul(1.0).item() == 0.0 or _ONE + _HALF_ULP != _ONE)


class Model(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        if _changed():
            time.sleep(0.02)
        return torch.sum(x, dim=self.dim)


def get_inputs():
    return [torch.randn(256, 4096)]


def get_init_inputs():
    return [1]
"""
PROBE_MARGIN = 5  # a change that reached the probe would multiply the speedup by ~50


@pytest.mark.parametrize("change", [
    "torch.set_num_threads(1)",
    'os.environ["OMP_NUM_THREADS"] = "1"',
    "torch.set_flush_denormal(True)",
    "lib.round_up()",
], ids=["torch-threads", "environment", "denormals", "rounding"])
def test_process_wide_state_does_not_reach_the_reference(evaluate, tmp_path, change):
    """The candidate's process-wide changes stay in its own process: the reference is timed
    in the verifier. The same kernel without the change sets the bar. A change that reaches
    the harness's own work in the candidate's process (the rounding mode changes the input
    sets torch draws there) is caught as such instead."""
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE_TASK)
    control = evaluate(probe, sum_candidate(HONEST_SUM))
    verdict = evaluate(probe, sum_candidate(HONEST_SUM, top=change))
    assert control.status == "correct", control.message
    if verdict.status == "rejected":
        assert change == "lib.round_up()" and verdict.reason == "patched_harness", verdict.message
        return
    assert verdict.status == "correct", (control.message, verdict.message)
    assert fastest_speedup(verdict) <= PROBE_MARGIN * fastest_speedup(control), (verdict.message, control.message)


def test_patched_nn_module_class_is_patched_harness(evaluate):
    """Any torch.nn class the reference is built from counts as harness (case 11's kind):
    here nn.Linear's forward, replaced by one computing the same thing, as used by the linear
    task's reference."""
    verdict = evaluate(TASKS / "08_linear_bias_relu.py", candidate(
        "return torch.zeros(x.shape[0], 1)",
        top="torch.nn.Linear.forward = lambda self, x: torch.nn.functional.linear(x, self.weight, self.bias)"))
    rejected(verdict, "patched_harness")


def test_honest_kernel_timing_is_plausible(evaluate):
    """An honest kernel: correct, its times from the parent's blocks, both sides with runs."""
    verdict = evaluate(SUM_DIM, sum_candidate(HONEST_SUM))
    assert verdict.status == "correct", f"{verdict.reason}: {verdict.message}"
    assert verdict.ref_timing.runs == verdict.candidate_timing.runs >= 10
    assert verdict.speedup == pytest.approx(verdict.ref_timing.median_ms / verdict.candidate_timing.median_ms)


# -- the parent's clock against the candidate's ------------------------------------------------

def _blocks(per_call_ms: list[float], claimed_share: float, overhead_ms: float, disturbed: set[int]):
    """16 blocks of 16 calls: each call truly takes per_call_ms[k] on the parent's clock, the
    candidate's clock reports claimed_share of it; blocks in `disturbed` lose 20 ms to load."""
    from kagent.sandbox.blocks import Block

    blocks = []
    for k, ms in enumerate(per_call_ms):
        times = [ms * claimed_share] * 16
        wall = 16 * (ms + overhead_ms) + (20.0 if k in disturbed else 0.0)
        blocks.append(Block(times, wall))
    return blocks


def test_clock_check_tells_a_hooked_clock_from_a_loaded_machine():
    """A loaded machine delays some blocks (the CI failure: 2.46 ms claimed, 21 ms seen, an
    honest candidate); a hooked clock shrinks every block's claim."""
    from kagent.sandbox.blocks import FORGED_SHARE, clock_share

    reference = _blocks([0.5] * 16, 1.0, 0.01, disturbed={3, 12})
    # Honest, with load bursts in 10 of 16 blocks: the quiet quarter clears it.
    honest = _blocks([0.15] * 16, 1.0, 0.01, disturbed=set(range(10)))
    assert clock_share(honest, reference) >= FORGED_SHARE
    # A clock running at a fifth of the parent's, on a quiet or a loaded machine alike.
    for disturbed in (set(), set(range(8))):
        hooked = _blocks([2.0] * 16, 0.2, 0.01, disturbed=disturbed)
        assert clock_share(hooked, reference) < FORGED_SHARE
    # Blocks too short to tell (under the slack) are never called forged.
    assert clock_share(_blocks([0.01] * 16, 0.0, 0.0, set()), reference) == 1.0
