"""`kagent optimize` (and `batch`, `runs`, `show`, `report`) as a user runs them: the console
script in a subprocess, relative paths typed from the repo root or from another directory,
default flags, SIGINT to the process. The LLM is the scripted `cmd:` model
(tests/scripted_model.py); every verdict comes from the real sandbox."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import ROOT, TASKS
from conftest import archive_rows as rows
from kagent.sandbox.supervisor import gpu_available

SCRIPT = Path(__file__).resolve().parent / "scripted_model.py"
RELU = TASKS / "01_relu.py"
KAGENT = Path(sys.executable).parent / "kagent"  # the console script `pip install` made


def kagent(args: list[str], cwd: Path, timeout: float = 300, columns: int = 200) -> subprocess.CompletedProcess:
    command = [str(KAGENT)] if KAGENT.exists() else [sys.executable, "-m", "kagent.agent.cli"]
    return subprocess.run([*command, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": str(columns)})


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    command = [str(KAGENT)] if KAGENT.exists() else [sys.executable, "-m", "kagent.agent.cli"]
    return subprocess.Popen([*command, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def model(mode: str, *extra: str, cwd: Path = ROOT) -> str:
    """The scripted model as a user would type it from `cwd`: paths relative to there."""
    return f"cmd:{sys.executable} {os.path.relpath(SCRIPT, cwd)} {mode} {' '.join(extra)}".strip()


def one_object(stdout: str) -> dict:
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, stdout
    return json.loads(lines[0])


def processes_with(token: str) -> list[int]:
    """Live processes whose command line holds `token` (kagent's own too, while it runs)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if token.encode() in (entry / "cmdline").read_bytes():
                    stat = (entry / "stat").read_text()
                    if stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                        found.append(int(entry.name))
            except OSError:
                pass
    return found


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def no_orphans(token: str) -> None:
    deadline = time.monotonic() + 5
    while processes_with(token) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not processes_with(token), "a cmd: model process outlived kagent"


# ---------------------------------------------------------------- §1 paths


def test_readme_command_with_relative_paths_and_default_runs_dir(tmp_path, monkeypatch):
    """README: `kagent optimize tasks/01_relu.py --model cmd:...` with the default --runs-dir,
    then `--resume runs/<id>`, both with paths relative to where the user stands (here a
    directory outside the checkout; the README's own command, from the repository's root with
    its default runs/ there, is tests/test_example.py's), and every default as a user gets it
    (the suite's overrides in conftest.py cleared): the torch.compile baseline is measured and
    the fitness is the speedup over it."""
    monkeypatch.delenv("KAGENT_BASELINE")
    monkeypatch.delenv("KAGENT_STOP_AT_SOL")
    cwd = tmp_path / "work"
    cwd.mkdir()
    runs = cwd / "runs"
    before = set(runs.iterdir()) if runs.exists() else set()
    try:
        proc = kagent(["optimize", os.path.relpath(RELU, cwd), "--model", model("improve", cwd=cwd),
                       "--max-iters", "1"], cwd)
        assert proc.returncode == 0, proc.stderr[-3000:]
        (run_dir,) = set(runs.iterdir()) - before
        assert rows(run_dir, "SELECT verdict_status, verdict_reason FROM candidates") == [("correct", "ok")]
        ((vs_compile, compiled_ms, fitness),) = rows(
            run_dir, "SELECT json_extract(verdict_json, '$.speedup_vs_compile'), "
                     "json_extract(verdict_json, '$.compile_time_ms'), fitness FROM candidates")
        assert compiled_ms > 0 and fitness == pytest.approx(1 + vs_compile), (vs_compile, compiled_ms, fitness)
        # Not a terminal: one line per finished candidate.
        assert any(line.startswith("#1 correct ") and line.endswith("x") for line in proc.stderr.splitlines()), proc.stderr
        best = (run_dir / "best.py").read_text()
        assert "SLOWER than eager PyTorch" in best  # the draft repeats its work 8 times

        # Island 1 drafts again (a duplicate, no code); island 0 refines #1.
        proc = kagent(["optimize", "--resume", os.path.relpath(run_dir, cwd), "--max-iters", "3"], cwd)
        assert proc.returncode == 0, proc.stderr[-3000:]
        verdicts = rows(run_dir, "SELECT operation, verdict_status FROM candidates WHERE id > 1")
        assert ("refine", "correct") in verdicts, verdicts
    finally:
        for made in (set(runs.iterdir()) if runs.exists() else set()) - before:
            shutil.rmtree(made)


def test_batch_with_relative_paths_from_another_directory(tmp_path):
    (tmp_path / "mytasks").mkdir()
    shutil.copy(RELU, tmp_path / "mytasks" / "01_relu.py")
    proc = kagent(["batch", "mytasks", "--model", model("improve", cwd=tmp_path), "--max-iters", "1", "--json"],
                  tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (task,) = one_object(proc.stdout)["tasks"]
    assert task["status"] == "correct", task
    assert Path(task["run_dir"]).is_relative_to(tmp_path / "runs")


# ---------------------------------------------------------------- §2 harness errors


def test_ctrl_c_during_an_evaluation_is_an_error_and_resume_evaluates_it(tmp_path):
    proc = start(["optimize", os.path.relpath(RELU, tmp_path), "--model", model("dawdle", cwd=tmp_path),
                  "--max-iters", "1"], tmp_path)
    try:
        kernel = wait_for(lambda: next(tmp_path.glob("runs/*/candidates/0001.py"), None), 120, "the first kernel")
        time.sleep(3)  # building and running it: the evaluation takes well over 10 s
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-3000:]
    run_dir = kernel.parent.parent
    assert rows(run_dir, "SELECT status, verdict_status, verdict_reason, fitness, judge_json FROM candidates") == [
        ("evaluated", "error", "interrupted", None, None)]
    assert rows(run_dir, "SELECT count(*) FROM llm_calls WHERE role = 'judge'") == [(0,)]  # nothing to diagnose

    shown = kagent(["show", os.path.relpath(run_dir, tmp_path), "--candidate", "1", "--json"], tmp_path)
    assert one_object(shown.stdout)["verdict"]["status"] == "error"

    proc = kagent(["optimize", "--resume", os.path.relpath(run_dir, tmp_path), "--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert one_object(proc.stdout)["candidates"] == 1
    assert rows(run_dir, "SELECT verdict_status, verdict_reason FROM candidates") == [("correct", "ok")]


def test_a_candidate_that_died_shows_its_stderr_everywhere(tmp_path):
    proc = kagent(["optimize", os.path.relpath(RELU, tmp_path), "--model", model("crash", cwd=tmp_path),
                   "--max-iters", "1", "--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = os.path.relpath(one_object(proc.stdout)["run_dir"], tmp_path)
    progress = [line for line in proc.stderr.splitlines() if line.startswith("#1 ")]
    assert progress and progress[0].startswith("#1 runtime_error") and "kernel exploded: bad index" in progress[0]
    for args in (["show", run_dir], ["show", run_dir, "--candidate", "1"]):
        shown = kagent(args, tmp_path)
        assert shown.returncode == 0 and "kernel exploded: bad index" in shown.stdout, shown.stdout
    report = kagent(["report", run_dir, "-o", "report.html"], tmp_path)
    assert report.returncode == 0, report.stderr
    assert "kernel exploded: bad index" in (tmp_path / "report.html").read_text()


# ---------------------------------------------------------------- §2 provider failures


def test_a_cmd_model_that_does_not_exist_ends_the_run_with_its_error(tmp_path):
    args = ["optimize", os.path.relpath(RELU, tmp_path), "--model", "cmd:kagent-no-such-llm --temperature 0"]
    proc = kagent([*args, "--json"], tmp_path)
    assert proc.returncode == 3, proc.stderr[-3000:]
    summary = one_object(proc.stdout)
    assert summary["stop_reason"] == "provider_error"
    assert "kagent-no-such-llm" in summary["error"] and "127" in summary["error"]
    assert "kagent-no-such-llm" in proc.stderr and "Traceback" not in proc.stderr  # the live progress says it

    proc = kagent(args, tmp_path)
    assert proc.returncode == 3
    assert "stopped by provider_error" in proc.stdout and "error: cmd: 'kagent-no-such-llm" in proc.stdout


def test_an_unreachable_openai_server_ends_the_run_with_its_error(tmp_path):
    proc = kagent(["optimize", os.path.relpath(RELU, tmp_path), "--model", "openai:gpt-5",
                   "--base-url", "http://127.0.0.1:9/v1", "--json"], tmp_path)
    assert proc.returncode == 3, proc.stderr[-3000:]
    summary = one_object(proc.stdout)
    assert summary["stop_reason"] == "provider_error" and "cannot reach" in summary["error"]


def test_a_hung_cmd_model_times_out_per_call_and_leaves_no_process(tmp_path):
    token = f"hung-{uuid.uuid4().hex}"
    proc = kagent(["optimize", os.path.relpath(RELU, tmp_path), "--model", model("sleep", "600", token, cwd=tmp_path),
                   "--llm-timeout", "1", "--concurrency", "1", "--json"], tmp_path, timeout=120)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "gave no reply within 1s" in one_object(proc.stdout)["error"]
    no_orphans(token)


def test_time_limit_ends_hung_calls(tmp_path):
    token = f"hung-{uuid.uuid4().hex}"
    began = time.monotonic()
    proc = kagent(["optimize", os.path.relpath(RELU, tmp_path), "--model", model("sleep", "600", token, cwd=tmp_path),
                   "--time-limit", "3", "--json"], tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert one_object(proc.stdout)["stop_reason"] == "time_limit"
    assert time.monotonic() - began < 60
    no_orphans(token)


def test_ctrl_c_ends_hung_calls_and_a_running_run_cannot_be_resumed(tmp_path):
    token = f"hung-{uuid.uuid4().hex}"
    proc = start(["optimize", os.path.relpath(RELU, tmp_path), "--model", model("sleep", "600", token, cwd=tmp_path)],
                 tmp_path)
    try:
        wait_for(lambda: set(processes_with(token)) - {proc.pid}, 120, "the cmd: model to start")
        run_dir = os.path.relpath(next(tmp_path.glob("runs/*/archive.db")).parent, tmp_path)
        for extra, message in (([], "still running"), (["--model", "cmd:true"], "--model")):
            refused = kagent(["optimize", "--resume", run_dir, *extra], tmp_path)
            assert refused.returncode == 2 and message in refused.stderr, refused.stderr
            assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
        interrupted = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and time.monotonic() - interrupted < 15, err[-3000:]
    assert "Traceback" not in err
    no_orphans(token)


# ---------------------------------------------------------------- §2 option values


BAD_OPTIONS = [
    (["--max-iters", "0"], "--max-iters 0"),
    (["--concurrency", "-1"], "--concurrency -1"),
    (["--time-limit", "nan"], "--time-limit nan"),
    (["--device", "tpu"], "--device 'tpu'"),
    (["--backend", "fortran"], "--backend 'fortran'"),
    pytest.param(["--device", "cuda"], "--device cuda", marks=pytest.mark.skipif(gpu_available(), reason="a GPU")),
    pytest.param(["--backend", "cuda"], "--backend cuda", marks=pytest.mark.skipif(gpu_available(), reason="a GPU")),
]


@pytest.mark.parametrize("command", ["optimize", "batch"])
@pytest.mark.parametrize(("option", "named"), BAD_OPTIONS)
def test_an_invalid_option_is_one_line_exit_2_and_no_run_directory(tmp_path, command, option, named):
    target = os.path.relpath(RELU if command == "optimize" else TASKS, tmp_path)
    proc = kagent([command, target, "--model", "cmd:true", *option], tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert named in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_llm_timeout_is_checked_too(tmp_path):
    proc = kagent(["optimize", os.path.relpath(RELU, tmp_path), "--model", "cmd:true", "--llm-timeout", "0", "--json"],
                  tmp_path)
    assert proc.returncode == 2 and "--llm-timeout 0" in proc.stderr
    assert one_object(proc.stdout)["exit_code"] == 2  # --json: still exactly one object
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- §7 what a person sees


@pytest.fixture(scope="module")
def small_runs(tmp_path_factory) -> Path:
    """A directory holding runs/ with two short runs (the Coder writes no code: no evaluation)."""
    cwd = tmp_path_factory.mktemp("small")
    for _ in range(2):
        proc = kagent(["optimize", os.path.relpath(RELU, cwd), "--model", model("garbage", cwd=cwd),
                       "--max-iters", "1"], cwd)
        assert proc.returncode == 0, proc.stderr[-2000:]
    return cwd


def test_resume_refuses_options_it_would_ignore(small_runs):
    run_dir = os.path.relpath(next(small_runs.glob("runs/*/archive.db")).parent, small_runs)
    for extra, flag in (([os.path.relpath(RELU, small_runs)], "TASK"), (["--model", "cmd:true"], "--model"),
                        (["--backend", "cpp"], "--backend")):
        proc = kagent(["optimize", "--resume", run_dir, *extra], small_runs)
        assert proc.returncode == 2 and flag in proc.stderr and "leave them out" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_runs_fits_80_columns(small_runs):
    proc = kagent(["runs"], small_runs, columns=80)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert all(len(line.rstrip()) <= 80 for line in lines), proc.stdout
    for run_dir in small_runs.glob("runs/*/archive.db"):
        assert sum(run_dir.parent.name in line for line in lines) == 1  # whole, on one line


def test_eval_summary_fits_80_columns():
    proc = kagent(["eval", "tasks/01_relu.py", "tests/candidates/01_relu/cpp.py"], ROOT, columns=80)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert all(len(line.rstrip()) <= 80 for line in lines), proc.stdout
    timing = [line for line in lines if line.startswith("time reference / candidate")]
    assert len(timing) == 1 and timing[0].rstrip().endswith(" ms") and timing[0].count(" ms") == 2


@pytest.mark.parametrize("command", ["optimize", "batch", "eval", "runs", "show", "report"])
def test_flags_show_as_flags_in_help(command):
    proc = kagent([command, "--help"], ROOT)
    assert proc.returncode == 0 and "--help" in proc.stdout
    assert "<bool>" not in proc.stdout, proc.stdout


def test_patience_stops_a_run_without_progress(tmp_path):
    """The scripted Coder finds its best kernel on the second candidate and then only repeats
    it: with --patience 1 the run stops on the first candidate after the best, long before
    --max-iters."""
    proc = subprocess.run(
        [KAGENT, "optimize", "tasks/01_relu.py", "--model", f"cmd:{sys.executable} {SCRIPT} improve",
         "--max-iters", "8", "--concurrency", "1", "--patience", "1", "--runs-dir", str(tmp_path), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["stop_reason"] == "patience"
    assert summary["candidates"] < 8 and summary["best_candidate_id"] == summary["candidates"] - 1


def test_a_run_stops_at_the_speed_of_light(tmp_path):
    """--stop-at-sol: once the best kernel's sol_fraction reaches it, the run stops (here a
    bound every correct kernel reaches: the first one ends the run)."""
    proc = subprocess.run(
        [KAGENT, "optimize", "tasks/01_relu.py", "--model", f"cmd:{sys.executable} {SCRIPT} improve",
         "--max-iters", "6", "--concurrency", "1", "--stop-at-sol", "0.001", "--runs-dir", str(tmp_path), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["stop_reason"] == "speed_of_light" and summary["candidates"] == 1
    fraction = rows(summary["run_dir"], "SELECT json_extract(verdict_json, '$.sol_fraction') FROM candidates")[0][0]
    assert fraction >= 0.001


def test_stop_at_sol_defaults_to_0_8_and_0_turns_it_off(monkeypatch):
    """KernelEvolve's rule is on by default (0.8); `--stop-at-sol 0` (or KAGENT_STOP_AT_SOL=0, as
    this suite sets) turns it off, and a fraction above 1 is refused."""
    from pydantic import ValidationError

    from kagent.agent.config import RunConfig

    fields = {"task_path": str(RELU), "model": "cmd:true", "backend": "cpp", "device": "cpu"}
    monkeypatch.delenv("KAGENT_STOP_AT_SOL")
    monkeypatch.delenv("KAGENT_BASELINE")
    default = RunConfig(**fields)
    assert default.stop_at_sol == 0.8 and default.baseline == "compile"
    monkeypatch.setenv("KAGENT_STOP_AT_SOL", "0")
    assert not RunConfig(**fields).stop_at_sol
    assert RunConfig(**fields, stop_at_sol=0.5).stop_at_sol == 0.5  # a flag beats the environment
    with pytest.raises(ValidationError):
        RunConfig(**fields, stop_at_sol=1.5)
