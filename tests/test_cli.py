"""`kagent eval` as a user runs it: the real console script in a subprocess, a real worker.
Exit codes: 0 correct, 1 any other verdict, 2 a usage error (one line on stderr, no traceback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import CANDIDATES, ROOT, TASKS
from kagent.sandbox.supervisor import gpu_available

RELU = TASKS / "01_relu.py"
HONEST = CANDIDATES / "01_relu" / "cpp.py"
BROKEN = CANDIDATES / "01_relu" / "broken_grid.py"
VERDICT_FIELDS = {"status", "reason", "message", "backend", "device", "max_abs_error", "ref_time_ms",
                  "candidate_time_ms", "speedup", "timing_meaningful"}
SPINNING = '''import torch
from kagent.sandbox.backends.cpp import load_cpp

class ModelNew(torch.nn.Module):
    def forward(self, x):
        while True:
            pass
'''


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV_"))}
    environment["KAGENT_CACHE_DIR"] = str(tmp_path_factory.mktemp("cli-cache"))
    environment["COLUMNS"] = "200"
    return environment


def kagent(env, *args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kagent.agent.cli", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def evaluations(env) -> dict[str, subprocess.CompletedProcess]:
    """The runs that start a worker (~3 s each), started together."""
    runs = {
        "json_correct": ("eval", RELU, HONEST, "--json"),
        "json_incorrect": ("eval", RELU, BROKEN, "--json"),
        "human_incorrect": ("eval", RELU, BROKEN),
    }
    with ThreadPoolExecutor(len(runs)) as pool:
        futures = {name: pool.submit(kagent, env, *args) for name, args in runs.items()}
        return {name: future.result() for name, future in futures.items()}


def one_json_object(stdout: str) -> dict:
    lines = stdout.splitlines()
    assert len(lines) == 1, f"expected one JSON line on stdout, got {len(lines)}: {stdout[:500]!r}"
    verdict = json.loads(lines[0])
    assert isinstance(verdict, dict)
    assert VERDICT_FIELDS <= verdict.keys(), VERDICT_FIELDS - verdict.keys()
    return verdict


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "kagent"
    assert script.exists(), "the `kagent` entry point is not installed in this environment"
    assert "kagent.agent.cli" in script.read_text()


def test_json_correct_exits_0(evaluations):
    result = evaluations["json_correct"]
    assert result.returncode == 0, result.stderr
    verdict = one_json_object(result.stdout)
    assert (verdict["status"], verdict["reason"]) == ("correct", "ok")
    assert (verdict["backend"], verdict["device"]) == ("cpp", "cpu")
    assert verdict["max_abs_error"] == 0.0 and verdict["timing_meaningful"] is True
    assert verdict["ref_time_ms"] > 0 and verdict["candidate_time_ms"] > 0 and verdict["speedup"] > 0
    assert "Traceback" not in result.stderr


def test_json_incorrect_exits_1(evaluations):
    result = evaluations["json_incorrect"]
    assert result.returncode == 1, result.stderr
    verdict = one_json_object(result.stdout)
    assert verdict["status"] == "incorrect" and verdict["backend"] == "triton"
    assert verdict["max_abs_error"] > 0 and verdict["speedup"] is None


def test_human_summary(evaluations):
    result = evaluations["human_incorrect"]
    assert result.returncode == 1, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("incorrect (") and "extra:" in first, result.stdout
    assert "backend / device" in result.stdout and not result.stdout.lstrip().startswith("{")
    # The one verdict layout (present.print_verdict), the same as kagent show --candidate's.
    for row in ("input sets", "failed input set", "max abs / rel error", "evaluation took"):
        assert f"\n{row} " in result.stdout, (row, result.stdout)


def test_timeout_bounds_the_evaluation(env, tmp_path):
    candidate = tmp_path / "spin.py"
    candidate.write_text(SPINNING)
    started = time.monotonic()
    result = kagent(env, "eval", RELU, candidate, "--json", "--timeout", "3", timeout=60)
    wall = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    verdict = one_json_object(result.stdout)
    assert (verdict["status"], verdict["reason"]) == ("timeout", "timeout")
    assert "3 s" in verdict["message"]
    # The evaluation itself is cut at 3 s; the command around it (imports, the sandbox's start)
    # takes seconds more on a loaded machine, and the candidate would spin forever.
    assert verdict["elapsed_s"] is not None and verdict["elapsed_s"] < 3 + 2, verdict["elapsed_s"]
    assert wall < 45, f"kagent eval --timeout 3 took {wall:.1f} s"


USAGE_CASES = ["missing_task", "malformed_task", "missing_candidate", "binary_candidate", "unknown_backend",
               "unknown_device", "cpp_on_cuda", "cuda_without_gpu", "zero_timeout", "negative_timeout", "nan_timeout",
               "bad_memory_limit", "tiny_memory_limit", "bad_baseline", "missing_argument", "unknown_option", "timeout_not_a_number"]


def usage_cases(tmp_path: Path) -> dict[str, tuple[list, str]]:
    malformed = tmp_path / "malformed.py"
    malformed.write_text("import torch\nclass Model(torch.nn.Module:\n    pass\n")
    binary = tmp_path / "binary.py"
    binary.write_bytes(b"\xff\xfe\x00not text")
    return {
        "missing_task": ([tmp_path / "nope.py", HONEST], "nope.py: task file not found"),
        "malformed_task": ([malformed, HONEST], "malformed.py: syntax error at line 2"),
        "missing_candidate": ([RELU, tmp_path / "gone.py"], "gone.py: candidate file not found"),
        "binary_candidate": ([RELU, binary], "binary.py: not a UTF-8 text file"),
        "unknown_backend": ([RELU, HONEST, "--backend", "fortran"], "unknown backend 'fortran'"),
        "unknown_device": ([RELU, HONEST, "--device", "tpu"], "unknown device 'tpu'"),
        "cpp_on_cuda": ([RELU, HONEST, "--device", "cuda"], "the cpp backend runs on cpu, not cuda"),
        "cuda_without_gpu": ([RELU, CANDIDATES / "01_relu" / "triton.py", "--device", "cuda"],
                             "--device cuda: no NVIDIA GPU found"),
        "zero_timeout": ([RELU, HONEST, "--timeout", "0"], "--timeout must be a positive number"),
        "negative_timeout": ([RELU, HONEST, "--timeout", "-5"], "--timeout must be a positive number"),
        "nan_timeout": ([RELU, HONEST, "--timeout", "nan"], "--timeout must be a positive number"),
        "bad_memory_limit": ([RELU, HONEST, "--memory-limit", "lots"], "--memory-limit: 'lots' is not a size"),
        "tiny_memory_limit": ([RELU, HONEST, "--memory-limit", "1M"], "--memory-limit: '1M' is out of range"),
        # The shared option (agent/options.py), worded as optimize and batch word it.
        "bad_baseline": ([RELU, HONEST, "--baseline", "fast"], "invalid --baseline fast: Input should be 'eager' or 'compile'"),
        # Parsed by the command-line library itself, before kagent's own checks.
        "missing_argument": ([RELU], "Missing argument 'candidate'"),
        "unknown_option": ([RELU, HONEST, "--fast"], "No such option: --fast"),
        "timeout_not_a_number": ([RELU, HONEST, "--timeout", "soon"], "Invalid value for '--timeout'"),
    }


@pytest.mark.parametrize("case", USAGE_CASES)
def test_usage_errors_exit_2(env, tmp_path, case):
    if case == "cuda_without_gpu" and gpu_available():
        pytest.skip("this machine has a GPU")
    cases = usage_cases(tmp_path)
    assert list(cases) == USAGE_CASES
    args, expected = cases[case]
    for as_json in ([], ["--json"]):
        result = kagent(env, "eval", *args, *as_json)
        assert result.returncode == 2, (result.returncode, result.stdout[-500:], result.stderr[-2000:])
        if as_json:  # one verdict-shaped object: status error, the reason's kind, the same line
            error = one_json_object(result.stdout)
            assert error["status"] == "error" and expected in error["message"], error
            assert error["reason"] == ("task_error" if case == "malformed_task" else "usage_error"), error
            assert all(error[k] is None for k in VERDICT_FIELDS - {"status", "reason", "message"}), error
        else:
            assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, f"expected one line on stderr: {result.stderr[-2000:]}"
        assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
        assert "Traceback" not in result.stderr
        if case == "malformed_task":
            break  # the worker found it: no need to start a second one
