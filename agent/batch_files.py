"""What a batch keeps on disk: its state (batch.json, rewritten atomically whenever something
changes, so a killed batch can resume) and its summary (summary.json, summary.csv, the table).

Aggregates follow KernelBench: correct rate = tasks with a correct kernel / all tasks;
fast_p = tasks with a correct kernel faster than p x eager PyTorch / all tasks (a correct kernel
whose timing was not meaningful, speedup null, is correct but not fast); geometric-mean speedup
over the tasks with a correct, timed kernel. The same against torch.compile (`*_vs_compile`):
a task whose reference did not compile counts as not fast, and is left out of the geomean.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_serializer, model_validator
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kagent.agent.config import BatchSection, RunConfig
from kagent.agent import present
from kagent.agent.present import TASK_STATUS_STYLES as STATUS_STYLE, now  # noqa: F401  (batch.py's now)
from kagent.errors import UsageError, one_line

BATCH_FILE = "batch.json"
SUMMARY_JSON = "summary.json"
SUMMARY_CSV = "summary.csv"
FAST_P = ((1.0, "fast_1"), (1.5, "fast_1_5"), (2.0, "fast_2"))
DONE = ("correct", "no_correct", "task_error")  # final: never redone by --resume

TaskStatus = Literal["pending", "running", "correct", "no_correct", "task_error", "skipped", "interrupted"]


# ---------------------------------------------------------------- the batch's state


class BatchOptions(RunConfig):
    """The options the batch runs with: every task's RunConfig (its task_path left empty; its
    max_cost is each task's cap, --task-max-cost) plus the batch's own section. Budgets and
    workers may be changed on --resume.

    batch.json keeps the flat layout it always had (task_dir, workers and the batch's max_cost
    beside the run's options, each task's cap as task_max_cost), so older batches resume."""

    task_path: str = ""  # each task's own
    batch: BatchSection = BatchSection()

    @model_validator(mode="before")
    @classmethod
    def _from_flat(cls, data: Any) -> Any:
        """The flat layout of batch.json (None: a budget left at RunConfig's default)."""
        if not isinstance(data, dict) or "batch" in data:
            return data
        data = dict(data)
        batch = {key: data.pop(key) for key in ("task_dir", "workers", "max_cost") if key in data}
        if "task_max_cost" in data:
            data["max_cost"] = data.pop("task_max_cost")
        return {key: value for key, value in data.items() if value is not None} | {"batch": batch}

    @model_serializer(mode="wrap")
    def _to_flat(self, handler) -> dict[str, Any]:
        data = handler(self)
        batch = data.pop("batch")
        data.pop("task_path", None)
        data["task_max_cost"] = data.pop("max_cost", None)
        return data | batch

    def run_fields(self) -> dict[str, Any]:
        """The RunConfig fields, by name (task_path empty)."""
        return {name: getattr(self, name) for name in RunConfig.model_fields}


class BatchTask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str  # the task file, relative to the task directory
    task_path: str  # the task file, absolute
    work_dir: str  # relative to the batch directory: the task's run directory is made in here
    status: TaskStatus = "pending"
    run_dir: str | None = None
    error: str | None = None  # one line
    stop_reason: str | None = None
    best_speedup: float | None = None
    best_speedup_vs_compile: float | None = None  # over torch.compile (None: not measured)
    candidates: int = 0
    correct: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    started_at: str | None = None
    finished_at: str | None = None


class BatchState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    batch_id: str
    state: Literal["running", "finished", "interrupted"] = "running"
    pid: int | None = None  # the process that last ran the batch
    created_at: str
    updated_at: str
    options: BatchOptions
    tasks: list[BatchTask]


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` so that a reader (or a kill at any moment) sees the old file
    or the new one, never a mix."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def load_state(batch_dir: Path) -> BatchState:
    path = batch_dir / BATCH_FILE
    if not path.is_file():
        raise UsageError(f"{batch_dir}: not a batch directory (no {BATCH_FILE})")
    try:
        return BatchState.model_validate_json(path.read_text())
    except (OSError, ValueError) as err:
        raise UsageError(f"{path}: cannot read the batch state: {one_line(err, 200)}") from None



# ---------------------------------------------------------------- the summary


def speedup_text(task: BatchTask) -> str:
    if task.best_speedup is not None:
        return present.speedup_text(task.best_speedup)
    return "correct, not timed" if task.correct else "-"


def summarize(state: BatchState, batch_dir: Path) -> dict:
    """The summary object (summary.json, --json): per task and the KernelBench-style aggregate."""
    tasks = state.tasks
    n = len(tasks)
    correct = [t for t in tasks if t.status == "correct"]
    timed = [t.best_speedup for t in correct if t.best_speedup is not None and t.best_speedup > 0]
    vs_compile = [t.best_speedup_vs_compile for t in correct
                  if t.best_speedup_vs_compile is not None and t.best_speedup_vs_compile > 0]
    counts: dict[str, int] = {}
    for t in tasks:
        counts[t.status] = counts.get(t.status, 0) + 1
    summary = {
        "batch_dir": str(batch_dir),
        "batch_id": state.batch_id,
        "tasks": [{
            "task": t.task, "status": t.status, "best_speedup": t.best_speedup,
            "best_speedup_vs_compile": t.best_speedup_vs_compile, "run_dir": t.run_dir,
            "candidates": t.candidates, "correct": t.correct, "tokens": t.tokens, "cost_usd": round(t.cost_usd, 6),
            "stop_reason": t.stop_reason, "error": t.error,
        } for t in tasks],
        "n_tasks": n,
        "counts": counts,
        "correct_rate": len(correct) / n if n else 0.0,
    }
    for speedups, suffix in ((timed, ""), (vs_compile, "_vs_compile")):
        for p, key in FAST_P:
            summary[key + suffix] = sum(1 for s in speedups if s > p) / n if n else 0.0
        summary["geomean_speedup" + suffix] = math.exp(sum(map(math.log, speedups)) / len(speedups)) if speedups else None
    summary["tokens"] = sum(t.tokens for t in tasks)
    summary["cost_usd"] = round(sum(t.cost_usd for t in tasks), 6)
    summary["max_cost"] = state.options.batch.max_cost
    return summary


CSV_COLUMNS = ("task", "status", "best_speedup", "best_speedup_vs_compile", "candidates", "correct", "tokens", "cost_usd", "stop_reason",
               "run_dir", "error")


def write_summary(summary: dict, batch_dir: Path) -> None:
    write_atomic(batch_dir / SUMMARY_JSON, json.dumps(summary, indent=2) + "\n")
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in summary["tasks"]:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    write_atomic(batch_dir / SUMMARY_CSV, out.getvalue())


def _short_error(error: str | None, task: BatchTask) -> str:
    """The error without the task file's path in front (the table's first column names it)."""
    if not error:
        return ""
    prefix = f"{task.task_path}: "
    return error[len(prefix):] if error.startswith(prefix) else error


def print_summary(summary: dict, tasks: list[BatchTask], out: Console) -> None:
    cells = []
    for row, task in zip(summary["tasks"], tasks):
        speedup = f"{row['best_speedup']:.2f}x" if row["best_speedup"] is not None else (
            "not timed" if row["status"] == "correct" else "-")
        cells.append((row["task"], row["status"], speedup, str(row["candidates"]), f"${row['cost_usd']:.4f}",
                      _short_error(row["error"], task)))
    headers = ("task", "status", "best speedup", "candidates", "cost", "error")
    # Widths by hand: rich drops characters when it must shrink a folding column by itself.
    # A log (not a terminal) gets the table wide rather than folded into 80 columns.
    width = out.width if out.is_terminal else max(out.width, 140)
    widths = [max(len(h) if i != 2 or width >= 100 else 7, *(len(c[i]) for c in cells))
              for i, h in enumerate(headers)]
    overhead = 3 * (len(headers) - 1) + 2  # SIMPLE_HEAD: padding and a blank rule between columns
    room = width - overhead - sum(widths[1:5])  # for the task and the error
    widths[0] = min(widths[0], 28, max(12, room - min(widths[5], 24)))
    widths[5] = min(widths[5], max(12, room - widths[0]))
    table = Table(title=f"kagent batch {Path(summary['batch_dir']).name}", box=box.SIMPLE_HEAD, pad_edge=False)
    for i, header in enumerate(headers):
        table.add_column(header, width=widths[i], justify="right" if i in (2, 3, 4) else "left", overflow="fold")
    for (name, status, speedup, candidates, cost, error) in cells:
        style = STATUS_STYLE.get(status, "white")
        table.add_row(escape(name), f"[{style}]{status}[/]", speedup, candidates, cost, escape(error))
    saved, out.width = out.width, width
    try:
        out.print(table)
    finally:
        out.width = saved
    n = summary["n_tasks"]
    out.print(f"correct {summary['correct_rate']:.0%} ({summary['counts'].get('correct', 0)}/{n})  "
              f"tokens {summary['tokens']}  cost ${summary['cost_usd']:.4f}", highlight=False)
    for suffix, against in (("", "eager"), ("_vs_compile", "torch.compile")):
        geomean = summary["geomean_speedup" + suffix]
        out.print(f"vs {against}: fast_1 {summary['fast_1' + suffix]:.0%}  fast_1.5 {summary['fast_1_5' + suffix]:.0%}  "
                  f"fast_2 {summary['fast_2' + suffix]:.0%}  geomean speedup "
                  f"{f'{geomean:.2f}x' if geomean is not None else 'n/a'}", highlight=False)
    out.print(f"batch: {escape(summary['batch_dir'])}", highlight=False, soft_wrap=True)
