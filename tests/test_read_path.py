"""The seams a newcomer reads through: one read-only way into a run's archive, one resolver for
run arguments, "best" defined once, and the scripted provider (a Provider a test scripts with
`enqueue()` and reads back through `history`) driving a real Run against the real sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, TASKS
from scripted_model import FAST, ScriptedProvider

from kagent.agent import loop
from kagent.agent.archive import Archive, RunRecord
from kagent.agent.best import best_candidate
from kagent.agent.config import RunConfig
from kagent.agent.locate import resolve_run
from kagent.errors import UsageError

RELU = str(TASKS / "01_relu.py")


def kagent(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kagent.agent.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=dict(os.environ))


def empty_run(run_dir: Path) -> Path:
    with Archive.open(run_dir, create=True) as archive:
        archive.create_run(RunRecord(id=run_dir.name, task_path=RELU, task_name="01_relu", model="cmd:true",
                                     backend="cpp", device="cpu"))
    return run_dir


def test_a_readonly_archive_refuses_writes_and_leaves_the_file_alone(tmp_path):
    run = empty_run(tmp_path / "run")
    before = (run / "archive.db").read_bytes(), (run / "archive.db").stat().st_mtime_ns
    with Archive.open(run, readonly=True) as archive, archive.snapshot():
        assert archive.run().id == "run" and archive.candidates() == [] and archive.totals().candidates == 0
        with pytest.raises(Exception, match="readonly"):
            archive.add_candidate(iteration=0, island=0, operation="draft")
    assert ((run / "archive.db").read_bytes(), (run / "archive.db").stat().st_mtime_ns) == before
    with pytest.raises(UsageError, match="no run archive"):
        Archive.open(tmp_path / "nothing", readonly=True)


def test_every_command_resolves_a_run_inside_a_batch_by_its_id_prefix(tmp_path):
    """`show`, `report` and `replay:` take the same run argument: a unique start of an id,
    found in a batch directory too."""
    runs = tmp_path / "runs"
    run = empty_run(runs / "batch-20250101-000000-ab12" / "01_relu" / "20250101-000000-01_relu-cd34")
    empty_run(runs / "20250101-000000-other-ef56")
    assert resolve_run("20250101-000000-01", runs) == ("run", run)
    with pytest.raises(UsageError, match="not a run or batch directory"):  # no summary.json yet
        resolve_run(str(run.parent.parent), runs, batches=True)
    with pytest.raises(UsageError, match="names 2 runs"):
        resolve_run("20250101-000000", runs)
    shown = kagent("show", "20250101-000000-01", "--runs-dir", str(runs), "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["run"]["run_dir"] == str(run)
    out = tmp_path / "r.html"
    reported = kagent("report", "20250101-000000-01", "--runs-dir", str(runs), "-o", str(out))
    assert reported.returncode == 0, reported.stderr
    assert "01_relu" in out.read_text()


def test_best_is_the_highest_fitness_then_the_earliest(tmp_path):
    """One definition, used by the archive's totals and by the loop alike."""
    from types import SimpleNamespace as C

    records = [C(id=1, verdict_status="incorrect", fitness=0.4), C(id=2, verdict_status="correct", fitness=2.5),
               C(id=3, verdict_status="correct", fitness=2.5), C(id=4, verdict_status="correct", fitness=1.2)]
    assert best_candidate(records).id == 2
    assert best_candidate(reversed(records)).id == 2
    assert best_candidate(records[:1]) is None


def test_the_scripted_provider_drives_a_run(tmp_path):
    """A Run built with ScriptedProvider as Coder and Judge: the queued kernel is evaluated by
    the real sandbox, the Judge's queued answer is archived, and `history` holds both requests."""
    coder = ScriptedProvider().enqueue("coder", f"Idea: vectorise\n\n```python\n{FAST}```")
    judge = ScriptedProvider().enqueue("judge", json.dumps({
        "kind": "bottleneck", "diagnosis": "memory bound", "recommendation": "fuse", "confidence": 0.7}))
    config = RunConfig(task_path=RELU, model="scripted:coder", backend="cpp", device="cpu", max_iters=1,
                       concurrency=1, runs_dir=str(tmp_path))
    run_dir = tmp_path / "run"
    archive = Archive.open(run_dir, create=True)
    archive.create_run(RunRecord(id="run", task_path=RELU, task_name="01_relu", model=config.model,
                                 backend="cpp", device="cpu"))
    run = loop.Run(config, run_dir, archive, coder, judge)
    try:
        assert run.run() == "max_iters"
    finally:
        run.close()
    (record,) = archive.candidates()
    assert record.verdict_status == "correct", record.message
    assert record.judge["diagnosis"] == "memory bound"
    assert [role for role, _ in coder.history] == ["coder"] and [role for role, _ in judge.history] == ["judge"]
    assert "01_relu.py" in coder.history[0][1][-1].content
    assert "status: correct" in judge.history[0][1][-1].content
    with pytest.raises(Exception, match="no coder reply queued"):
        coder.complete("coder", coder.history[0][1])
    archive.close()
