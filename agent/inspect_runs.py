"""`kagent runs` and `kagent show`: look at runs, finished or still going, from their archives.

Archives are opened read-only (`mode=ro`): nothing here migrates, changes the journal mode or
writes, so looking at a run never disturbs the process writing it. In WAL mode a reader does
not block that writer, and each command reads its run inside one read transaction, so the
numbers it prints come from one consistent snapshot.

A run whose archive says `running` but whose process (runs.pid) is gone is shown as `crashed`;
the archive itself is left as it is (`kagent optimize --resume` takes the run over from there).
"""

from __future__ import annotations

import difflib
import json
import socket
import sqlite3
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Optional
from urllib.parse import quote

import typer
from rich.console import Group
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from kagent.agent.console import console, err_console, fail, failure_tail
from kagent.agent.archive import ARCHIVE_FILE, SCHEMA_VERSION, Archive, CandidateRecord, RunRecord, Totals
from kagent.sandbox import executor
from kagent.sandbox.errors import KagentError, UsageError, one_line

# Runs live directly under a runs directory, or in a batch directory there (`kagent batch`
# puts each task's run in batch-*/<task>/<run-id>/; a run directly in batch-*/ is found too).
RUN_GLOBS = (f"*/{ARCHIVE_FILE}", f"batch-*/*/{ARCHIVE_FILE}", f"batch-*/*/*/{ARCHIVE_FILE}")


# How a candidate's status is coloured: its verdict status, else its archive status.
STATUS_COLOURS = {
    "correct": "green",
    "incorrect": "red",
    "rejected": "magenta",
    "compile_error": "dark_orange",
    "runtime_error": "dark_orange",
    "timeout": "yellow",
    "not_run": "cyan",
    "no_code": "dim",
    "error": "bold white",  # kagent failed, not the kernel
    "pending": "dim",
}
STATE_COLOURS = {"running": "cyan", "finished": "green", "stopped": "yellow", "crashed": "red"}


# ---------------------------------------------------------------- reading archives


