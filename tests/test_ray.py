"""The Ray executor on a local two-CPU Ray instance (started once for this module): the same
verdicts and the same archive as the local executor, errors that come back as themselves, and
no API keys in the Ray workers that host sandboxes."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install ray; it is in the test extra)")

from conftest import CANDIDATES, ROOT, TASKS  # noqa: E402

from kagent.agent.executors.ray import RayExecutor  # noqa: E402
from kagent.errors import TaskError  # noqa: E402
from kagent.sandbox.models import EvalRequest  # noqa: E402

SCRIPT = Path(__file__).resolve().parent / "scripted_model.py"
RELU = TASKS / "01_relu.py"
FAKE_KEY = "sk-kagent-test-not-a-real-key"


@pytest.fixture(scope="module")
def executor(_cache_dir):
    """A RayExecutor that starts the module's local Ray instance, with an API key in the
    driver's environment that must not reach the evaluation workers."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OPENAI_API_KEY", FAKE_KEY)
        executor = RayExecutor("cpu", 2, None, num_cpus=2)
        try:
            yield executor
        finally:
            executor.close()
    assert not ray.is_initialized()  # it started the instance, so it stopped it


def request(task: Path, candidate: Path) -> EvalRequest:
    return EvalRequest(task_path=str(task), candidate_path=str(candidate), backend="cpp", device="cpu")


@pytest.mark.parametrize("candidate", ["cpp.py", "broken_compile.py"])
def test_verdicts_match_the_local_sandbox(executor, cpu_sandbox, candidate):
    req = request(RELU, CANDIDATES / "01_relu" / candidate)
    remote = executor.evaluate(req, timeout_s=120)
    local = cpu_sandbox.evaluate(req, timeout_s=120)
    assert (remote.status, remote.reason) == (local.status, local.reason)
    assert (remote.backend, remote.device, remote.input_sets) == (local.backend, local.device, local.input_sets)
    if candidate == "cpp.py":
        assert remote.status == "correct" and remote.speedup is not None
    else:
        assert remote.status == "compile_error" and remote.artifacts.compile_log


def test_task_errors_come_back_as_task_errors(executor, cpu_sandbox, tmp_path):
    malformed = tmp_path / "not_a_task.py"
    malformed.write_text("x = 1\n")
    candidate = CANDIDATES / "01_relu" / "cpp.py"
    for task in (malformed, tmp_path / "missing.py"):
        req = request(task, candidate)
        with pytest.raises(TaskError) as remote:
            executor.evaluate(req, timeout_s=60)
        with pytest.raises(TaskError) as local:
            cpu_sandbox.evaluate(req, timeout_s=60)
        assert type(remote.value) is TaskError
        assert str(remote.value) == str(local.value)  # names the driver's path, not the worker's copy
        assert str(task) in str(remote.value)


def test_no_api_keys_in_ray_workers(executor):
    read_environ = ray.remote(Path.read_bytes)
    proc_environ = Path("/proc/self/environ")
    assert os.environ["OPENAI_API_KEY"] == FAKE_KEY
    # Workers of the evaluation pool, and any worker of the local instance, start without it.
    evaluation = ray.remote(os.getenv).options(**executor._eval_options)
    assert ray.get(evaluation.remote("OPENAI_API_KEY")) in (None, "")
    assert FAKE_KEY.encode() not in ray.get(read_environ.options(**executor._eval_options).remote(proc_environ))
    assert ray.get(ray.remote(os.getenv).remote("OPENAI_API_KEY")) is None
    assert FAKE_KEY.encode() not in ray.get(read_environ.remote(proc_environ))
    # A batch task runs LLM calls: it gets the provider key for the duration of the task.
    assert executor.submit_task(os.getenv, "OPENAI_API_KEY").result(timeout=60) == FAKE_KEY


def test_submit_task_reports_failures(executor):
    future = executor.submit_task(int, "not a number")
    with pytest.raises(ValueError):
        future.result(timeout=60)


def optimize(executor_name: str, runs_dir: Path, *extra: str) -> str:
    import subprocess

    model = f"cmd:{sys.executable} {SCRIPT} improve"
    proc = subprocess.run(
        [sys.executable, "-m", "kagent.agent.cli", "optimize", str(RELU), "--model", model, "--max-iters", "3",
         "--concurrency", "1", "--runs-dir", str(runs_dir), "--executor", executor_name, *extra, "--json"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout  # Ray writes nothing on stdout
    return json.loads(lines[0])["run_dir"]


def archive(run_dir: str) -> tuple[list[tuple], dict]:
    with sqlite3.connect(Path(run_dir) / "archive.db") as db:
        candidates = db.execute(
            "SELECT id, iteration, island, parent_id, inspiration_ids, operation, source_hash, status, "
            "verdict_status, verdict_reason FROM candidates ORDER BY id").fetchall()
        config = json.loads(db.execute("SELECT config_json FROM runs").fetchone()[0])
    return candidates, config


def test_optimize_archive_matches_the_local_executor(executor, improve_runs, tmp_path):
    address = ray.get_runtime_context().gcs_address  # the CLI joins this module's instance
    # the local run: this optimize() with the default executor, made once per session (conftest.py)
    local, local_config = archive(improve_runs[1][0]["run_dir"])
    remote, remote_config = archive(optimize("ray", tmp_path / "ray", "--ray-address", address))
    assert (local_config["executor"], remote_config["executor"]) == ("local", "ray")
    assert remote_config["ray_address"] == address
    assert len(local) == len(remote) == 3
    assert remote == local  # structure, sources and verdicts; speedups differ and are not compared
    assert {c[8] for c in remote if c[7] == "evaluated"} == {"correct"}
    assert ray.is_initialized()  # the CLI left the instance it joined running


def test_an_unreachable_cluster_fails_fast(executor):
    from kagent.agent.executors.ray import _reachable

    assert _reachable(ray.get_runtime_context().gcs_address)
    assert not _reachable("127.0.0.1:1")  # ray.init would retry for minutes: a ConfigError at once
    assert _reachable("auto")  # left to Ray
