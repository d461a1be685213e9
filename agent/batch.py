"""`kagent batch`: optimize every task in a directory, several at once, into one batch directory.

    runs/batch-<timestamp>-<4hex>/
        batch.json          the batch's state: its options and, per task, status and run (rewritten
                            atomically whenever something changes, so a killed batch can resume)
        <task>/<run-id>/    each task's run directory (the same layout as `kagent optimize`)
        summary.json        the final summary (what --json prints)
        summary.csv         one row per task

One task = one `optimize_task(config_json, resume_dir)` call: a plain top-level function, handed
to the executor's `submit_task`, so that it runs in a thread of this process (`--executor local`)
or as a Ray task (`--executor ray`; the runs' evaluations then go to Ray too, and `--runs-dir`
must be on a filesystem the nodes share). The batch process only schedules, keeps batch.json and prints
progress on stderr. Runs in threads share this process's devices (agent.executors.local): their
LLM calls overlap, their evaluations take turns, one at a time on a CPU and one per GPU.

Options: those of `kagent optimize` (agent.options), from flags or a `--config` file (its
[batch] section: workers, max_cost); BatchOptions is each task's RunConfig plus that section.
Budgets: --max-iters, --time-limit, --task-max-cost and --concurrency apply to each task's run;
--max-cost caps the whole batch: once the batch's spend reaches it, tasks not yet started are
`skipped`, and a task that starts gets at most what is left as its own cost cap. With several
workers, tasks already running may together overshoot what was left by the time they finish.

The batch's files (batch.json, the summary and its aggregates) are `agent.batch_files`.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from kagent.agent import options as opt
from kagent.agent.batch_files import (BATCH_FILE, DONE, STATUS_STYLE, BatchOptions, BatchState, BatchTask, load_state, now,
                               print_summary, speedup_text, summarize, write_atomic, write_summary)
from kagent.agent.config import BatchSection, FileValues, RunConfig, load_config, load_prices
from kagent.agent.console import console, err_console, fail
from kagent.agent.executors import Executor, executor_class, make_executor
from kagent.agent.options import BATCH_FLAGS, absolute, choose_target, invalid_option, merge, run_flags
from kagent.agent.locate import resolve_batch
from kagent.errors import KagentError, TaskError, UsageError, one_line
from kagent.sandbox import pid_alive

POLL_S = 1.0  # how often the scheduler looks for new run directories while tasks run

# Set when the batch is interrupted: runs in this process stop taking new candidates.
_STOP = threading.Event()


# ---------------------------------------------------------------- tasks


def find_tasks(task_dir: Path) -> list[Path]:
    """Task files under `task_dir`, recursively, in a stable order: `*.py`, except `__init__.py`
    and files (or directories) whose name starts with `_` or `.`, and nothing inside a run or
    batch directory (a runs directory kept among the tasks holds candidates, not tasks)."""
    outputs: dict[Path, bool] = {}

    def is_output(directory: Path) -> bool:
        if directory not in outputs:
            outputs[directory] = (directory / "archive.db").exists() or (directory / BATCH_FILE).exists()
        return outputs[directory]

    found = []
    for path in task_dir.rglob("*.py"):
        rel = path.relative_to(task_dir)
        if any(part.startswith(("_", ".")) for part in rel.parts) or not path.is_file():
            continue
        if any(is_output(task_dir.joinpath(*rel.parts[:i])) for i in range(1, len(rel.parts))):
            continue
        found.append(path)
    return sorted(found, key=lambda p: p.relative_to(task_dir).as_posix())


def work_dirs(rels: list[str]) -> list[str]:
    """One directory name per task (sub/03_sum.py -> sub--03_sum), unique within the batch."""
    names, seen = [], set()
    for rel in rels:
        base = rel[:-3].replace("/", "--") if rel.endswith(".py") else rel.replace("/", "--")
        name, n = base, 1
        while name in seen:
            n += 1
            name = f"{base}-{n}"
        seen.add(name)
        names.append(name)
    return names


def _stop_when_asked(run) -> None:
    if _STOP.is_set():
        run.stop_reason = run.stop_reason or "interrupted"


# What a resumed task's run takes from the batch rather than from its archived config.
RESUME_OVERRIDES = ("max_iters", "max_cost", "time_limit_s", "concurrency", "llm_timeout_s", "stop_at_sol",
                    "patience", "executor", "ray_address")


def optimize_task(config_json: str, resume_dir: str | None) -> dict:
    """Optimize one task, as `kagent optimize` does (or `kagent optimize --resume resume_dir`).
    Returns the run's RunSummary.as_json(), or an error dict {"error": one line, "error_kind":
    "task_error" (a broken task file) or "error", "run_dir": the run's directory or None}.
    A plain top-level function of plain arguments, so that Ray can ship it."""
    from kagent.agent import loop
    from kagent.agent.config import RunConfig

    config = RunConfig.model_validate_json(config_json)
    config.apply_environment()  # a Ray task on another node: the batch's sandbox settings there too
    run = None
    try:
        if resume_dir:
            run = loop.reopen(Path(resume_dir), {key: getattr(config, key) for key in RESUME_OVERRIDES})
        else:
            run = loop.start(config)
        run.on_update = _stop_when_asked
        if resume_dir:
            run.resume_pending()
        stop_reason = run.run()
        return loop.summarize(run, stop_reason).as_json()
    except (KagentError, OSError) as err:
        if run is not None:
            run.archive.set_state("crashed", one_line(err, 1000))
        return {"error": one_line(err, 1000), "error_kind": "task_error" if isinstance(err, TaskError) else "error",
                "run_dir": str(run.run_dir) if run is not None else None}
    finally:
        if run is not None:
            run.close()
            run.archive.close()


def _valid_run_dir(run_dir: Path) -> bool:
    from kagent.agent.archive import Archive

    try:
        with Archive.open(run_dir, create=False) as archive:
            archive.run()
        return True
    except (KagentError, sqlite3.Error, OSError):
        return False


def _read_totals(run_dir: Path):
    from kagent.agent.archive import Archive

    try:
        with Archive.open(run_dir, create=False) as archive:
            return archive.totals()
    except (KagentError, sqlite3.Error, OSError):
        return None


# ---------------------------------------------------------------- the batch


class Batch:
    def __init__(self, batch_dir: Path, state: BatchState, template, progress: Console = err_console):
        self.dir = batch_dir.resolve()
        self.state = state
        self.template = template  # a validated RunConfig: every task's options but its path
        self.progress = progress
        self.executor: Executor | None = None  # where whole tasks run (its submit_task)
        self.submit = None  # submit(task_fn, *args) -> Future

    @property
    def options(self) -> BatchOptions:
        return self.state.options

    def save(self) -> None:
        self.state.updated_at = now()
        write_atomic(self.dir / BATCH_FILE, self.state.model_dump_json(indent=2) + "\n")

    def say(self, text: str) -> None:
        self.progress.print(text, highlight=False, soft_wrap=True)

    # -- one task ---------------------------------------------------------------------------

    def find_run_dir(self, task: BatchTask) -> str | None:
        """The task's run directory: the one recorded, or the newest usable one in its work dir."""
        if task.run_dir and _valid_run_dir(Path(task.run_dir)):
            return task.run_dir
        found = sorted((self.dir / task.work_dir).glob("*/archive.db"), reverse=True)
        return next((str(db.parent) for db in found if _valid_run_dir(db.parent)), None)

    def refresh(self, task: BatchTask) -> None:
        """Read an unfinished task's numbers from its archive (what it has spent so far)."""
        run_dir = task.run_dir or self.find_run_dir(task)
        totals = _read_totals(Path(run_dir)) if run_dir else None
        if totals is None:
            return
        task.run_dir = run_dir
        task.candidates, task.correct = totals.candidates, totals.correct
        task.best_speedup, task.best_speedup_vs_compile = totals.best_speedup, totals.best_speedup_vs_compile
        task.tokens, task.cost_usd = totals.tokens_in + totals.tokens_out, totals.cost_usd

    def spent(self, running: list[BatchTask]) -> float:
        for task in running:
            self.refresh(task)
        return sum(task.cost_usd for task in self.state.tasks)

    def config_json(self, task: BatchTask, cost_cap: float | None) -> str:
        from kagent.agent.config import RunConfig

        fields = self.template.model_dump() | {
            "task_path": task.task_path, "runs_dir": str(self.dir / task.work_dir), "max_cost": cost_cap,
        }
        return RunConfig.model_validate(fields).model_dump_json()

    def start(self, task: BatchTask, running: list[BatchTask], submit) -> Future | None:
        """Start `task`, or skip it when the batch's budget is spent. Returns its future."""
        resume_dir = self.find_run_dir(task) if task.status in ("running", "interrupted") else None
        if resume_dir:
            task.run_dir = resume_dir
            self.refresh(task)
        cap = self.options.max_cost
        if self.options.batch.max_cost is not None:
            left = self.options.batch.max_cost - self.spent(running)
            if left <= 0:
                note = f"not started: the batch's --max-cost ${self.options.batch.max_cost:g} was spent"
                if resume_dir:  # a started task keeps its partial run
                    task.status, task.error = "interrupted", note.replace("not started", "not resumed")
                else:
                    task.status, task.error = "skipped", note
                self.save()
                self.say(f"[yellow]{task.status}[/] {escape(task.task)}: {escape(task.error)}")
                return None
            cap = min(cap, task.cost_usd + left) if cap is not None else task.cost_usd + left
        config_json = self.config_json(task, cap)
        task.status, task.error, task.started_at, task.finished_at = "running", None, now(), None
        if not resume_dir:
            task.run_dir = None
        self.save()
        self.say(f"[cyan]{'resume' if resume_dir else 'start'}[/] {escape(task.task)}")
        return submit(optimize_task, config_json, resume_dir)

    def finish(self, task: BatchTask, future: Future) -> None:
        try:
            result = future.result()
        except Exception as err:  # a bug in a run: report it, keep the batch going
            result = {"error": one_line(f"{type(err).__name__}: {err}", 1000), "error_kind": "error", "run_dir": None}
        task.finished_at = now()
        if "error_kind" in result:  # the run could not go on (a run's summary has an "error" too: why it stopped)
            task.status = "task_error" if result.get("error_kind") == "task_error" else "interrupted"
            task.error = result["error"]
            task.run_dir = result.get("run_dir") or task.run_dir
            if task.status == "interrupted":
                self.refresh(task)
        else:
            task.run_dir, task.stop_reason = result["run_dir"], result["stop_reason"]
            task.candidates, task.correct = result["candidates"], result["correct"]
            task.best_speedup, task.tokens, task.cost_usd = result["best_speedup"], result["tokens"], result["cost_usd"]
            task.best_speedup_vs_compile = result.get("best_speedup_vs_compile")
            task.error = result.get("error")  # a provider that kept failing, say
            if task.stop_reason == "interrupted":
                task.status = "interrupted"
            else:
                task.status = "correct" if task.correct else "no_correct"
        self.save()
        self.say(f"[{STATUS_STYLE.get(task.status, 'white')}]{task.status}[/] {escape(task.task)}: " + (
            escape(task.error) if task.status in ("task_error", "interrupted") and task.error else
            f"{task.candidates} candidates, best {speedup_text(task)}, ${task.cost_usd:.4f}"))

    # -- the whole batch --------------------------------------------------------------------

    def open_executor(self) -> None:
        """Where whole tasks run: the executor's `submit_task` (threads of this process for
        local, Ray tasks for ray, connecting now, so that an unreachable cluster is a usage
        error before anything is written)."""
        options = self.options
        self.executor = make_executor(options.executor, options.device, options.batch.workers, None,
                                      options.ray_address, task_slots=options.batch.workers)
        self.submit = self.executor.submit_task

    def close_executor(self) -> None:
        """Release the executor (tasks not yet started are cancelled)."""
        if self.executor is not None:
            self.executor.close()
            self.executor = None

    def run(self) -> None:
        _STOP.clear()
        self.state.state, self.state.pid = "running", os.getpid()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.save()
        queue = deque(t for t in self.state.tasks if t.status not in DONE)
        if self.submit is None:
            self.open_executor()
        submit = self.submit
        in_flight: dict[Future, BatchTask] = {}
        try:
            while queue or in_flight:
                while queue and len(in_flight) < self.options.batch.workers:
                    task = queue.popleft()
                    future = self.start(task, list(in_flight.values()), submit)
                    if future is not None:
                        in_flight[future] = task
                if not in_flight:
                    break
                done, _ = wait(list(in_flight), timeout=POLL_S, return_when=FIRST_COMPLETED)
                for future in done:
                    self.finish(in_flight.pop(future), future)
                changed = False
                for task in in_flight.values():
                    if task.run_dir is None and (found := self.find_run_dir(task)):
                        task.run_dir, changed = found, True
                if changed:
                    self.save()
        except KeyboardInterrupt:
            _STOP.set()  # the runs in this process stop after the candidates they have in flight
            for future, task in in_flight.items():
                future.cancel()
                task.status, task.error, task.finished_at = "interrupted", "the batch was interrupted", now()
                self.refresh(task)
            self.state.state = "interrupted"
            self.save()
            self.close_executor()
            raise
        self.close_executor()
        self.state.state = "finished"
        self.save()

    def summary(self) -> dict:
        return summarize(self.state, self.dir)


