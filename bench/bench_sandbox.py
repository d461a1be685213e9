"""Benchmark of the evaluation harness itself: how long kagent takes to judge a C++ candidate.

    python bench/bench_sandbox.py            # ~1-2 min on 2 cores
    python bench/bench_sandbox.py --quick    # fewer repetitions; the baseline is still built once

Phases, each through Sandbox.evaluate with the honest candidates of tests/candidates/:
  cold    the first evaluation ever: worker start (torch import) + compile + judge
  fresh   a never-seen C++ source on a warm worker: g++ + judge
  cached  the same candidate again: build-cache hit, judge only
  noise   spread of the reported medians over repeated cached evaluations
  baseline  torch.utils.cpp_extension.load_inline of an equivalent relu, measured in this run
Builds go to a temporary KAGENT_CACHE_DIR, so nothing built elsewhere counts as a hit.
Exits 0 whatever the numbers (a benchmark, not a test); non-zero only if something crashed.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kagent.sandbox.backends.cpp import COMPILER, FLAGS  # noqa: E402  (imports no torch)
from kagent.sandbox.supervisor import Sandbox  # noqa: E402
from kagent.sandbox.models import EvalRequest  # noqa: E402

TASKS = {  # name: (task file, honest cpp candidate)
    "relu": ("tasks/01_relu.py", "tests/candidates/01_relu/cpp.py"),
    "matmul": ("tasks/06_matmul.py", "tests/candidates/06_matmul/cpp.py"),
}
TARGET_FRESH_S, TARGET_CACHED_S, TARGET_NOISE_PCT = 5.0, 1.5, 3.0
RELU_EXTENSION = r"""
torch::Tensor relu(torch::Tensor x) {
    x = x.contiguous();
    auto y = torch::empty_like(x);
    const float* in = x.data_ptr<float>();
    float* out = y.data_ptr<float>();
    #pragma omp parallel for simd
    for (int64_t i = 0; i < x.numel(); ++i) out[i] = in[i] > 0.f ? in[i] : 0.f;
    return y;
}
"""

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="2 fresh and 3 cached repetitions per task")
args = parser.parse_args()
FRESH_REPS, CACHED_REPS = (2, 3) if args.quick else (5, 7)

work = Path(tempfile.mkdtemp(prefix="kagent-bench-"))
os.environ["KAGENT_CACHE_DIR"] = str(work / "cache")  # the worker inherits it


# -- helpers ----------------------------------------------------------------------------------

def candidate(task: str, tag: str) -> Path:
    """The honest candidate with `// tag` in its C++ source: a new tag is a new build hash."""
    source = (ROOT / TASKS[task][1]).read_text()
    assert source.count("r'''\n") == 1, f"{task}: cannot find the C++ source to tag"
    path = work / f"{task}_{tag}.py"
    path.write_text(source.replace("r'''\n", f"r'''\n// bench {tag}\n"))
    return path


def judge(sandbox: Sandbox, task: str, path: Path):
    """(wall seconds, verdict) of one evaluation; an honest candidate must come back correct."""
    request = EvalRequest(task_path=str(ROOT / TASKS[task][0]), candidate_path=str(path),
                          backend="cpp", device="cpu")
    began = time.perf_counter()
    verdict = sandbox.evaluate(request, timeout_s=300)
    wall = time.perf_counter() - began
    if verdict.status != "correct":
        raise RuntimeError(f"{task}: the honest candidate got {verdict.status}/{verdict.reason}: {verdict.message}")
    return wall, verdict


def gxx_alone(task: str) -> float:
    """The bare compiler run the cpp backend makes for this candidate (not cached)."""
    source = candidate(task, uuid.uuid4().hex).read_text().split("'''")[1]
    src, out = work / f"{task}_gxx.cpp", work / f"{task}_gxx.so"
    src.write_text(source)
    began = time.perf_counter()
    subprocess.run([COMPILER, *FLAGS, str(src), "-o", str(out)], check=True)
    return time.perf_counter() - began


def load_inline_build() -> float:
    """The baseline: torch's own way to build an equivalent relu, in a fresh build directory."""
    from torch.utils.cpp_extension import load_inline

    build_dir = work / "load_inline"
    build_dir.mkdir()
    began = time.perf_counter()
    load_inline(name=f"bench_relu_{uuid.uuid4().hex[:8]}", cpp_sources=RELU_EXTENSION, functions=["relu"],
                extra_cflags=["-O3", "-fopenmp"], build_directory=str(build_dir), verbose=False)
    return time.perf_counter() - began


