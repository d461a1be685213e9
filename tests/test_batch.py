"""`kagent batch`: end to end with the scripted `cmd:` model (tests/scripted_model.py) and the
real sandbox. The scripted model only ever writes a ReLU kernel: on the other tasks its
candidates are incorrect, so those tasks end `no_correct`."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kagent.agent.batch import find_tasks, optimize_task, work_dirs
from kagent.agent.batch_files import BatchOptions, BatchState, BatchTask, summarize
from kagent.agent.config import RunConfig
from conftest import ROOT, TASKS, first_evaluated_run
from conftest import archive_rows as rows

SCRIPT = Path(__file__).resolve().parent / "scripted_model.py"
BROKEN = "import torch\n\n\nclass Model(torch.nn.Module):\n    pass\n"  # no get_inputs / get_init_inputs
FAST_P = {"fast_1": 1.0, "fast_1_5": 1.5, "fast_2": 2.0}


def scripted(mode: str, *extra: str) -> str:
    return f"cmd:{sys.executable} {SCRIPT} {mode} {' '.join(extra)}".strip()


def kagent(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kagent.agent.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env or dict(os.environ))


def batch_json(*args: str) -> tuple[dict, subprocess.CompletedProcess]:
    proc = kagent("batch", *args, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0]), proc


def by_task(summary: dict) -> dict[str, dict]:
    return {t["task"]: t for t in summary["tasks"]}


def expected_aggregates(tasks: list[dict]) -> dict:
    n = len(tasks)
    correct = [t for t in tasks if t["status"] == "correct"]
    timed = [t["best_speedup"] for t in correct if t["best_speedup"] is not None]
    expected = {"correct_rate": len(correct) / n,
                "geomean_speedup": math.exp(sum(map(math.log, timed)) / len(timed)) if timed else None,
                "tokens": sum(t["tokens"] for t in tasks), "cost_usd": sum(t["cost_usd"] for t in tasks)}
    expected |= {key: sum(1 for s in timed if s > p) / n for key, p in FAST_P.items()}
    return expected


def check_aggregates(summary: dict) -> None:
    for key, value in expected_aggregates(summary["tasks"]).items():
        assert summary[key] == (pytest.approx(value) if value is not None else None), key


@pytest.fixture
def task_dir(tmp_path) -> Path:
    """Two real tasks (one in a subdirectory), a broken one, and files that are not tasks."""
    tasks = tmp_path / "tasks"
    (tasks / "sub").mkdir(parents=True)
    shutil.copy(TASKS / "01_relu.py", tasks / "01_relu.py")
    shutil.copy(TASKS / "03_sum_dim.py", tasks / "sub" / "03_sum_dim.py")
    (tasks / "02_broken.py").write_text(BROKEN)
    (tasks / "__init__.py").write_text("")
    (tasks / "_helpers.py").write_text("raise SystemExit('not a task')\n")
    (tasks / "README.md").write_text("# not a task\n")
    return tasks


# ---------------------------------------------------------------- end to end


def test_batch_runs_every_task_reports_and_resumes_to_nothing(task_dir, tmp_path):
    runs = tmp_path / "runs"
    summary, proc = batch_json(str(task_dir), "--model", scripted("improve"), "--max-iters", "2",
                               "--concurrency", "1", "--workers", "2", "--runs-dir", str(runs))
    batch_dir = Path(summary["batch_dir"])
    assert batch_dir.parent == runs and re.fullmatch(r"batch-\d{8}-\d{6}-[0-9a-f]{4}", batch_dir.name)
    assert {"tasks", "correct_rate", "fast_1", "fast_1_5", "fast_2", "geomean_speedup", "cost_usd", "tokens",
            "batch_dir"} <= set(summary)
    tasks = by_task(summary)
    assert list(tasks) == ["01_relu.py", "02_broken.py", "sub/03_sum_dim.py"]  # recursive, non-tasks skipped
    for task in summary["tasks"]:
        assert {"task", "status", "best_speedup", "run_dir", "candidates", "cost_usd", "error"} <= set(task)

    relu, broken, reduce = tasks["01_relu.py"], tasks["02_broken.py"], tasks["sub/03_sum_dim.py"]
    assert relu["status"] == "correct" and relu["best_speedup"] > 0 and relu["candidates"] == 2
    assert reduce["status"] == "no_correct" and reduce["best_speedup"] is None and reduce["candidates"] == 2
    for task in (relu, reduce):
        run_dir = Path(task["run_dir"])
        assert (run_dir / "archive.db").is_file() and batch_dir in run_dir.parents
        assert rows(run_dir, "SELECT count(*) FROM candidates")[0][0] == task["candidates"]
        assert task["error"] is None and task["tokens"] > 0
    assert relu["run_dir"] != reduce["run_dir"]
    assert broken["status"] == "task_error" and broken["run_dir"] is None and broken["candidates"] == 0
    assert "02_broken.py" in broken["error"] and "get_inputs" in broken["error"] and "\n" not in broken["error"]

    check_aggregates(summary)
    assert summary["correct_rate"] == pytest.approx(1 / 3)
    assert summary["tokens"] == relu["tokens"] + reduce["tokens"]

    # The same summary on disk, as JSON and CSV; progress went to stderr only.
    assert json.loads((batch_dir / "summary.json").read_text()) == summary
    with open(batch_dir / "summary.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["task"] for r in table] == list(tasks)
    for row in table:
        task = tasks[row["task"]]
        assert row["status"] == task["status"] and row["error"] == (task["error"] or "")
        assert row["run_dir"] == (task["run_dir"] or "") and int(row["candidates"]) == task["candidates"]
        assert (float(row["best_speedup"]) if row["best_speedup"] else None) == task["best_speedup"]
        assert float(row["cost_usd"]) == pytest.approx(task["cost_usd"])
    assert "start 01_relu.py" in proc.stderr and "task_error" in proc.stderr
    state = json.loads((batch_dir / "batch.json").read_text())
    assert state["state"] == "finished" and state["options"]["workers"] == 2
    assert {t["task"]: (t["status"], t["run_dir"], t["error"]) for t in state["tasks"]} == {
        name: (t["status"], t["run_dir"], t["error"]) for name, t in tasks.items()}

    # Resuming a finished batch redoes nothing.
    def snapshot():
        files = sorted(str(p.relative_to(batch_dir)) for p in batch_dir.rglob("*")
                       if p.name not in ("batch.json", "summary.json", "summary.csv"))
        archives = {t["task"]: (os.stat(Path(t["run_dir"]) / "archive.db").st_mtime_ns,
                                rows(t["run_dir"], "SELECT * FROM candidates"),
                                rows(t["run_dir"], "SELECT * FROM llm_calls"))
                    for t in (relu, reduce)}
        return files, archives

    before = snapshot()
    again, _ = batch_json("--resume", str(batch_dir))
    after = snapshot()
    assert set(after[0]) ^ set(before[0]) == set()
    assert after == before
    assert again == summary


def test_sigkill_then_resume_finishes_the_rest(tmp_path):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    shutil.copy(TASKS / "01_relu.py", tasks / "01_relu.py")
    shutil.copy(TASKS / "03_sum_dim.py", tasks / "03_sum_dim.py")
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kagent.agent.cli", "batch", str(tasks), "--model", scripted("sleep", "1"), "--max-iters",
         "2", "--concurrency", "1", "--workers", "1", "--runs-dir", str(runs), "--json"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run_dir = first_evaluated_run(runs, "batch-*/01_relu/*/archive.db", proc, timeout_s=180)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert run_dir is not None
    batch_dir = run_dir.parent.parent
    state = json.loads((batch_dir / "batch.json").read_text())
    assert [t["status"] for t in state["tasks"]] == ["running", "pending"]  # killed in the middle of the first
    # id, code and verdict: the best's timing fields are re-measured at the end of the run
    kept = "SELECT id, source_hash, verdict_status, verdict_reason FROM candidates"
    before = rows(run_dir, kept + " WHERE status = 'evaluated'")
    assert before

    summary, proc = batch_json("--resume", str(batch_dir))
    assert "resume 01_relu.py" in proc.stderr and "start 03_sum_dim.py" in proc.stderr
    tasks_done = by_task(summary)
    relu, reduce = tasks_done["01_relu.py"], tasks_done["03_sum_dim.py"]
    assert relu["status"] == "correct" and relu["run_dir"] == str(run_dir) and relu["candidates"] == 2
    assert list((batch_dir / "01_relu").iterdir()) == [run_dir]  # continued, not restarted
    after = rows(run_dir, kept)
    assert all(row in after for row in before)
    coder = [c[0] for c in rows(run_dir, "SELECT candidate_id FROM llm_calls"
                                         " WHERE role = 'coder' AND reply IS NOT NULL")]
    assert len(coder) == len(set(coder))  # no candidate asked the Coder twice
    assert reduce["status"] == "no_correct" and reduce["candidates"] == 2
    check_aggregates(summary)
    assert json.loads((batch_dir / "batch.json").read_text())["state"] == "finished"


def test_overall_cost_budget_skips_the_remaining_tasks(task_dir, tmp_path):
    (task_dir / "02_broken.py").unlink()
    model = scripted("improve")
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({model: [1_000_000.0, 1_000_000.0]}))  # a dollar a token
    summary, proc = batch_json(str(task_dir), "--model", model, "--max-iters", "3", "--concurrency", "1",
                               "--workers", "1", "--max-cost", "1", "--prices", str(prices),
                               "--runs-dir", str(tmp_path / "runs"))
    relu, reduce = summary["tasks"]
    # The first task got the whole budget as its cap: one candidate spent it.
    assert relu["task"] == "01_relu.py" and relu["candidates"] == 1 and relu["cost_usd"] > 1
    assert relu["status"] == "correct"
    assert reduce["status"] == "skipped" and reduce["run_dir"] is None and reduce["candidates"] == 0
    assert "max-cost" in reduce["error"]
    assert not (Path(summary["batch_dir"]) / "sub--03_sum_dim").exists()
    assert summary["cost_usd"] == pytest.approx(relu["cost_usd"]) and summary["correct_rate"] == 0.5
    check_aggregates(summary)
    config = json.loads((Path(relu["run_dir"]) / "config.json").read_text())
    assert config["max_cost"] == 1.0

    # Resumed with the same budget, the skipped task stays skipped and nothing runs.
    again, _ = batch_json("--resume", summary["batch_dir"])
    assert [(t["status"], t["candidates"]) for t in again["tasks"]] == [("correct", 1), ("skipped", 0)]


# ---------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda d: [str(d / "nosuch"), "--model", "cmd:true"], "no such directory"),
        (lambda d: [str(d / "empty"), "--model", "cmd:true"], "no task files"),
        (lambda d: [str(d / "tasks"), "--model", "nosuch:model"], "unknown provider"),
        (lambda d: [str(d / "tasks"), "--model", "openai:gpt-5"], "OPENAI_API_KEY"),
        (lambda d: [str(d / "tasks"), "--model", "cmd:true", "--workers", "0"], "--workers"),
        (lambda d: [str(d / "tasks"), "--model", "cmd:true", "--task-max-cost", "0"], "--task-max-cost"),
        (lambda d: ["--resume", str(d / "tasks")], "not a batch directory"),
    ],
)
def test_usage_errors_fail_with_one_line_before_anything_runs(task_dir, tmp_path, make_args, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("# no tasks here\n")
    (empty / "__init__.py").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    proc = kagent("batch", *make_args(tmp_path), "--runs-dir", str(tmp_path / "runs"), env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not proc.stdout
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- pieces


def test_find_tasks_is_recursive_and_skips_non_tasks(task_dir, tmp_path):
    (task_dir / ".hidden").mkdir()
    (task_dir / ".hidden" / "x.py").write_text(BROKEN)
    run_dir = task_dir / "runs" / "some-run"  # a runs directory kept among the tasks
    (run_dir / "candidates").mkdir(parents=True)
    (run_dir / "archive.db").write_text("")
    (run_dir / "candidates" / "0001.py").write_text(BROKEN)
    found = [p.relative_to(task_dir).as_posix() for p in find_tasks(task_dir)]
    assert found == ["01_relu.py", "02_broken.py", "sub/03_sum_dim.py"]
    assert work_dirs(["a/b.py", "a--b.py", "c.py"]) == ["a--b", "a--b-2", "c"]


def test_aggregates_follow_kernelbench():
    options = BatchOptions(task_dir="/t", model="cmd:true", backend="cpp", device="cpu")

    def task(name, status, speedup=None, tokens=10, cost=0.5):
        return BatchTask(task=name, task_path=f"/t/{name}", work_dir=name, status=status, best_speedup=speedup,
                         correct=int(status == "correct"), tokens=tokens, cost_usd=cost)

    state = BatchState(batch_id="b", created_at="", updated_at="", options=options, tasks=[
        task("a.py", "correct", 2.5), task("b.py", "correct", 1.2), task("c.py", "correct", 1.0),
        task("d.py", "correct", None),  # correct, timing not meaningful: correct but not fast
        task("e.py", "no_correct"), task("f.py", "task_error", tokens=0, cost=0.0),
        task("g.py", "skipped", tokens=0, cost=0.0), task("h.py", "interrupted"),
    ])
    summary = summarize(state, Path("/runs/b"))
    assert summary["correct_rate"] == 4 / 8
    assert summary["fast_1"] == 2 / 8  # 1.0x is not faster than eager
    assert summary["fast_1_5"] == 1 / 8 and summary["fast_2"] == 1 / 8
    assert summary["geomean_speedup"] == pytest.approx((2.5 * 1.2 * 1.0) ** (1 / 3))
    assert summary["tokens"] == 60 and summary["cost_usd"] == pytest.approx(3.0)
    check_aggregates(summary)
    state.tasks = [task("e.py", "no_correct"), task("d.py", "correct", None)]
    summary = summarize(state, Path("/runs/b"))
    assert summary["geomean_speedup"] is None and summary["fast_1"] == 0 and summary["correct_rate"] == 0.5


def test_optimize_task_reports_a_broken_task(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text(BROKEN)
    config = RunConfig(task_path=str(broken), model="cmd:true", backend="cpp", device="cpu",
                       runs_dir=str(tmp_path / "runs"))
    result = optimize_task(config.model_dump_json(), None)
    assert result["error_kind"] == "task_error" and result["run_dir"] is None
    assert str(broken) in result["error"] and "get_inputs" in result["error"]
    assert not (tmp_path / "runs").exists()


def test_aggregates_against_torch_compile():
    """fast_p and the geomean against torch.compile sit beside the eager ones; a task whose
    reference did not compile (no speedup_vs_compile) is correct but not fast against it."""
    options = BatchOptions(task_dir="/t", model="cmd:true", backend="cpp", device="cpu")

    def task(name, eager, vs_compile):
        return BatchTask(task=name, task_path=f"/t/{name}", work_dir=name, status="correct", best_speedup=eager,
                         best_speedup_vs_compile=vs_compile, correct=1)

    state = BatchState(batch_id="b", created_at="", updated_at="", options=options, tasks=[
        task("a.py", 4.0, 1.6), task("b.py", 3.0, 0.9), task("c.py", 2.5, None), task("d.py", 1.1, 2.2)])
    summary = summarize(state, Path("/runs/b"))
    assert (summary["fast_1"], summary["fast_2"]) == (4 / 4, 3 / 4)
    assert summary["fast_1_vs_compile"] == 2 / 4 and summary["fast_1_5_vs_compile"] == 2 / 4
    assert summary["fast_2_vs_compile"] == 1 / 4
    assert summary["geomean_speedup_vs_compile"] == pytest.approx((1.6 * 0.9 * 2.2) ** (1 / 3))
    assert summary["tasks"][2]["best_speedup_vs_compile"] is None


def test_fitness_follows_the_chosen_baseline():
    from kagent.agent.selection import fitness
    from kagent.sandbox.models import Verdict

    fast_vs_eager = Verdict(status="correct", reason="ok", message="", backend="cpp", device="cpu", speedup=3.0,
                            speedup_vs_compile=0.8, timing_meaningful=True)
    fast_vs_compile = fast_vs_eager.model_copy(update={"speedup": 2.0, "speedup_vs_compile": 1.4})
    assert fitness(fast_vs_compile, "compile") > fitness(fast_vs_eager, "compile")
    assert fitness(fast_vs_eager, "eager") > fitness(fast_vs_compile, "eager")
    no_compile = fast_vs_eager.model_copy(update={"speedup_vs_compile": None})
    assert fitness(no_compile, "compile") == fitness(no_compile, "eager") == 4.0  # compile failed: eager it is