# ---------------------------------------------------------------- setting a batch up


def build_template(options: BatchOptions, task_path: str) -> RunConfig:
    """Every task's RunConfig, with `task_path` (validated now: a bad value fails before anything runs)."""
    try:
        return RunConfig.model_validate(options.run_fields() | {"task_path": task_path})
    except ValidationError as err:
        raise invalid_option(err, BATCH_FLAGS) from None


def check_models(options: BatchOptions) -> None:
    """Model specs and API keys: a ConfigError now rather than in every task."""
    from kagent.agent.providers import make_provider

    for spec in (options.model, options.judge_model or options.model):
        make_provider(spec, base_url=options.base_url)


def check_executor(options: BatchOptions) -> None:
    """The executor can be loaded here (ray installed); --ray-address only with ray."""
    executor_class(options.executor)
    if options.executor != "ray" and options.ray_address is not None:
        raise UsageError("--ray-address needs --executor ray")


def _alive(pid: int) -> bool:
    """A live kagent batch process (not another process that reused the pid)."""
    try:
        return pid_alive(pid) and b"batch" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def new_batch(task_dir: Path, settings: FileValues):
    """Validate everything (the same checks as `kagent optimize`), then create the batch
    directory; returns (batch_dir, state, template). `settings`: the merged file and flags
    (RunConfig fields, BatchSection fields), paths absolute already."""
    if not task_dir.exists():
        raise UsageError(f"{task_dir}: no such directory")
    if not task_dir.is_dir():
        raise UsageError(f"{task_dir}: not a directory")
    task_dir = task_dir.resolve()
    paths = find_tasks(task_dir)
    if not paths:
        raise UsageError(f"{task_dir}: no task files (*.py) in this directory")
    fields = dict(settings.run)
    fields["backend"], fields["device"] = choose_target(fields.pop("backend", None), fields.pop("device", None),
                                                        here=fields.get("executor", "local") == "local")
    try:
        opts = BatchOptions(**fields, batch=BatchSection(**settings.batch | {"task_dir": str(task_dir)})).with_environment()
    except ValidationError as err:
        raise invalid_option(err, BATCH_FLAGS, settings) from None
    template = build_template(opts, str(paths[0]))
    check_models(opts)
    check_executor(opts)
    rels = [p.relative_to(task_dir).as_posix() for p in paths]
    tasks = [BatchTask(task=rel, task_path=str(path), work_dir=work)
             for rel, path, work in zip(rels, paths, work_dirs(rels))]
    batch_id = f"batch-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    batch_dir = Path(opts.runs_dir) / batch_id  # made once the executor is up: a failure to connect leaves nothing
    stamp = now()
    state = BatchState(batch_id=batch_id, created_at=stamp, updated_at=stamp, pid=os.getpid(), options=opts,
                       tasks=tasks)
    return batch_dir, state, template