def spread_pct(values: list[float]) -> float:
    return 100 * (max(values) - min(values)) / statistics.median(values)


# -- measure ----------------------------------------------------------------------------------

fresh, cached, noise = {}, {}, {}
try:
    with Sandbox("cpu") as sandbox:
        print(f"kagent harness benchmark: {os.cpu_count()} cores, cache {os.environ['KAGENT_CACHE_DIR']}")
        began = time.perf_counter()
        sandbox._worker()  # starts the worker process: torch import, warm-up
        worker_start = time.perf_counter() - began
        cold = worker_start + judge(sandbox, "relu", candidate("relu", uuid.uuid4().hex))[0]
        for task in TASKS:
            runs = [judge(sandbox, task, candidate(task, uuid.uuid4().hex)) for _ in range(FRESH_REPS)]
            fresh[task] = {"wall": statistics.median(w for w, _ in runs),
                           "harness": statistics.median(v.elapsed_s for _, v in runs),
                           "gxx": statistics.median(gxx_alone(task) for _ in range(3))}
            path = candidate(task, "cached")
            judge(sandbox, task, path)  # builds it once: every evaluation below is a cache hit
            runs = [judge(sandbox, task, path) for _ in range(CACHED_REPS)]
            verdicts = [v for _, v in runs]
            cached[task] = {
                "wall": statistics.median(w for w, _ in runs),
                "harness": statistics.median(v.elapsed_s for v in verdicts),
                "runs": statistics.median(v.ref_timing.runs for v in verdicts),
                # the interleaved timing loop: runs x (reference + candidate), warm-up excluded
                "timing": statistics.median(v.ref_timing.runs * (v.ref_timing.mean_ms + v.candidate_timing.mean_ms)
                                            / 1000 for v in verdicts),
            }
            noise[task] = {field: spread_pct([getattr(v, field) for v in verdicts])
                           for field in ("ref_time_ms", "candidate_time_ms", "speedup")}
            noise[task]["medians"] = [round(v.candidate_time_ms, 3) for v in verdicts]
    baseline = load_inline_build()  # after the sandbox is closed: it takes both cores for 15-30 s

    # -- report -------------------------------------------------------------------------------

    names = list(TASKS)

    def row(label, values, unit="s", target=None):
        cells = "".join(f"{v:>11.3f}{unit}" if isinstance(v, float) else f"{v!s:>12}" for v in values)
        verdict = ""
        if target is not None:
            missed = [n for n, v in zip(names, values) if v > target]
            verdict = f"  <= {target:g}{unit}  " + (f"MISS ({', '.join(missed)})" if missed else "PASS")
        print(f"{label:<40}{cells}{verdict}")

    print(f"\n{'':<40}" + "".join(f"{n:>12}" for n in names) + "  target")
    row("cold: worker start + fresh judge", [cold, "-"])
    row("  worker start (torch import)", [worker_start, "-"])
    row("fresh: compile + judge, median", [fresh[t]["wall"] for t in names], target=TARGET_FRESH_S)
    row("  g++ alone", [fresh[t]["gxx"] for t in names])
    row("  in the child, g++ included (elapsed_s)", [fresh[t]["harness"] for t in names])
    row("cached: judge only, median", [cached[t]["wall"] for t in names], target=TARGET_CACHED_S)
    row("  harness in the child (elapsed_s)", [cached[t]["harness"] for t in names])
    row("  timing loop (runs x ref+cand)", [cached[t]["timing"] for t in names])
    row("  checks, loading, rest", [cached[t]["harness"] - cached[t]["timing"] for t in names])
    row("  fork, IPC, verifier (wall - elapsed)", [cached[t]["wall"] - cached[t]["harness"] for t in names])
    row("  timed runs per side", [int(cached[t]["runs"]) for t in names])
    print(f"noise over {CACHED_REPS} cached evaluations, (max - min) / median:")
    for field in ("ref_time_ms", "candidate_time_ms", "speedup"):
        row(f"  {field}", [noise[t][field] for t in names], unit="%", target=TARGET_NOISE_PCT)
    for t in names:
        print(f"  {t} candidate medians (ms): {noise[t]['medians']}")
    print()
    print(f"{'baseline: load_inline build (relu)':<40}{baseline:>11.2f}s")
    print(f"{'  load_inline / fresh relu evaluation':<40}{baseline / fresh['relu']['wall']:>11.1f}x")
    print(f"{'  load_inline / cached relu evaluation':<40}{baseline / cached['relu']['wall']:>11.1f}x")
finally:
    shutil.rmtree(work, ignore_errors=True)
