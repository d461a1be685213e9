"""Shared fixtures: one warm CPU sandbox for the whole test session (real worker processes,
real verdicts: nothing about a sandbox result is faked)."""

from __future__ import annotations

import os
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kagent.sandbox.backends import detect_backend
from kagent.sandbox.supervisor import Sandbox
from kagent.sandbox.models import EvalRequest, Verdict

ROOT = Path(__file__).resolve().parent.parent
TASKS = ROOT / "tasks"
CANDIDATES = Path(__file__).resolve().parent / "candidates"


def archive_rows(run_dir: str | Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of a query on a run's archive.db, read with a connection of its own."""
    db = sqlite3.connect(Path(run_dir) / "archive.db")
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def first_evaluated_run(root: Path, pattern: str, proc: subprocess.Popen, timeout_s: float) -> Path | None:
    """Poll while `proc` runs for a run directory (root.glob(pattern) finds its archive.db)
    with an evaluated candidate: the moment to kill a run mid-way. Its directory, or the last
    one seen (None if none) when time is up or the process ended."""
    deadline = time.monotonic() + timeout_s
    run_dir = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = list(root.glob(pattern))
        if found:
            run_dir = found[0].parent
            try:
                if archive_rows(run_dir, "SELECT count(*) FROM candidates WHERE status = 'evaluated'")[0][0] >= 1:
                    return run_dir
            except sqlite3.OperationalError:  # the file exists, its tables not yet
                pass
        time.sleep(0.2)
    return run_dir


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    # A private build cache per test session: no test depends on a build left by another run.
    os.environ["KAGENT_CACHE_DIR"] = str(tmp_path_factory.mktemp("kagent-cache"))
    # Two defaults the suite turns off (agent/config.py): compiling every task's reference with
    # torch.compile costs tens of seconds per sandbox, and stopping at 0.8 of the speed of light
    # ends the runs whose candidates tests count. tests/test_compiled.py and the README's command
    # (tests/test_optimize_cli.py) run with both as a user gets them.
    os.environ["KAGENT_BASELINE"], os.environ["KAGENT_STOP_AT_SOL"] = "eager", "0"
    # The Ctrl-C tests send SIGINT to kagent as a terminal would. A suite started in the
    # background (`nohup`, `&` in a script) inherits SIGINT ignored, and an ignored signal stays
    # ignored across exec, so kagent would never see it; a handled one is reset to the default.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def improve_runs(_cache_dir, tmp_path_factory) -> tuple[Path, list[dict]]:
    """Two finished runs of `kagent optimize tasks/01_relu.py` with the scripted `improve` model
    (3 candidates, concurrency 1) in one runs directory: (runs_dir, [older, newer] --json
    summaries). Made once per session for every test that reads such a run (test_inspect,
    test_optimize, test_report); they must copy a run before changing it."""
    runs_dir = tmp_path_factory.mktemp("improve-runs")
    model = f"cmd:{sys.executable} {Path(__file__).resolve().parent / 'scripted_model.py'} improve"
    summaries = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-m", "kagent.agent.cli", "optimize", str(TASKS / "01_relu.py"),
                               "--model", model, "--max-iters", "3", "--concurrency", "1", "--runs-dir", str(runs_dir),
                               "--json"], capture_output=True, text=True, timeout=300, cwd=ROOT, env=dict(os.environ))
        assert proc.returncode == 0, proc.stderr[-2000:]
        lines = proc.stdout.strip().splitlines()
        assert len(lines) == 1, proc.stdout
        summaries.append(json.loads(lines[0]))
        time.sleep(1.1)  # run ids and start times have one-second resolution
    return runs_dir, summaries


@pytest.fixture(scope="session")
def cpu_sandbox(_cache_dir, tmp_path_factory):
    with Sandbox("cpu", root=tmp_path_factory.mktemp("sandbox")) as sandbox:
        yield sandbox


@pytest.fixture(scope="session")
def evaluate(cpu_sandbox):
    """evaluate(task, candidate_path_or_source, backend=None, timeout=60) -> Verdict.
    `task` is a file under tasks/ (by name) or a path; a candidate given as source text is
    written to a temporary file first."""
    counter = iter(range(10**6))

    def run(task, candidate, backend: str | None = None, timeout: float = 60, tmp_dir: Path | None = None,
            **request_fields) -> Verdict:
        task_path = TASKS / task if isinstance(task, str) and not os.path.isabs(task) else Path(task)
        if isinstance(candidate, str) and "\n" in candidate:
            directory = tmp_dir or cpu_sandbox.root
            path = Path(directory) / f"candidate_{next(counter)}.py"
            path.write_text(candidate)
            candidate = path
        candidate = Path(candidate)
        request = EvalRequest(
            task_path=str(task_path), candidate_path=str(candidate.resolve()),
            backend=backend or detect_backend(candidate.read_text()), device="cpu", **request_fields,
        )
        return cpu_sandbox.evaluate(request, timeout_s=timeout)

    return run
