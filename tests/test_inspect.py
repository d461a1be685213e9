"""`kagent runs` and `kagent show` on real runs made by `kagent optimize` with the scripted
`cmd:` model (tests/scripted_model.py) and the real sandbox."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, TASKS
from conftest import archive_rows as query

SCRIPT = Path(__file__).resolve().parent / "scripted_model.py"
RELU = str(TASKS / "01_relu.py")
IMPROVE = f"cmd:{sys.executable} {SCRIPT} improve"


def kagent(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kagent.agent.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=dict(os.environ))


def as_json(*args: str):
    proc = kagent(*args, "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # exited and reaped: no process has this pid now
    return child.pid


@pytest.fixture(scope="module")
def two_runs(improve_runs):
    """Two finished runs of the same task in one runs directory, oldest first (conftest.py)."""
    return improve_runs


def test_runs_lists_runs_newest_first(two_runs):
    runs_dir, (older, newer) = two_runs
    listed = as_json("runs", "--runs-dir", str(runs_dir))
    assert [r["run_id"] for r in listed] == [newer["run_id"], older["run_id"]]
    for row, summary in zip(listed, (newer, older)):
        assert row["run_dir"] == summary["run_dir"]
        assert row["task"] == "01_relu" and row["model"] == IMPROVE and row["judge_model"] == IMPROVE
        assert row["backend"] == "cpp" and row["device"] == "cpu"
        assert row["state"] == "finished" and row["stop_reason"] == "max_iters"
        assert row["candidates"] == summary["candidates"] == 3 and row["correct"] == summary["correct"]
        assert row["best_candidate_id"] == summary["best_candidate_id"]
        assert row["best_speedup"] == pytest.approx(summary["best_speedup"])
        assert row["tokens_in"] + row["tokens_out"] == summary["tokens"]
        assert row["cost_usd"] == summary["cost_usd"] == 0

    table = kagent("runs", "--runs-dir", str(runs_dir))
    assert table.returncode == 0, table.stderr
    lines = table.stdout
    assert lines.index(newer["run_id"]) < lines.index(older["run_id"])
    assert "finished" in lines and "max_iters" in lines and "01_relu" in lines


def test_a_run_on_another_host_is_not_called_crashed(two_runs, tmp_path):
    """A run a Ray worker executes elsewhere: its pid means nothing here, so the archive's
    `running` stands (with where it runs), while the same dead pid on this host is a crash."""
    runs_dir, (older, _) = two_runs
    elsewhere, here = tmp_path / "runs" / "elsewhere", tmp_path / "runs" / "here"
    pid = dead_pid()
    for copy, host in ((elsewhere, "gpu-node-7"), (here, socket.gethostname())):
        shutil.copytree(older["run_dir"], copy)
        with sqlite3.connect(copy / "archive.db") as db:
            db.execute("UPDATE runs SET state = 'running', stop_reason = NULL, pid = ?, host = ?", (pid, host))
    listed = {r["run_id"]: r for r in as_json("runs", "--runs-dir", str(tmp_path / "runs"))}
    assert listed["elsewhere"]["state"] == "running" and listed["here"]["state"] == "crashed"
    table = kagent("runs", "--runs-dir", str(tmp_path / "runs"))
    assert "on gpu-node-7" in table.stdout, table.stdout


def test_an_archive_from_before_the_host_column_is_still_read(two_runs, tmp_path):
    """Schema v1 archives (no runs.host) list and show as before; their pid is checked here."""
    runs_dir, (older, _) = two_runs
    old = tmp_path / "runs" / "old-run"
    shutil.copytree(older["run_dir"], old)
    with sqlite3.connect(old / "archive.db") as db:
        db.execute("ALTER TABLE runs DROP COLUMN host")
        db.execute("UPDATE runs SET state = 'running', pid = ?", (dead_pid(),))
        db.execute("PRAGMA user_version = 1")
    listed = as_json("runs", "--runs-dir", str(tmp_path / "runs"))
    assert [(r["run_id"], r["state"]) for r in listed] == [("old-run", "crashed")]
    assert as_json("show", "old-run", "--runs-dir", str(tmp_path / "runs"))["run"]["state"] == "crashed"


def test_a_running_run_whose_process_is_gone_shows_crashed(two_runs, tmp_path):
    runs_dir, (older, newer) = two_runs
    # In a batch directory, as `kagent batch` lays them out (batch-*/<task>/<run-id>/), or flat.
    batch = tmp_path / "runs" / "batch-0001"
    dead, alive = batch / "01_relu" / "dead-run", batch / "live-run"
    for copy, pid in ((dead, dead_pid()), (alive, os.getpid())):
        shutil.copytree(older["run_dir"], copy)
        with sqlite3.connect(copy / "archive.db") as db:
            db.execute("UPDATE runs SET state = 'running', stop_reason = NULL, pid = ?", (pid,))
    # A directory without an archive is not a run.
    (tmp_path / "runs" / "not-a-run").mkdir()

    listed = {r["run_id"]: r for r in as_json("runs", "--runs-dir", str(tmp_path / "runs"))}
    assert set(listed) == {"dead-run", "live-run"}
    assert listed["dead-run"]["state"] == "crashed" and listed["dead-run"]["archived_state"] == "running"
    assert listed["live-run"]["state"] == "running"
    assert listed["dead-run"]["batch"] == listed["live-run"]["batch"] == "batch-0001"
    assert listed["dead-run"]["run_dir"] == str(dead)

    table = kagent("runs", "--runs-dir", str(tmp_path / "runs"))
    assert table.returncode == 0 and "crashed" in table.stdout and "dead-run" in table.stdout
    shown = as_json("show", "dead-run", "--runs-dir", str(tmp_path / "runs"))
    assert shown["run"]["state"] == "crashed"
    # Looking did not change the archive: it still says running.
    assert query(dead, "SELECT state FROM runs") == [("running",)]


def test_show_json_matches_the_archive(two_runs):
    runs_dir, (older, newer) = two_runs
    archive = Path(newer["run_dir"]) / "archive.db"
    before = hashlib.sha256(archive.read_bytes()).hexdigest()
    shown = as_json("show", newer["run_id"], "--runs-dir", str(runs_dir))
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == before  # read-only

    run = shown["run"]
    assert run["run_id"] == newer["run_id"] and run["task"] == "01_relu" and run["model"] == IMPROVE
    assert run["backend"] == "cpp" and run["device"] == "cpu"
    assert run["state"] == "finished" and run["stop_reason"] == "max_iters"
    assert shown["totals"]["candidates"] == 3 and shown["totals"]["correct"] == newer["correct"]
    assert shown["best"] == {"candidate_id": newer["best_candidate_id"], "speedup": pytest.approx(newer["best_speedup"]),
                             "path": newer["best_path"]}

    rows = query(newer["run_dir"], "SELECT id, parent_id, operation, island, status, verdict_status, verdict_reason,"
                                   " speedup, fitness FROM candidates ORDER BY id")
    keys = ("id", "parent_id", "operation", "island", "status", "verdict_status", "reason", "speedup", "fitness")
    assert [tuple(c[k] for k in keys) for c in shown["candidates"]] == rows
    counts: dict[str, int] = {}
    for row in rows:
        counts[row[5] or row[4]] = counts.get(row[5] or row[4], 0) + 1
    assert shown["verdicts"] == counts

    # A run directory path works as well as an id.
    assert as_json("show", newer["run_dir"])["candidates"] == shown["candidates"]


def test_show_prints_summary_best_code_and_lineage_tree(two_runs):
    runs_dir, (older, newer) = two_runs
    proc = kagent("show", older["run_id"], "--runs-dir", str(runs_dir))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    ids = [row[0] for row in query(older["run_dir"], "SELECT id FROM candidates")]
    assert len(ids) == 3
    for cid in ids:
        assert f"#{cid} " in out
    assert "lineage" in out
    assert "class ModelNew" in out  # the best candidate's code
    assert "best.py" in out and "finished" in out and "max_iters" in out
    # Each refined candidate is drawn under its parent: on a later line, indented further.
    lines = out.splitlines()

    def tree_line(cid: int) -> tuple[int, int]:
        found = [(i, line.index(f"#{cid} ")) for i, line in enumerate(lines)
                 if re.search(rf"#{cid} (draft|refine|repair) ", line)]
        assert len(found) == 1, out
        return found[0]

    for cid, parent in query(older["run_dir"], "SELECT id, parent_id FROM candidates WHERE parent_id IS NOT NULL"):
        (child_row, child_col), (parent_row, parent_col) = tree_line(cid), tree_line(parent)
        assert parent_row < child_row and parent_col < child_col


def test_show_candidate_diffs_against_its_parent(two_runs):
    runs_dir, (older, newer) = two_runs
    cid, parent_id = query(older["run_dir"], "SELECT id, parent_id FROM candidates WHERE operation = 'refine'"
                                             " AND verdict_status = 'correct' ORDER BY id LIMIT 1")[0]
    source, judge = query(older["run_dir"], "SELECT source, judge_json FROM candidates WHERE id = ?", (cid,))[0]
    parent_source = query(older["run_dir"], "SELECT source FROM candidates WHERE id = ?", (parent_id,))[0][0]
    assert "r < repeat" in parent_source

    shown = as_json("show", older["run_dir"], "--candidate", str(cid))
    assert shown["id"] == cid and shown["parent_id"] == parent_id and shown["code"] == source
    diff = shown["diff"].splitlines()
    assert "-    for (int64_t r = 0; r < repeat; ++r)" in diff
    assert "+    #pragma omp parallel for simd schedule(static)" in diff
    assert "-        lib.relu(x, y, x.numel(), 8)" in diff and "+        lib.relu(x, y, x.numel())" in diff
    verdict = shown["verdict"]
    assert verdict["status"] == "correct" and verdict["reason"] == "ok" and verdict["message"]
    assert verdict["max_abs_error"] is not None and verdict["candidate_timing"]["runs"] > 0
    assert "notes" in verdict["artifacts"] and "resources" in verdict["artifacts"]
    assert shown["judge"] == json.loads(judge)

    proc = kagent("show", older["run_dir"], "--candidate", str(cid))
    assert proc.returncode == 0, proc.stderr
    assert f"diff against #{parent_id}" in proc.stdout
    assert "r < repeat" in proc.stdout and "#pragma omp parallel for simd" in proc.stdout
    assert "correct" in proc.stdout and "speedup" in proc.stdout and "diagnosis" in proc.stdout
    # The verdict in the one layout kagent eval prints too (present.print_verdict).
    assert "\ncorrect (ok) " in proc.stdout
    for row in ("backend / device", "input sets", "time reference / candidate", "candidate spread", "speedup",
                "evaluation took"):
        assert f"\n{row} " in proc.stdout, (row, proc.stdout)

    draft = as_json("show", older["run_dir"], "--candidate", str(parent_id))
    assert draft["parent_id"] is None and draft["diff"] is None and draft["operation"] == "draft"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "no-such-run"], "no run 'no-such-run'"),
        (["show", "{run}", "--candidate", "999"], "no candidate #999"),
        (["show", "{run}", "--candidate", "first"], "candidate id"),
        (["show", "{run}", "--candidate", "999", "--json"], "no candidate #999"),
        (["show", "{tmp}"], "not a run directory"),
        (["runs", "--runs-dir", "{tmp}/missing"], "no such runs directory"),
        (["runs", "--runs-dir", "{tmp}/missing", "--json"], "no such runs directory"),
    ],
)
def test_errors_are_one_line_exit_2(two_runs, tmp_path, args, message):
    runs_dir, (older, newer) = two_runs
    args = [a.format(run=older["run_id"], tmp=tmp_path) for a in args]
    if args[0] == "show":
        args += ["--runs-dir", str(runs_dir)]
    proc = kagent(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    if "--json" in args:  # stdout still holds exactly one object
        assert json.loads(proc.stdout) == {"error": proc.stderr.strip().removeprefix("error: "), "exit_code": 2}
    else:
        assert not proc.stdout


def test_empty_runs_dir_is_not_an_error(tmp_path):
    proc = kagent("runs", "--runs-dir", str(tmp_path))
    assert proc.returncode == 0 and "no runs" in proc.stdout and len(proc.stdout.strip().splitlines()) == 1
    assert as_json("runs", "--runs-dir", str(tmp_path)) == []


def test_reading_a_run_while_it_writes(tmp_path):
    """A run in progress is listed as running and can be shown; looking does not disturb it."""
    model = f"cmd:{sys.executable} {SCRIPT} sleep 0.5"
    writer = subprocess.Popen(
        [sys.executable, "-m", "kagent.agent.cli", "optimize", RELU, "--model", model, "--max-iters", "3",
         "--concurrency", "1", "--runs-dir", str(tmp_path), "--json"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    seen_running = shown = 0
    try:
        deadline = time.monotonic() + 240
        # A few looks while it runs: each is a `kagent` process of its own, and looking
        # non-stop would only slow the writer down on a loaded machine.
        while writer.poll() is None and time.monotonic() < deadline and shown < 3:
            listed = as_json("runs", "--runs-dir", str(tmp_path))
            if listed:
                assert len(listed) == 1 and listed[0]["pid"] == writer.pid
                if writer.poll() is None and listed[0]["archived_state"] == "running":
                    assert listed[0]["state"] == "running"  # never crashed while it lives
                    seen_running += 1
                    view = as_json("show", listed[0]["run_dir"])
                    assert len(view["candidates"]) == view["totals"]["candidates"]
                    shown += 1
        out, err = writer.communicate(timeout=240)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert writer.returncode == 0, err[-2000:]
    assert seen_running and shown
    summary = json.loads(out.strip().splitlines()[-1])
    final = as_json("runs", "--runs-dir", str(tmp_path))
    assert final[0]["state"] == "finished" and final[0]["candidates"] == summary["candidates"] == 3