class ReadOnlyArchive(Archive):
    """An archive opened for reading only, with the Archive's read API (run, candidates,
    candidate, llm_calls, totals). Open it with `ReadOnlyArchive.open(run_dir)`."""

    def __init__(self, path: Path):  # replaces Archive.__init__: no journal-mode change, no migration
        self.path = Path(path)
        self._lock = threading.RLock()
        uri = f"file:{quote(str(self.path.resolve()))}?mode=ro"
        self._conn = sqlite3.connect(uri, uri=True, timeout=10.0, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        try:
            self._conn.execute("PRAGMA busy_timeout = 10000")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        except BaseException:
            self._conn.close()
            raise
        if not 1 <= version <= SCHEMA_VERSION:  # an older schema lacks only later columns: readable
            self._conn.close()
            if version == 0:
                raise UsageError(f"{self.path}: the run archive is not initialised yet")
            raise UsageError(f"{self.path}: archive schema v{version} is newer than this kagent (v{SCHEMA_VERSION})")

    @contextmanager
    def snapshot(self) -> Iterator["ReadOnlyArchive"]:
        """Every read inside sees the archive as it was at one moment, even while a run writes."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self
            finally:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")

    def tokens_estimated(self) -> bool:
        """Whether any LLM call's token counts are estimates rather than the provider's."""
        return bool(self._read("SELECT COALESCE(MAX(tokens_estimated), 0) FROM llm_calls")[0][0])


def pid_alive(pid: int | None) -> bool:
    """Whether process `pid` still runs. An unknown pid counts as alive (trust the archive)."""
    return pid is None or pid <= 0 or executor.pid_alive(pid)


def on_this_host(record: RunRecord) -> bool:
    """Whether the run's process is one this machine can look up (archives before migration 2
    name no host: assume this one)."""
    return record.host in (None, socket.gethostname())


def effective_state(record: RunRecord) -> str:
    if record.state == "running" and on_this_host(record) and not pid_alive(record.pid):
        return "crashed"
    return record.state


@dataclass
class RunView:
    """One run as read from its archive in one snapshot."""

    run_dir: Path
    record: RunRecord
    state: str  # record.state, or crashed when the process of a running run is gone
    totals: Totals
    candidates: list[CandidateRecord] = field(default_factory=list)
    estimated_tokens: bool = False

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    @property
    def batch(self) -> str | None:
        """The batch directory this run belongs to, if any."""
        for parent in list(self.run_dir.resolve().parents)[:2]:
            if parent.name.startswith("batch-"):
                return parent.name
        return None

    @property
    def best_path(self) -> Path | None:
        path = self.run_dir / "best.py"
        return path if path.is_file() else None

    @property
    def scaled_sizes(self) -> dict[str, int] | None:
        """The task's sizes as its verdicts measured them, where they were shrunk to fit
        (sandbox/sizes.py): the same for every candidate of a run."""
        return next((c.verdict.scaled_sizes for c in self.candidates if c.verdict and c.verdict.scaled_sizes), None)

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for record in self.candidates:
            key = display_status(record)
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items()))

    def candidate(self, candidate_id: int) -> CandidateRecord:
        for record in self.candidates:
            if record.id == candidate_id:
                return record
        raise UsageError(f"run {self.run_id} has no candidate #{candidate_id} "
                         f"(it has {describe_ids([c.id for c in self.candidates])})")


def describe_ids(ids: list[int]) -> str:
    if not ids:
        return "none"
    return f"#{ids[0]}" if len(ids) == 1 else f"#{min(ids)}..#{max(ids)}"


def load_run(run_dir: Path, with_candidates: bool = True) -> RunView:
    """Read one run (its candidates too, unless with_candidates is False). Raises UsageError
    when its archive cannot be read."""
    path = run_dir / ARCHIVE_FILE
    try:
        with ReadOnlyArchive.open(run_dir) as archive, archive.snapshot():
            record = archive.run()
            totals = archive.totals()
            candidates = archive.candidates() if with_candidates else []
            estimated = archive.tokens_estimated()
    except sqlite3.Error as err:
        raise UsageError(f"{path}: cannot read the run archive ({err})") from None
    except ValueError as err:  # a row this kagent cannot parse
        raise UsageError(f"{path}: unexpected content in the run archive ({str(err).splitlines()[0]})") from None
    return RunView(run_dir=run_dir, record=record, state=effective_state(record),
                   totals=totals, candidates=candidates, estimated_tokens=estimated)


def find_run_dirs(runs_dir: Path) -> list[Path]:
    """Directories holding an archive, directly under runs_dir or in a batch directory there."""
    return sorted({path.parent for pattern in RUN_GLOBS for path in runs_dir.glob(pattern)})


def run_name(run_dir: Path, runs_dir: Path) -> str:
    try:
        return run_dir.relative_to(runs_dir).as_posix()
    except ValueError:
        return str(run_dir)


def sort_key(view: RunView) -> tuple:
    try:
        created = datetime.fromisoformat(view.record.created_at or "").timestamp()
    except ValueError:
        created = float("-inf")
    return created, view.run_id


def resolve_run(run: str, runs_dir: Path) -> Path:
    """A run given as a directory path, a path under runs_dir, or a run id (or a unique start
    of one) found under runs_dir."""
    for candidate in (Path(run), runs_dir / run):
        if (candidate / ARCHIVE_FILE).is_file():
            return candidate
    if Path(run).is_dir():
        raise UsageError(f"{run}: not a run directory (no {ARCHIVE_FILE})")
    dirs = find_run_dirs(runs_dir) if runs_dir.is_dir() else []
    for matches in ([d for d in dirs if d.name == run], [d for d in dirs if d.name.startswith(run)]):
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            names = ", ".join(run_name(d, runs_dir) for d in matches[:3]) + (", ..." if len(matches) > 3 else "")
            raise UsageError(f"{run!r} names {len(matches)} runs under {runs_dir} ({names}): give more of the id, or a path")
    raise UsageError(f"no run {run!r} under {runs_dir} (see kagent runs --runs-dir {runs_dir})")


# ---------------------------------------------------------------- plain data (--json)


def display_status(record: CandidateRecord) -> str:
    return record.verdict_status or record.status


def display_reason(record: CandidateRecord) -> str | None:
    return record.verdict_reason or (record.message if record.status == "no_code" else None)


def fmt_speedup(speedup: float | None) -> str:
    return f"{speedup:.2f}x" if speedup is not None else "-"


def run_summary(view: RunView) -> dict[str, Any]:
    record, totals = view.record, view.totals
    return {
        "run_id": view.run_id, "run_dir": str(view.run_dir), "batch": view.batch, "task": record.task_name,
        "task_path": record.task_path, "model": record.model, "judge_model": record.judge_model or record.model,
        "backend": record.backend, "device": record.device, "state": view.state, "stop_reason": record.stop_reason,
        "archived_state": record.state, "pid": record.pid, "created_at": record.created_at,
        "updated_at": record.updated_at, "candidates": totals.candidates, "correct": totals.correct,
        "best_candidate_id": totals.best_candidate_id, "best_speedup": totals.best_speedup,
        "tokens_in": totals.tokens_in, "tokens_out": totals.tokens_out, "llm_calls": totals.llm_calls,
        "cost_usd": round(totals.cost_usd, 6),
    }


def candidate_summary(record: CandidateRecord) -> dict[str, Any]:
    return {
        "id": record.id, "parent_id": record.parent_id, "operation": record.operation, "island": record.island,
        "iteration": record.iteration, "inspiration_ids": record.inspiration_ids, "status": record.status,
        "verdict_status": record.verdict_status, "reason": record.verdict_reason, "message": record.message,
        "speedup": record.speedup, "fitness": record.fitness, "kernel_path": record.kernel_path,
    }


def show_json(view: RunView) -> dict[str, Any]:
    try:
        config = json.loads(view.record.config_json)
    except ValueError:
        config = None
    run = run_summary(view)
    run.update(id=view.record.id, config=config, scaled_sizes=view.scaled_sizes)
    totals = view.totals.model_dump()
    totals["tokens_estimated"] = view.estimated_tokens
    return {
        "run": run, "totals": totals, "verdicts": view.status_counts(),
        "best": {"candidate_id": view.totals.best_candidate_id, "speedup": view.totals.best_speedup,
                 "path": str(view.best_path) if view.best_path else None},
        "candidates": [candidate_summary(c) for c in view.candidates],
    }


def parent_diff(view: RunView, record: CandidateRecord) -> str | None:
    """The unified diff from the parent's source to this candidate's; None for a draft or when
    either side has no source."""
    if record.parent_id is None or record.source is None:
        return None
    parent = next((c for c in view.candidates if c.id == record.parent_id), None)
    if parent is None or parent.source is None:
        return None
    return "\n".join(difflib.unified_diff(
        parent.source.splitlines(), record.source.splitlines(),
        fromfile=f"#{parent.id} ({parent.operation})", tofile=f"#{record.id} ({record.operation})", lineterm="",
    ))


def candidate_json(view: RunView, record: CandidateRecord) -> dict[str, Any]:
    data = {"run_id": view.run_id, "run_dir": str(view.run_dir), **candidate_summary(record)}
    data.update(
        code=record.source, diff=parent_diff(view, record),
        verdict=record.verdict.model_dump(mode="json") if record.verdict else None, judge=record.judge,
        created_at=record.created_at, evaluated_at=record.evaluated_at,
    )
    return data


# ---------------------------------------------------------------- rendering


def state_text(view: RunView) -> Text:
    text = Text(view.state, style=STATE_COLOURS.get(view.state, ""))
    if view.state == "crashed" and view.record.state == "running":
        text.append(f" (pid {view.record.pid} gone)", style="dim")
    elif view.state == "running" and not on_this_host(view.record):
        text.append(f" (on {view.record.host}, not checked from here)", style="dim")
    elif view.record.stop_reason:
        text.append(f" ({view.record.stop_reason})", style="dim")
    return text


def when(stamp: str | None) -> str:
    try:
        return datetime.fromisoformat(stamp or "").astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return stamp or "-"


def runs_table(views: list[RunView], runs_dir: Path, width: int) -> Table:
    headers = ("run", "task", "model", "best", "ok", "cost", "state")
    rows = []
    for view in views:
        totals = view.totals
        best = "-" if totals.best_candidate_id is None else (
            "untimed" if totals.best_speedup is None else fmt_speedup(totals.best_speedup))
        rows.append([Text(view.run_id), Text(view.record.task_name), Text(view.record.model), Text(best),
                     Text(f"{totals.correct}/{totals.candidates}"), Text(f"${totals.cost_usd:.4f}"), state_text(view)])
    widths = [max(len(header), *(row[i].cell_len for row in rows)) for i, header in enumerate(headers)]
    # Run ids stay whole (they are what `kagent show` takes) and no value is cut in the middle:
    # the model gives way first (cut with an ellipsis), then the state (wrapped between its words
    # onto a second line), then the model and the task further.
    longest_word = max((len(word) for row in rows for word in row[6].plain.split()), default=5)
    excess = sum(widths) + len(headers) - 1 - width
    for column, floor in ((2, 16), (6, longest_word), (2, 6), (1, 7)):
        cut = min(max(excess, 0), max(widths[column] - floor, 0))
        widths[column] -= cut
        excess -= cut
    table = Table(title=f"runs in {runs_dir}", title_justify="left", box=None, pad_edge=False, padding=(0, 1, 0, 0),
                  header_style="bold", title_style="bold")
    for i, header in enumerate(headers):
        table.add_column(header, justify="right" if 3 <= i <= 5 else "left", width=widths[i] if i in (1, 2, 6) else None,
                         no_wrap=i != 6, overflow="ellipsis" if i in (1, 2) else "fold")
    for row in rows:
        for i in (1, 2):
            row[i].truncate(widths[i], overflow="ellipsis")
        table.add_row(*row)
    return table


def candidate_label(record: CandidateRecord, best_id: int | None) -> Text:
    status = display_status(record)
    label = Text(f"#{record.id} {record.operation} {status}", style=STATUS_COLOURS.get(status, ""))
    reason = display_reason(record)
    if reason:
        label.append(f" ({reason})")
    if record.speedup is not None:
        label.append(f" {fmt_speedup(record.speedup)}")
    if record.id == best_id:
        label.append(" best", style="bold")
    last = failure_tail(record.verdict, lines=1)
    if last and status in ("runtime_error", "timeout", "error"):
        label.append(f"  {one_line(last, 100)}", style="dim")  # why it died, at a glance
    return label


def lineage_tree(view: RunView) -> Tree:
    tree = Tree(Text(f"lineage of {view.run_id}", style="bold"))
    ids = {c.id for c in view.candidates}
    children: dict[int | None, list[CandidateRecord]] = {}
    for record in view.candidates:  # ordered by id; an unknown parent puts a candidate at the top
        children.setdefault(record.parent_id if record.parent_id in ids else None, []).append(record)
    best_id = view.totals.best_candidate_id
    stack = [(tree, record) for record in reversed(children.get(None, []))]
    while stack:  # depth-first without recursion: a long lineage is a deep tree
        node, record = stack.pop()
        branch = node.add(candidate_label(record, best_id))
        stack.extend((branch, child) for child in reversed(children.get(record.id, [])))
    if not view.candidates:
        tree.add(Text("no candidates yet", style="dim"))
    return tree


def summary_table(view: RunView) -> Table:
    record, totals = view.record, view.totals
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("run", Text(view.run_id))
    table.add_row("directory", Text(str(view.run_dir)))
    table.add_row("task", Text(f"{record.task_name}  ({record.task_path})"))
    table.add_row("coder", Text(record.model))
    judge = record.judge_model
    table.add_row("judge", Text(judge) if judge and judge != record.model else Text("the coder's model", style="dim"))
    table.add_row("backend / device", f"{record.backend} / {record.device}")
    if view.scaled_sizes:
        table.add_row("scaled sizes", Text(", ".join(f"{k}={v}" for k, v in view.scaled_sizes.items())))
    table.add_row("state", state_text(view))
    table.add_row("started / updated", f"{when(record.created_at)} / {when(record.updated_at)}")
    counts = Text()
    for i, (status, count) in enumerate(view.status_counts().items()):
        counts.append(", " if i else "")
        counts.append(f"{status} {count}", style=STATUS_COLOURS.get(status, ""))
    table.add_row("candidates", Text.assemble(f"{totals.candidates}", ": " if totals.candidates else "", counts))
    estimated = " (estimated)" if view.estimated_tokens else ""
    table.add_row("tokens in / out", f"{totals.tokens_in} / {totals.tokens_out}{estimated}, {totals.llm_calls} LLM calls")
    table.add_row("cost", f"${totals.cost_usd:.4f}")
    if totals.best_candidate_id is None:
        table.add_row("best", Text("no correct candidate", style="dim"))
    else:
        speed = fmt_speedup(totals.best_speedup) if totals.best_speedup is not None else "speedup not measured"
        table.add_row("best", Text(f"#{totals.best_candidate_id}  {speed}", style="green"))
        if view.best_path:
            table.add_row("best kernel", Text(str(view.best_path)))
    return table


def print_run(view: RunView) -> None:
    console.print(summary_table(view))
    best_id = view.totals.best_candidate_id
    if best_id is not None:
        best = view.candidate(best_id)
        if best.source:
            console.print()
            console.print(Text(f"best candidate #{best_id}", style="bold green"))
            console.print(Syntax(best.source, "python", line_numbers=True, word_wrap=True))
    console.print()
    console.print(lineage_tree(view))


def verdict_table(verdict) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("backend / device", f"{verdict.backend} / {verdict.device}")
    if verdict.scaled_sizes:
        table.add_row("scaled sizes", Text(", ".join(f"{k}={v}" for k, v in verdict.scaled_sizes.items())))
    if verdict.input_sets:
        table.add_row("input sets", Text(", ".join(verdict.input_sets)))
    if verdict.failed_input_set:
        table.add_row("failed input set", Text(verdict.failed_input_set, style="red"))
    if verdict.max_abs_error is not None:
        rel = f"{verdict.max_rel_error:.3g}" if verdict.max_rel_error is not None else "-"
        table.add_row("max abs / rel error", f"{verdict.max_abs_error:.3g} / {rel}")
    for side, stats in (("reference", verdict.ref_timing), ("candidate", verdict.candidate_timing)):
        if stats is not None:
            table.add_row(f"{side} time", f"median {stats.median_ms:.4f} ms (p20 {stats.p20_ms:.4f}, "
                                          f"p80 {stats.p80_ms:.4f}, {stats.runs} runs)")
    if verdict.ref_timing is None and verdict.ref_time_ms is not None:
        table.add_row("time reference / candidate", f"{verdict.ref_time_ms:.4f} ms / {verdict.candidate_time_ms:.4f} ms")
    if verdict.speedup is not None:
        table.add_row("speedup", Text.assemble(fmt_speedup(verdict.speedup),
                                               ("  implausible" if verdict.implausible_speedup else "", "red")))
    if verdict.ref_time_ms is not None and not verdict.timing_meaningful:
        table.add_row("timing", Text("not a performance measurement on this device", style="dim"))
    if verdict.elapsed_s is not None:
        table.add_row("evaluation took", f"{verdict.elapsed_s:.1f} s")
    artifacts = verdict.artifacts
    if artifacts.torch_ops:
        table.add_row("PyTorch ops in forward", Text(", ".join(artifacts.torch_ops)))
    if artifacts.launches:
        table.add_row("launches per call", Text(", ".join(f"{k} x{v}" for k, v in artifacts.launches.items())))
    for use in artifacts.resources:
        facts = use.error or (f"{use.registers} registers, {use.shared_memory_bytes} B shared, "
                              f"{use.spill_stores_bytes} B spill stores, {use.spill_loads_bytes} B spill loads")
        table.add_row(Text(f"{use.kernel} @ {use.target}"), Text(facts))
    for note in artifacts.notes:
        table.add_row("note", Text(note))
    return table


def print_candidate(view: RunView, record: CandidateRecord) -> None:
    status = display_status(record)
    parent = f", from #{record.parent_id}" if record.parent_id is not None else ""
    console.print(Text.assemble(
        (f"candidate #{record.id}", "bold"), f" of {view.run_id}: {record.operation} "
        f"(island {record.island}, iteration {record.iteration}{parent})"))
    line = Text(status, style=f"bold {STATUS_COLOURS.get(status, '')}".strip())
    if record.verdict_reason:
        line.append(f" ({record.verdict_reason})")
    if record.message:
        line.append(f" {record.message}")
    console.print(line)
    if record.kernel_path:
        console.print(Text(f"kernel: {record.kernel_path}", style="dim"))

    console.print()
    console.print(Text("code", style="bold"))
    if record.source:
        console.print(Syntax(record.source, "python", line_numbers=True, word_wrap=True))
    else:
        console.print(Text("no code (the Coder's reply is not in yet, or held none)", style="dim"))

    console.print()
    diff = parent_diff(view, record)
    if record.parent_id is None:
        console.print(Text("diff: none (a draft, written from scratch)", style="dim"))
    elif diff is None:
        console.print(Text(f"diff against #{record.parent_id}: not available (a side has no code)", style="dim"))
    elif not diff:
        console.print(Text(f"diff against #{record.parent_id}: identical", style="dim"))
    else:
        console.print(Text(f"diff against #{record.parent_id}", style="bold"))
        console.print(Syntax(diff, "diff", word_wrap=True))

    console.print()
    console.print(Text("verdict", style="bold"))
    verdict = record.verdict
    if verdict is None:
        console.print(Text("not evaluated", style="dim"))
    else:
        console.print(verdict_table(verdict))
        log = verdict.artifacts.compile_log or verdict.artifacts.traceback
        if log and log.strip():
            title = "compile log" if verdict.artifacts.compile_log else "traceback"
            console.print(Group(Text(f"{title} (tail)", style="bold"), Text(log.strip()[-2000:])))
        if verdict.artifacts.stderr_tail and verdict.artifacts.stderr_tail.strip():
            console.print(Group(Text("stderr (tail)", style="bold"), Text(verdict.artifacts.stderr_tail.strip()[-1000:])))

    console.print()
    console.print(Text("judge", style="bold"))
    judge = record.judge
    if not judge:
        console.print(Text("no feedback", style="dim"))
    else:
        table = Table(show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for key, value in judge.items():
            table.add_row(key, Text(value if isinstance(value, str) else json.dumps(value)))
        console.print(table)


# ---------------------------------------------------------------- commands


def write_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data) + "\n")


def runs_command(
    runs_dir: Path = typer.Option(Path("runs"), help="Where runs are written (batch-*/ directories included)."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON list on stdout."),
) -> None:
    """List runs, newest first: task, model, best speedup, candidates, cost, state."""
    try:
        if not runs_dir.is_dir():
            raise UsageError(f"{runs_dir}: no such runs directory")
        views = []
        for run_dir in find_run_dirs(runs_dir):
            try:
                views.append(load_run(run_dir, with_candidates=False))
            except UsageError as err:  # one unreadable archive does not hide the others
                err_console.print(Text(f"skipped: {err}", style="yellow"), soft_wrap=True)
    except KagentError as err:
        fail(err, as_json)
    views.sort(key=sort_key, reverse=True)
    if as_json:
        write_json([run_summary(view) for view in views])
    elif not views:
        console.print(Text(f"no runs in {runs_dir} yet: start one with kagent optimize TASK --model PROVIDER:MODEL"),
                      soft_wrap=True)
    else:
        console.print(runs_table(views, runs_dir, console.width))


def show_command(
    run: str = typer.Argument(..., help="A run directory, or a run id under --runs-dir."),
    candidate: Optional[str] = typer.Option(None, "--candidate", "-c", help="Show this candidate (its id)."),
    runs_dir: Path = typer.Option(Path("runs"), help="Where to look for a run given by id."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON object on stdout."),
) -> None:
    """Show a run (summary, best kernel, lineage) or, with --candidate, one candidate."""
    try:
        view = load_run(resolve_run(run, runs_dir))
        record = None
        if candidate is not None:
            text = candidate.strip().lstrip("#")
            if not text.isdigit():
                raise UsageError(f"--candidate takes a candidate id (a number), got {candidate!r}")
            record = view.candidate(int(text))
    except KagentError as err:
        fail(err, as_json)
    if record is not None:
        if as_json:
            write_json(candidate_json(view, record))
        else:
            print_candidate(view, record)
    elif as_json:
        write_json(show_json(view))
    else:
        print_run(view)
