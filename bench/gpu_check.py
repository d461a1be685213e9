"""Exercise every GPU path of kagent on the example tasks and print one table: path, PASS/FAIL,
seconds, first error line. Run by bench/gpu_check.sh; exits 1 if any path fails, 0 with one line
where there is no NVIDIA GPU. Five minutes at most on one GPU: a path that would start after the
budget is spent fails as not run, and each evaluation gets only the time left.

Paths (each through the real sandbox, with the honest candidates of tests/candidates/):
  cuda_event_timing  sandbox/timing.py on the GPU: CUDA events, the L2 flush covers this GPU's L2
  triton             every tests/candidates/*/triton.py compiled, launched, judged correct, timed
  verifier           the verifier, on CUDA, agrees with right outputs and rejects wrong ones
  confined_cuda      CUDA inside a confined worker: read-only mounts, no capabilities, /dev/nvidia-uvm
  ncu                Nsight Compute metrics collected by the confined worker
  cuda_load_inline   tests/candidates/*/cuda.py built with load_inline, judged correct, timed
  sandbox_per_gpu    one sandbox per visible GPU (LocalExecutor), each pinned, all evaluating at once
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = ROOT / "tests" / "candidates"
BUDGET_S = 300.0
PATHS = ("cuda_event_timing", "triton", "verifier", "confined_cuda", "ncu", "cuda_load_inline", "sandbox_per_gpu")


class Row(BaseModel):
    """One path's result: `error` is the first line of what went wrong, "" when it passed."""

    path: str
    ok: bool
    seconds: float
    error: str = ""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message, prefixed by its type unless it is an assertion."""
    text = str(err).strip() or type(err).__name__
    return f"{type(err).__name__}: {text.splitlines()[0]}" if not isinstance(err, AssertionError) else text.splitlines()[0]


def run_checks(checks: list[tuple[str, Callable[[], None]]], budget_s: float = BUDGET_S,
               say: Callable[[str], None] = lambda line: None) -> list[Row]:
    """Run each check (it raises to fail) in order; the ones that would start after `budget_s`
    seconds fail as not run."""
    began = time.monotonic()
    rows = []
    for name, check in checks:
        start = time.monotonic()
        if start - began > budget_s:
            rows.append(Row(path=name, ok=False, seconds=0.0, error=f"not run: the {budget_s:g} s budget was spent"))
        else:
            try:
                check()
                rows.append(Row(path=name, ok=True, seconds=round(time.monotonic() - start, 1)))
            except Exception as err:  # a check's failure, whatever it is, is a row, not the end of the run
                rows.append(Row(path=name, ok=False, seconds=round(time.monotonic() - start, 1), error=first_line(err)))
        say(f"{rows[-1].path}: {'PASS' if rows[-1].ok else 'FAIL'} {rows[-1].error}".rstrip())
    return rows


def format_table(rows: list[Row]) -> str:
    """Plain text, one row per path, aligned columns."""
    width = max([len("path"), *(len(r.path) for r in rows)])
    lines = [f"{'path':<{width}}  result  seconds  first error", f"{'-' * width}  ------  -------  -----------"]
    for row in rows:
        lines.append(f"{row.path:<{width}}  {'PASS' if row.ok else 'FAIL':<6}  {row.seconds:>7.1f}  {row.error}".rstrip())
    return "\n".join(lines)


# The confined worker, checked from inside by a candidate: it raises at import where a limit is
# missing (a runtime_error verdict naming it), else it is the honest Triton relu.
CONFINEMENT_PRELUDE = '''import os

_status = open("/proc/self/status").read()
_caps = next(line.split()[1] for line in _status.splitlines() if line.startswith("CapEff:"))
_problems = [f"capabilities left (CapEff {_caps})"] if int(_caps, 16) else []
if not os.statvfs(KAGENT_ROOT).f_flag & os.ST_RDONLY:
    _problems.append("kagent's code is on a writable mount")
if not os.path.exists("/dev/nvidia-uvm"):
    _problems.append("no /dev/nvidia-uvm")
if _problems:
    raise RuntimeError("not confined: " + ", ".join(_problems))
'''


class GpuChecks:
    """The GPU paths, sharing one warm sandbox on the first visible GPU."""

    def __init__(self, budget_s: float = BUDGET_S):
        from kagent.sandbox.supervisor import Sandbox, visible_gpus

        self.deadline = time.monotonic() + budget_s
        self.root = Path(tempfile.mkdtemp(prefix="kagent-gpu-check-"))
        gpus = visible_gpus()
        self.sandbox = Sandbox("cuda", root=self.root / "sandbox", gpu=gpus[0] if gpus else None)

    def checks(self) -> list[tuple[str, Callable[[], None]]]:
        """(path, check) in PATHS' order: each method is named after its path."""
        return [(name, getattr(self, name)) for name in PATHS]

    def close(self) -> None:
        """Stop the sandbox and delete its files."""
        self.sandbox.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def request(self, candidate: Path, backend: str, static_analysis: bool = False):
        """An EvalRequest on the GPU for a candidate in a folder named after its task."""
        from kagent.sandbox.models import EvalRequest

        return EvalRequest(task_path=str(ROOT / "tasks" / f"{candidate.parent.name}.py"), candidate_path=str(candidate),
                           backend=backend, device="cuda", seeds=[secrets.randbelow(2**31) for _ in range(3)],
                           static_analysis=static_analysis)

    def evaluate(self, candidate: Path, backend: str, static_analysis: bool = False, sandbox=None):
        """The verdict of one evaluation, given whatever remains of the budget."""
        timeout = max(5.0, self.deadline - time.monotonic())
        return (sandbox or self.sandbox).evaluate(self.request(candidate, backend, static_analysis), timeout_s=timeout)

    @staticmethod
    def judged_correct_and_timed(verdict, name: str) -> None:
        """Raises AssertionError naming `name` unless the verdict is correct with a GPU speedup."""
        assert verdict.status == "correct", f"{name}: {verdict.status} ({verdict.reason}) {verdict.message}"
        assert verdict.timing_meaningful and verdict.speedup, f"{name}: correct but not timed on the GPU"

    def cuda_event_timing(self) -> None:
        """sandbox/timing.py on the GPU: the flush covers the L2; one kernel against itself is 1x."""
        import torch

        from kagent.sandbox.timing import L2_FLUSH_BYTES, time_interleaved

        l2 = torch.cuda.get_device_properties(0).L2_cache_size
        assert l2 <= L2_FLUSH_BYTES, f"the L2 flush ({L2_FLUSH_BYTES >> 20} MiB) is smaller than this GPU's L2 ({l2 >> 20} MiB)"
        x = torch.randn(1 << 22, device="cuda")
        ref, cand, speedup = time_interleaved(lambda: torch.relu(x), lambda: torch.relu(x), torch.device("cuda"),
                                              warmup=5, min_runs=10, max_runs=500, budget_s=0.3)
        assert ref.runs >= 10 and 0 < ref.median_ms < 100, f"implausible CUDA-event times: {ref}"
        assert 0.8 < speedup < 1.25, f"one kernel timed against itself gave a speedup of {speedup:.2f}"

    def triton(self) -> None:
        """Every honest Triton candidate compiled, launched, judged correct and timed."""
        candidates = sorted(CANDIDATES.glob("*/triton.py"))
        assert candidates, "no tests/candidates/*/triton.py"
        for candidate in candidates:
            self.judged_correct_and_timed(self.evaluate(candidate, "triton"), candidate.parent.name)

    def verifier(self) -> None:
        """The verifier rebuilds the reference on CUDA: it accepts the reference's own outputs,
        computed here, and rejects them with one value changed."""
        import torch

        from kagent.sandbox import compare
        from kagent.sandbox.blocks import TIMED_PREFIX
        from kagent.sandbox.messages import SavedOutputs
        from kagent.sandbox.reference import build_reference
        from kagent.sandbox.timing import timed_set
        from kagent.sandbox.zygote import OUTPUTS_FILE

        request = self.request(CANDIDATES / "01_relu" / "triton.py", "triton")
        reference = build_reference(request)  # what the worker would have returned, computed here on CUDA
        outputs = {}
        with torch.no_grad():
            for name, inputs in reference.sets.items():
                outputs[name] = [t.detach().to("cpu", copy=True) for t in compare.flatten(reference.model(*inputs))]
            # One timing block of one call: its sampled output is call 0's, on call 0's own input set.
            inputs = timed_set(reference.task.get_inputs, request.seeds, 0, torch.device("cuda"))
            outputs[f"{TIMED_PREFIX}0"] = [t.detach().to("cpu", copy=True) for t in compare.flatten(reference.model(*inputs))]
        first = next(iter(outputs))
        for wrong in (False, True):
            if wrong:
                outputs[first][0].view(-1)[0] += 1000.0
            workdir = self.root / f"verify-{int(wrong)}"
            workdir.mkdir()
            for position, values in enumerate(outputs.values()):  # as the worker saves them (messages.SavedOutputs)
                path = SavedOutputs.entry_path(workdir, position)
                path.parent.mkdir(exist_ok=True)
                torch.save(values, path)
            torch.save(list(outputs), workdir / OUTPUTS_FILE)
            check = self.sandbox._verify(request, workdir, 120, [[0, 1]])
            if wrong:
                assert not check.ok and check.failed_input_set == first, f"the verifier accepted a wrong output: {check}"
            else:
                assert check.ok, f"the verifier rejected the reference's own outputs: {check.detail}"

    def confined_cuda(self) -> None:
        """The worker is namespaced and confined, and a candidate checking its own limits from
        inside (CONFINEMENT_PRELUDE) still runs CUDA and is judged correct."""
        self.sandbox._worker()
        log = (self.sandbox.root / "zygote.log").read_text(errors="replace").strip().splitlines()
        assert self.sandbox.isolated, "no PID namespace for the worker (see kagent doctor: isolation)"
        assert self.sandbox.confined, f"the worker is not confined: {log[-1] if log else 'no log'}"
        honest = (CANDIDATES / "01_relu" / "triton.py").read_text()
        candidate = self.root / "01_relu" / "triton.py"  # the task is found by the folder's name
        candidate.parent.mkdir(exist_ok=True)
        candidate.write_text(CONFINEMENT_PRELUDE.replace("KAGENT_ROOT", repr(str(ROOT))) + honest)
        self.judged_correct_and_timed(self.evaluate(candidate, "triton"), "the confinement-checking relu")

    def ncu(self) -> None:
        """A correct verdict from the confined worker carries Nsight Compute metrics."""
        from kagent.sandbox.probes import probe_ncu

        verdict = self.evaluate(CANDIDATES / "01_relu" / "triton.py", "triton", static_analysis=True)
        self.judged_correct_and_timed(verdict, "01_relu")
        assert verdict.artifacts.ncu, f"no Nsight Compute metrics: {probe_ncu(confined=self.sandbox.confined).reason}"

    def cuda_load_inline(self) -> None:
        """Every honest CUDA candidate built with load_inline, judged correct and timed."""
        candidates = sorted(CANDIDATES.glob("*/cuda.py"))
        assert candidates, "no tests/candidates/*/cuda.py"
        for candidate in candidates:
            self.judged_correct_and_timed(self.evaluate(candidate, "cuda"), candidate.parent.name)

    def sandbox_per_gpu(self) -> None:
        """LocalExecutor starts one sandbox per visible GPU, each pinned to its own, all correct at once."""
        from kagent.agent.executors.local import LocalExecutor
        from kagent.sandbox.supervisor import visible_gpus

        self.sandbox.close()  # its GPU gets a sandbox of the pool
        gpus = visible_gpus()
        pool = LocalExecutor("cuda", None, self.root / "pool")
        try:
            assert [s.gpu for s in pool.sandboxes] == gpus, f"sandboxes on {[s.gpu for s in pool.sandboxes]}, GPUs {gpus}"
            relu = CANDIDATES / "01_relu" / "triton.py"
            with ThreadPoolExecutor(len(pool.sandboxes)) as threads:
                verdicts = list(threads.map(lambda s: self.evaluate(relu, "triton", sandbox=s), pool.sandboxes))
            for sandbox, verdict in zip(pool.sandboxes, verdicts):
                self.judged_correct_and_timed(verdict, f"the sandbox on GPU {sandbox.gpu}")
                environ = Path(f"/proc/{sandbox._proc.pid}/environ").read_bytes().split(b"\0")
                assert f"CUDA_VISIBLE_DEVICES={sandbox.gpu}".encode() in environ, f"the sandbox for GPU {sandbox.gpu} is not pinned"
        finally:
            pool.close()


def main(argv: list[str] | None = None) -> int:
    """The table on stdout (progress on stderr); 1 if any path failed, 0 without a GPU."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for all paths (default 300)")
    args = parser.parse_args(argv)
    from kagent.sandbox.probes import gpu_ready, probe_gpu, probe_torch

    gpu = probe_gpu()
    if not gpu.available:
        print(f"no GPU to check: {gpu.reason}")
        return 0
    ready = gpu_ready(gpu, probe_torch(deep=True))
    if ready.can_run:
        checks = GpuChecks(args.budget)
        try:
            rows = run_checks(checks.checks(), args.budget, say=lambda line: print(line, file=sys.stderr, flush=True))
        finally:
            checks.close()
    else:  # a GPU kagent cannot use: every path fails, for that one reason
        rows = [Row(path=name, ok=False, seconds=0.0, error=f"not run: {ready.reason}") for name in PATHS]
    print(f"kagent GPU check: {gpu.reason}")
    print(format_table(rows))
    return 0 if all(row.ok for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