def reopen_batch(batch_dir: Path, overrides: dict, batch_overrides: dict | None = None):
    """A batch to continue: (batch_dir, state, template), with `overrides` (RunConfig budgets)
    and `batch_overrides` (BatchSection: workers, max_cost) applied."""
    state = load_state(batch_dir)
    if state.state == "running" and state.pid not in (None, os.getpid()) and _alive(state.pid):
        raise UsageError(f"{batch_dir}: the batch is still running (pid {state.pid})")
    try:
        old = state.options
        state.options = BatchOptions(**old.run_fields() | overrides,
                                     batch=old.batch.model_dump() | (batch_overrides or {}))
    except ValidationError as err:
        raise invalid_option(err, BATCH_FLAGS) from None
    template = build_template(state.options, state.tasks[0].task_path)
    check_models(state.options)
    check_executor(state.options)
    for task in state.tasks:
        if task.status == "running":  # the batch process died while it ran
            task.status, task.error = "interrupted", "the batch process stopped while this task ran"
        elif task.status == "skipped":  # never started: try again (the budget may allow it now)
            task.status, task.error = "pending", None
    return batch_dir, state, template


# ---------------------------------------------------------------- the command


def batch_command(
    task_dir: Optional[Path] = typer.Argument(None, help="Directory of KernelBench task files, searched recursively "
                                                         "(omit with --resume)."),
    config: opt.Config = None,
    model: opt.Model = None,
    judge_model: opt.JudgeModel = None,
    base_url: opt.BaseUrl = None,
    backend: opt.Backend = None,
    device: opt.Device = None,
    max_iters: opt.MaxIters = None,
    time_limit: opt.TimeLimit = None,
    llm_timeout: opt.LlmTimeout = None,
    stop_at_sol: opt.StopAtSol = None,
    patience: opt.Patience = None,
    baseline: opt.Baseline = None,
    max_input_mb: opt.MaxInputMb = None,
    task_max_cost: Annotated[Optional[float], typer.Option(help="Per task: stop once this many USD were spent.")] = None,
    concurrency: opt.Concurrency = None,
    max_cost: Annotated[Optional[float], typer.Option(
        help="The whole batch: start no task once this many USD were spent.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Tasks optimized at once (default 2).")] = None,
    executor: opt.Executor = None,
    ray_address: opt.RayAddress = None,
    runs_dir: Annotated[Optional[Path], typer.Option(
        help="Where the batch directory is made, and where --resume looks for a batch id (default: runs).")] = None,
    prices: opt.Prices = None,
    resume: Annotated[Optional[str], typer.Option(
        help="Continue a batch: its directory, or its id (or a unique start of one) under --runs-dir.")] = None,
    as_json: opt.AsJson = False,
) -> None:
    """Optimize every task in a directory, several at once; report correct rate, fast_p, speedups."""
    # Absolute here, once: the paths go into batch.json and to workers in other directories.
    task_dir, runs_dir, prices, config = absolute(task_dir), absolute(runs_dir), absolute(prices), absolute(config)
    budgets = run_flags(max_iters=max_iters, time_limit=time_limit, llm_timeout=llm_timeout, stop_at_sol=stop_at_sol,
                        patience=patience, max_cost=task_max_cost, concurrency=concurrency)
    batch_budgets = {k: v for k, v in (("max_cost", max_cost), ("workers", workers)) if v is not None}
    try:
        if resume is not None:
            given = (("TASK_DIR", task_dir), ("--config", config), ("--model", model), ("--judge-model", judge_model),
                     ("--base-url", base_url), ("--backend", backend), ("--device", device), ("--executor", executor),
                     ("--ray-address", ray_address), ("--prices", prices), ("--baseline", baseline))
            fixed = [flag for flag, value in given if value is not None]
            if fixed:
                raise UsageError(f"--resume continues a batch with its own {', '.join(fixed)}: leave "
                                 f"{'it' if len(fixed) == 1 else 'them'} out (budgets and --workers may change)")
            # --runs-dir, if given, is where a batch id is looked up.
            batch_dir = absolute(resolve_batch(resume, runs_dir or absolute(Path("runs"))))
            batch_dir, state, template = reopen_batch(batch_dir, budgets, batch_budgets)
        else:
            flags = budgets | run_flags(model=model, judge_model=judge_model, base_url=base_url, backend=backend,
                                        device=device, executor=executor, ray_address=ray_address,
                                        baseline=baseline, max_input_mb=max_input_mb, runs_dir=runs_dir and str(runs_dir),
                                        prices=load_prices(prices) if prices else None)
            file = load_config(config)
            if "task_path" in file.run:
                raise UsageError(f"{config}: task is for kagent optimize; kagent batch takes TASK_DIR "
                                 "(or batch.task_dir)")
            settings = merge(file, flags, batch_budgets | {"task_dir": task_dir and str(task_dir)})
            if not settings.batch.get("task_dir") or "model" not in settings.run:
                raise UsageError("give a TASK_DIR and --model PROVIDER:MODEL (or --resume BATCH_DIR)")
            settings.run.setdefault("runs_dir", str(absolute(Path("runs"))))
            batch_dir, state, template = new_batch(Path(settings.batch.pop("task_dir")), settings)
            state.options.apply_environment()
    except KagentError as err:
        fail(err, as_json)
    batch = Batch(batch_dir, state, template)
    try:
        batch.open_executor()
    except KagentError as err:
        fail(err, as_json)
    started = time.monotonic()
    n = len(state.tasks)
    batch.say(f"kagent batch {escape(str(batch.dir))}: {n} task{'s' if n != 1 else ''}, "
              f"{state.options.batch.workers} at once ({state.options.executor})")
    try:
        batch.run()
    except KeyboardInterrupt:
        err_console.print(f"stopped: resume with kagent batch --resume {escape(str(batch.dir))}", highlight=False,
                          soft_wrap=True)
        if batch.options.executor == "local":
            err_console.print("finishing the candidates in flight (Ctrl-C again to quit now)", highlight=False)
        raise typer.Exit(130)
    summary = batch.summary()
    write_summary(summary, batch.dir)
    print_summary(summary, batch.state.tasks, err_console if as_json else console)
    batch.say(f"done in {time.monotonic() - started:.0f} s")
    if as_json:
        import sys

        sys.stdout.write(json.dumps(summary) + "\n")
        sys.stdout.flush()
    raise typer.Exit(0)
