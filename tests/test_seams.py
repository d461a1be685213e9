"""The seams a newcomer extends in one file: a toy provider, backend, executor and selection
policy, each one new class plus one registry line, accepted by the command line, its validation
and its help; and `--config FILE`, the nested TOML tree `optimize` and `batch` share.

The command line runs as a user runs it (a subprocess, relative paths, default flags); where a
toy must be registered first, the subprocess registers it and then calls the console script's
`main()`. The LLM is the scripted `cmd:` model; every verdict comes from the real sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, TASKS
from conftest import archive_rows as rows

SCRIPT = Path(__file__).resolve().parent / "scripted_model.py"

# What a user's plugin module would hold: one class per seam, one registry line each.
TOYS = '''
import json, os, sys
from kagent.agent.executors import EXECUTORS, Executor
from kagent.agent.providers import PROVIDERS
from kagent.agent.selection import POLICIES, Choice, SelectionPolicy
from kagent.sandbox.backends import BACKENDS, Backend
from kagent.sandbox.supervisor import Sandbox


class ToyBackend(Backend):
    name = "toy"
    markers = ("load_toy",)
    devices = ("cpu",)


class ToyExecutor(Executor):
    name = "toy"

    def evaluate(self, request, timeout_s):
        with open(os.environ["TOY_LOG"], "a") as log:
            log.write(request.candidate_path + "\\n")
        with Sandbox(self.device, root=self.root) as sandbox:
            return sandbox.evaluate(request, timeout_s=timeout_s)


class ToyPolicy(SelectionPolicy):
    name = "toy"

    def choose(self, records, iteration):
        done = [r for r in records if r.verdict_status == "correct"]
        if done:
            return Choice("refine", 0, max(done, key=lambda r: r.id).id)
        return Choice("draft", 0, None)


BACKENDS["toy"] = ToyBackend()
PROVIDERS["toy"] = "toy_provider:ToyProvider"  # imported only when chosen or described
EXECUTORS["toy"] = ToyExecutor
POLICIES["toy"] = ToyPolicy

from kagent.agent.cli import main
sys.argv = ["kagent", *sys.argv[1:]]
main()
'''


# A provider in a file of its own, as a newcomer writes agent/providers/<name>.py.
TOY_PROVIDER = '''
from kagent.agent.providers.command import CommandProvider


class ToyProvider(CommandProvider):
    name = "toy"
    form = "toy:COMMAND"
    summary = "a command, by another name"
'''


def kagent(args: list[str], cwd: Path, toys: bool = False, env: dict | None = None,
           timeout: float = 900) -> subprocess.CompletedProcess:
    """The console script (or, with `toys`, the toys registered first, then its main(); the toy
    provider's file is written to `cwd`, where `python -c` finds it)."""
    if toys:
        (cwd / "toy_provider.py").write_text(TOY_PROVIDER)
    command = [sys.executable, "-c", TOYS] if toys else [str(Path(sys.executable).parent / "kagent")]
    return subprocess.run([*command, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


def model(mode: str, cwd: Path, provider: str = "cmd") -> str:
    return f"{provider}:{sys.executable} {os.path.relpath(SCRIPT, cwd)} {mode}"


def one_object(stdout: str) -> dict:
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, stdout
    return json.loads(lines[0])


def saved_config(run_dir: str) -> dict:
    return json.loads(rows(run_dir, "SELECT config_json FROM runs")[0][0])


def error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# ---------------------------------------------------------------- --config


def test_config_file_sets_a_run_and_flags_override_it(tmp_path):
    """A nested TOML file, relative paths taken from its own directory, sets every section;
    a flag overrides its key; the resolved configuration is saved in the run's archive."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "run.toml").write_text(f'''
task = "{os.path.relpath(TASKS / "01_relu.py", conf)}"
runs_dir = "out"

[models]
coder = "{model("improve", tmp_path)}"
llm_timeout_s = 120

[budget]
max_iters = 5

[search]
concurrency = 1
islands = 1
elite_size = 2
migration_interval = 0
max_repairs = 1
seed = 7

[sandbox]
backend = "cpp"
device = "cpu"
eval_timeout_s = 200
cache_dir = "cache"

[executor]
name = "local"
''')
    result = kagent(["optimize", "--config", "conf/run.toml", "--max-iters", "2", "--json"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = one_object(result.stdout)
    assert summary["candidates"] == 2 and summary["correct"] >= 1
    assert Path(summary["run_dir"]).parent == conf / "out"  # runs_dir: relative to the file
    config = saved_config(summary["run_dir"])
    assert config["max_iters"] == 2  # the flag won
    assert (config["islands"], config["elite_size"], config["migration_interval"], config["max_repairs"],
            config["seed"], config["concurrency"], config["eval_timeout_s"], config["llm_timeout_s"]) == (
        1, 2, 0, 1, 7, 1, 200, 120)
    # The environment overrides the file's cache directory, and the run says which one it used.
    assert config["cache_dir"] == os.environ.get("KAGENT_CACHE_DIR", str(conf / "cache"))
    # One island: the second candidate refines the first (two islands would draft again).
    assert rows(summary["run_dir"], "SELECT operation, parent_id FROM candidates ORDER BY id")[1] == ("refine", 1)


@pytest.mark.parametrize("command", ["optimize", "batch"])
@pytest.mark.parametrize("text, message", [
    ('[budget]\nmax_iter = 3\n', "cfg.toml: unknown key 'budget.max_iter'"),
    ('[budgets]\nmax_iters = 3\n', "cfg.toml: unknown section 'budgets'"),
    ('colour = "red"\n', "cfg.toml: unknown key 'colour'"),
    ('[budget]\nmax_iters = 0\n', "cfg.toml: invalid budget.max_iters 0: Input should be greater than or equal to 1"),
    ('[search]\nislands = "two"\n', "cfg.toml: invalid search.islands two: Input should be a valid integer"),
    ('[sandbox]\nbackend = "fortran"\n', "cfg.toml: invalid sandbox.backend fortran: unknown backend 'fortran': choose one of triton, cuda, cpp"),
    ('[executor]\nname = "slurm"\n', "cfg.toml: invalid executor.name slurm: unknown executor 'slurm'"),
    ('[budget\n', "cfg.toml: not a valid TOML file"),
])
def test_config_file_errors_name_the_file_and_key(tmp_path, command, text, message):
    (tmp_path / "cfg.toml").write_text(text)
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "01_relu.py").write_text((TASKS / "01_relu.py").read_text())
    target = "tasks/01_relu.py" if command == "optimize" else "tasks"
    result = kagent([command, target, "--config", "cfg.toml", "--model", "cmd:true", "--json"], cwd=tmp_path)
    line = error_line(result)
    assert line.startswith(f"error: {tmp_path / message.split(':')[0]}") and message.split(": ", 1)[1] in line, line
    assert one_object(result.stdout)["error"].startswith(str(tmp_path / "cfg.toml"))
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command, target", [("optimize", "tasks/01_relu.py"), ("batch", "tasks")])
def test_invalid_values_are_one_line_naming_the_option(tmp_path, command, target):
    """The same options, defaults and validation in both commands: one line, no pydantic link."""
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "01_relu.py").write_text((TASKS / "01_relu.py").read_text())
    for flags, message in ((["--concurrency", "0"], "invalid --concurrency 0: Input should be greater than or equal to 1"),
                           (["--executor", "slurm"], "invalid --executor slurm: unknown executor 'slurm': choose one of local, ray"),
                           (["--baseline", "fast"], "invalid --baseline fast: Input should be 'eager' or 'compile'")):
        result = kagent([command, target, "--model", "cmd:true", "--backend", "cpp", "--device", "cpu", *flags],
                        cwd=tmp_path)
        assert error_line(result) == f"error: {message}"
        assert "pydantic" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_resume_refuses_a_config_file(tmp_path):
    (tmp_path / "cfg.toml").write_text("[budget]\nmax_iters = 3\n")
    (tmp_path / "run").mkdir()
    for command in ("optimize", "batch"):
        line = error_line(kagent([command, "--resume", "run", "--config", "cfg.toml"], cwd=tmp_path))
        assert "--resume continues" in line and "--config" in line


def test_resume_finds_runs_and_batches_by_id(tmp_path):
    """`optimize --resume` and `batch --resume` name what they continue as `show` and `report`
    do (agent/locate.py): by the start of its id under the default runs directory; a batch's
    task run is found by its id too."""
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "relu.py").write_text((TASKS / "01_relu.py").read_text())
    target = ["--model", model("improve", tmp_path), "--backend", "cpp", "--device", "cpu", "--max-iters", "1", "--json"]
    first = kagent(["optimize", "tasks/relu.py", *target], cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    run_dir = Path(one_object(first.stdout)["run_dir"])
    assert run_dir.parent == tmp_path / "runs"
    resumed = kagent(["optimize", "--resume", run_dir.name[:-1], "--max-iters", "2", "--json"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    summary = one_object(resumed.stdout)
    assert Path(summary["run_dir"]) == run_dir and summary["candidates"] == 2

    batch = kagent(["batch", "tasks", *target], cwd=tmp_path)
    assert batch.returncode == 0, batch.stderr
    batch_id = one_object(batch.stdout)["batch_id"]
    again = kagent(["batch", "--resume", "batch-", "--json"], cwd=tmp_path)  # the one batch under runs/
    assert again.returncode == 0, again.stderr
    assert one_object(again.stdout)["batch_id"] == batch_id
    task_run = next((tmp_path / "runs" / batch_id).glob(f"*/*/archive.db")).parent
    inside = kagent(["optimize", "--resume", task_run.name, "--max-iters", "2", "--json"], cwd=tmp_path)
    assert inside.returncode == 0, inside.stderr
    assert Path(one_object(inside.stdout)["run_dir"]) == task_run


@pytest.mark.parametrize("command, what", [("optimize", "run"), ("batch", "batch")])
def test_resume_of_nothing_is_one_line(tmp_path, command, what):
    (tmp_path / "runs" / "batch-1" / "relu").mkdir(parents=True)
    line = error_line(kagent([command, "--resume", "nosuch", "--json"], cwd=tmp_path))
    assert line == f"error: nosuch: no such {what} (not a directory, and no {what} 'nosuch' under {tmp_path / 'runs'}" + (
        f": see kagent runs --runs-dir {tmp_path / 'runs'})" if what == "run" else ")")
    # A directory that is not one: named, with what it lacks.
    wanted = "not a run directory (no archive.db)" if what == "run" else "not a batch directory (no batch.json)"
    assert error_line(kagent([command, "--resume", "runs/batch-1/relu"], cwd=tmp_path)).endswith(wanted)


def test_old_batch_options_still_load():
    """batch.json written before the batch section (flat options, max_cost the batch's) reads
    as the same options, so such a batch can be resumed."""
    from kagent.agent.batch_files import BatchOptions

    old = {"task_dir": "/t", "model": "cmd:true", "backend": "cpp", "device": "cpu", "max_iters": None,
           "time_limit_s": None, "task_max_cost": 0.5, "concurrency": None, "llm_timeout_s": None,
           "stop_at_sol": None, "patience": 4, "baseline": "eager", "max_cost": 3.0, "workers": 3,
           "executor": "local", "ray_address": None, "prices": {}}
    options = BatchOptions.model_validate(old)
    assert (options.batch.task_dir, options.batch.workers, options.batch.max_cost) == ("/t", 3, 3.0)
    assert (options.max_cost, options.patience, options.max_iters, options.baseline) == (0.5, 4, 10, "eager")
    assert BatchOptions.model_validate_json(options.model_dump_json()) == options


# ---------------------------------------------------------------- registries


def test_a_toy_backend_is_one_class_and_one_registry_line(tmp_path, monkeypatch):
    from kagent.agent.config import RunConfig
    from kagent.agent.options import choose_target
    from kagent.agent.prompts import backend_guide
    from kagent.sandbox import guard
    from kagent.sandbox.backends import BACKENDS, Backend, detect_backend
    from kagent.sandbox.models import EvalRequest

    class ToyBackend(Backend):
        name = "toy"
        markers = ("load_toy",)
        devices = ("cpu",)
        candidate_imports = {"kagent.sandbox.backends.toy": frozenset({"load_toy"})}

    source = "from kagent.sandbox.backends.toy import load_toy\n"
    assert guard.scan_source(source, "c.py") is not None  # before: kagent is off limits
    monkeypatch.setitem(BACKENDS, "toy", ToyBackend())
    assert detect_backend(source) == "toy"
    assert guard.scan_source(source, "c.py") is None  # the guard's allow-list reads the registry
    assert guard.scan_source("from kagent.sandbox.backends.toy import BACKENDS\n", "c.py") is not None
    assert choose_target("toy", None) == ("toy", "cpu")
    assert RunConfig(task_path="t.py", model="cmd:true", backend="toy", device="cpu").backend == "toy"
    assert EvalRequest(task_path="t", candidate_path="c", backend="toy", device="cpu").backend == "toy"
    for command in ("optimize", "batch"):
        result = kagent([command, "--help"], cwd=tmp_path, toys=True)
        assert "triton, cuda, cpp or toy" in " ".join(result.stdout.replace("│", " ").split())
    # No prompt file: the Coder's guide is the generic one, rendered from what the class declares.
    assert not (ROOT / "prompts" / "backend_toy.md").exists()
    guide = backend_guide(BACKENDS["toy"])
    assert guide.startswith("# Backend: `toy`")
    assert "`load_toy`" in guide and "It runs on: cpu." in guide
    assert "`from kagent.sandbox.backends.toy import load_toy`" in guide
    # The registered backends keep their own guides.
    assert backend_guide(BACKENDS["cpp"]).startswith("# Backend: C++ on the CPU")
    # Validation on the command line accepts it: the run fails later, on --max-iters.
    result = kagent(["optimize", str(TASKS / "01_relu.py"), "--model", "cmd:true", "--backend", "toy",
                     "--max-iters", "0"], cwd=tmp_path, toys=True)
    assert error_line(result) == "error: invalid --max-iters 0: Input should be greater than or equal to 1"


def test_a_toy_provider_is_one_file_and_one_registry_line(tmp_path, monkeypatch):
    """The registry line names "module:Class"; the module is imported when the provider is
    chosen or described, and one that cannot be is one error line naming --model."""
    from kagent.agent.providers import PROVIDERS, make_provider, parse_model_spec, providers_help
    from kagent.errors import ConfigError

    (tmp_path / "toy_provider.py").write_text(TOY_PROVIDER)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(PROVIDERS, "toy", "toy_provider:ToyProvider")
    assert parse_model_spec("toy:echo hi") == ("toy", "echo hi")
    provider = make_provider("toy:echo hi")
    assert type(provider).__name__ == "ToyProvider" and provider.name == "toy"
    assert "toy:COMMAND      a command, by another name" in providers_help().splitlines()
    monkeypatch.setitem(PROVIDERS, "toy", "toy_missing:ToyProvider")
    with pytest.raises(ConfigError, match=r"^--model toy:\.\.\.: provider toy_missing:ToyProvider cannot be loaded"):
        make_provider("toy:echo hi")


def test_a_toy_executor_and_a_toy_provider_run_a_run(tmp_path):
    """`--executor toy` (its evaluate logs each candidate, then asks a sandbox for the verdict)
    and `--model toy:...` (a cmd: provider by another name) run a whole optimize run."""
    log = tmp_path / "evaluations.log"
    task = os.path.relpath(TASKS / "01_relu.py", tmp_path)
    help_text = kagent(["optimize", "--help"], cwd=tmp_path, toys=True).stdout
    assert "local, ray or toy" in " ".join(help_text.replace("│", " ").split())
    assert "cmd, replay, toy" in help_text
    (tmp_path / "cfg.toml").write_text("[search]\nislands = 1\n")  # the second candidate refines: a new source
    result = kagent(["optimize", task, "--config", "cfg.toml", "--model", model("improve", tmp_path, "toy"),
                     "--executor", "toy", "--backend", "cpp", "--device", "cpu", "--max-iters", "2", "--concurrency",
                     "1", "--json"], cwd=tmp_path, toys=True, env={"TOY_LOG": str(log)})
    assert result.returncode == 0, result.stderr
    summary = one_object(result.stdout)
    assert summary["candidates"] == 2 and summary["correct"] >= 1
    # Every evaluation went through the toy executor (the best may be timed once more at the end).
    assert len(set(log.read_text().splitlines())) == 2
    config = saved_config(summary["run_dir"])
    assert config["executor"] == "toy" and config["model"].startswith("toy:")


def test_a_toy_executor_runs_a_batch(tmp_path):
    """`kagent batch --executor toy`: whole tasks through the interface's submit_task (threads,
    by default), their evaluations through the toy's evaluate."""
    log = tmp_path / "evaluations.log"
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "relu.py").write_text((TASKS / "01_relu.py").read_text())
    result = kagent(["batch", "tasks", "--model", model("improve", tmp_path), "--executor", "toy", "--backend", "cpp",
                     "--device", "cpu", "--max-iters", "1", "--json"], cwd=tmp_path, toys=True, env={"TOY_LOG": str(log)})
    assert result.returncode == 0, result.stderr
    summary = one_object(result.stdout)
    assert summary["correct_rate"] == 1.0
    assert len(set(log.read_text().splitlines())) == 1


def test_a_toy_selection_policy_picks_the_parents(tmp_path):
    """`[search] policy = "toy"`: the toy always refines the latest correct candidate, where the
    default island policy (two islands) drafts again on the second island."""
    (tmp_path / "cfg.toml").write_text('[search]\npolicy = "toy"\nconcurrency = 1\n')
    task = os.path.relpath(TASKS / "01_relu.py", tmp_path)
    result = kagent(["optimize", task, "--config", "cfg.toml", "--model", model("improve", tmp_path), "--backend", "cpp",
                     "--device", "cpu", "--max-iters", "3", "--json"], cwd=tmp_path, toys=True)
    assert result.returncode == 0, result.stderr
    summary = one_object(result.stdout)
    picks = rows(summary["run_dir"], "SELECT operation, parent_id FROM candidates ORDER BY id")
    assert picks == [("draft", None), ("refine", 1), ("refine", 2)]
    assert saved_config(summary["run_dir"])["policy"] == "toy"


def test_the_default_policy_comes_from_the_registry():
    from kagent.agent.config import RunConfig
    from kagent.agent.selection import IslandPolicy, make_policy

    policy = make_policy(RunConfig(task_path="t.py", model="cmd:true", backend="cpp", device="cpu", islands=3,
                                   elite_size=5, migration_interval=2, max_repairs=0, seed=9))
    assert isinstance(policy, IslandPolicy)
    assert (policy.num_islands, policy.elite_size, policy.migration_interval, policy.max_repairs, policy.seed) == (
        3, 5, 2, 0, 9)
    with pytest.raises(ValueError, match="unknown selection policy 'greedy'"):
        RunConfig(task_path="t.py", model="cmd:true", backend="cpp", device="cpu", policy="greedy")
