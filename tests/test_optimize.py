"""End-to-end tests of `kagent optimize` with a scripted `cmd:` model (tests/scripted_model.py)
and the real sandbox: nothing but the LLM is fake."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, TASKS, first_evaluated_run
from conftest import archive_rows as rows

SCRIPT = Path(__file__).resolve().parent / "scripted_model.py"
RELU = str(TASKS / "01_relu.py")


def scripted(mode: str, *extra: str) -> str:
    return f"cmd:{sys.executable} {SCRIPT} {mode} {' '.join(extra)}".strip()


def kagent(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kagent.agent.cli", *args], capture_output=True, text=True, timeout=timeout,
        cwd=ROOT, env={**os.environ, **(env or {})},
    )


def optimize_json(*args: str, **kwargs) -> dict:
    proc = kagent("optimize", *args, "--json", **kwargs)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


def test_run_improves_over_iterations(improve_runs):
    # `optimize tasks/01_relu.py --model <scripted improve> --max-iters 3 --concurrency 1 --json` (conftest.py)
    summary = improve_runs[1][1]
    assert {"run_id", "run_dir", "stop_reason", "candidates", "correct", "best_candidate_id", "best_speedup",
            "best_path", "tokens", "cost_usd"} <= set(summary)
    assert summary["stop_reason"] == "max_iters" and summary["candidates"] == 3
    run_dir = summary["run_dir"]
    candidates = rows(run_dir, "SELECT id, parent_id, operation, verdict_status, speedup FROM candidates ORDER BY id")
    first, *later = candidates
    assert first[2] == "draft" and first[3] == "correct"
    refined = [c for c in later if c[2] == "refine" and c[3] == "correct"]
    assert refined, candidates
    # The refined kernel drops the slow draft's 8x repeat loop: it must time faster.
    assert max(c[4] for c in refined) > first[4]
    assert summary["best_candidate_id"] in {c[0] for c in refined}
    best = Path(summary["best_path"]).read_text()
    assert best.startswith("# kagent best kernel") and "class ModelNew" in best and "speedup:" in best
    assert (Path(run_dir) / "config.json").is_file()
    # Every prompt and reply is archived; the Judge's malformed first answer was retried.
    calls = rows(run_dir, "SELECT role, reply, input_tokens, tokens_estimated FROM llm_calls ORDER BY id")
    assert [c[0] for c in calls].count("coder") == 3
    assert any(c[0] == "judge" and "{" not in (c[1] or "") for c in calls)
    assert all(c[2] > 0 and c[3] == 1 for c in calls)
    feedback = rows(run_dir, "SELECT judge_json FROM candidates WHERE id = %d" % first[0])[0][0]
    assert "repeat loop" in json.loads(feedback)["diagnosis"]


def test_garbage_replies_cost_attempts_not_the_run(tmp_path):
    summary = optimize_json(RELU, "--model", scripted("garbage"), "--max-iters", "2", "--runs-dir", str(tmp_path))
    assert summary["candidates"] == 2 and summary["correct"] == 0
    assert summary["best_speedup"] is None and summary["best_path"] is None
    statuses = rows(summary["run_dir"], "SELECT status, message FROM candidates")
    assert all(s == "no_code" and "no Python code" in m for s, m in statuses)


def test_failing_provider_stops_the_run_cleanly(tmp_path):
    proc = kagent("optimize", RELU, "--model", scripted("fail"), "--max-iters", "10", "--concurrency", "1",
                  "--runs-dir", str(tmp_path), "--json")
    assert proc.returncode == 3, proc.stderr[-2000:]  # ended by its provider: not a completed run
    summary = json.loads(proc.stdout)
    assert summary["stop_reason"] == "provider_error" and "scripted failure" in summary["error"]
    errors = rows(summary["run_dir"], "SELECT error FROM llm_calls")
    assert len(errors) == 3 and all("exit" in e[0] for e in errors)


def test_cost_budget_stops_the_run(tmp_path):
    model = scripted("improve")
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({model: [1_000_000.0, 1_000_000.0]}))  # a dollar a token
    summary = optimize_json(RELU, "--model", model, "--max-iters", "5", "--max-cost", "1", "--concurrency", "1",
                            "--prices", str(prices), "--runs-dir", str(tmp_path))
    assert summary["stop_reason"] == "max_cost"
    assert summary["candidates"] == 1 and summary["cost_usd"] > 1


def test_sigkill_then_resume_loses_and_repeats_nothing(tmp_path):
    args = [RELU, "--model", scripted("sleep", "1.5"), "--max-iters", "4", "--concurrency", "1",
            "--runs-dir", str(tmp_path), "--json"]
    proc = subprocess.Popen([sys.executable, "-m", "kagent.agent.cli", "optimize", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run_dir = first_evaluated_run(tmp_path, "*/archive.db", proc, timeout_s=120)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert run_dir is not None
    # id, code and verdict: the best's timing fields are re-measured at the end of the run
    kept = "SELECT id, source_hash, verdict_status, verdict_reason FROM candidates"
    before = rows(str(run_dir), kept + " WHERE status = 'evaluated'")
    assert before

    summary = optimize_json("--resume", str(run_dir))
    assert summary["run_dir"] == str(run_dir) and summary["candidates"] == 4
    after = rows(str(run_dir), kept)
    for row in before:
        assert row in after  # finished candidates are kept as they were
    coder_calls = rows(str(run_dir), "SELECT candidate_id FROM llm_calls WHERE role = 'coder' AND reply IS NOT NULL")
    ids = [c[0] for c in coder_calls]
    assert len(ids) == len(set(ids))  # no candidate asked the Coder twice
    assert rows(str(run_dir), "SELECT state FROM runs")[0][0] == "finished"


def test_replay_reproduces_a_run(improve_runs, tmp_path):
    first = improve_runs[1][0]  # the older of the session's scripted runs (conftest.py)
    again = optimize_json(RELU, "--model", f"replay:{first['run_dir']}", "--max-iters", "3", "--concurrency", "1",
                          "--runs-dir", str(tmp_path / "b"))
    query = "SELECT operation, source_hash, verdict_status FROM candidates ORDER BY id"
    assert rows(again["run_dir"], query) == rows(first["run_dir"], query)
    assert again["correct"] == first["correct"] and again["cost_usd"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "nosuch:model"], "unknown provider"),
        (["--model", "openai:gpt-5"], "OPENAI_API_KEY"),
        (["--model", "anthropic:claude-sonnet-4-5"], "ANTHROPIC_API_KEY"),
        (["--model", "cmd:true", "--backend", "fortran"], "invalid --backend 'fortran'"),
    ],
)
def test_bad_options_fail_with_one_line(tmp_path, args, message):
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    proc = subprocess.run([sys.executable, "-m", "kagent.agent.cli", "optimize", RELU, *args, "--runs-dir", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing ran


def test_malformed_task_fails_before_anything_runs(tmp_path):
    task = tmp_path / "bad_task.py"
    task.write_text("import torch\nclass Model(torch.nn.Module):\n    pass\n")
    proc = kagent("optimize", str(task), "--model", "cmd:true", "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 2
    assert "bad_task.py" in proc.stderr and "get_inputs" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_ctrl_c_stops_quickly_and_resume_finishes(tmp_path):
    args = [RELU, "--model", scripted("sleep", "2"), "--max-iters", "4", "--concurrency", "2", "--runs-dir", str(tmp_path)]
    proc = subprocess.Popen([sys.executable, "-m", "kagent.agent.cli", "optimize", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(tmp_path.glob("*/archive.db")):
        time.sleep(0.2)
    time.sleep(3)  # LLM calls and an evaluation in flight
    interrupted = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and time.monotonic() - interrupted < 15
    assert "--resume" in err and "Traceback" not in err
    run_dir = next(tmp_path.glob("*/archive.db")).parent
    assert rows(str(run_dir), "SELECT state, stop_reason FROM runs") == [("stopped", "interrupted")]

    summary = optimize_json("--resume", str(run_dir))
    assert summary["candidates"] == 4 and summary["stop_reason"] == "max_iters"
    assert rows(str(run_dir), "SELECT count(*) FROM candidates WHERE status = 'pending'") == [(0,)]
