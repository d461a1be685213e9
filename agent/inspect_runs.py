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
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import typer
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from kagent.agent.archive import ARCHIVE_FILE, Archive, CandidateRecord, RunRecord, Totals
from kagent.agent.console import console, err_console, fail, failure_tail
from kagent.agent.locate import find_run_dirs, resolve_run
from kagent.agent.present import STATE_STYLES, STATUS_STYLES, display_status, print_verdict, speedup_text
from kagent.sandbox import pid_alive as process_alive
from kagent.errors import KagentError, UsageError, one_line

# ---------------------------------------------------------------- reading archives


def pid_alive(pid: int | None) -> bool:
    """Whether process `pid` still runs. An unknown pid counts as alive (trust the archive)."""
    return pid is None or pid <= 0 or process_alive(pid)


def on_this_host(record: RunRecord) -> bool:
    """Whether the run's process is one this machine can look up (archives before migration 2
    name no host: assume this one)."""
    return record.host in (None, socket.gethostname())


def effective_state(record: RunRecord) -> str:
    """The run's state as shown: `crashed` for a run recorded as running whose process on this machine
    is gone, else the recorded state."""
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
        """The run's id: its directory's name."""
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
        """The run's best.py, when the run wrote one."""
        path = self.run_dir / "best.py"
        return path if path.is_file() else None

    @property
    def scaled_sizes(self) -> dict[str, int] | None:
        """The task's sizes as its verdicts measured them, where they were shrunk to fit
        (sandbox/sizes.py): the same for every candidate of a run."""
        return next((c.verdict.scaled_sizes for c in self.candidates if c.verdict and c.verdict.scaled_sizes), None)

    def status_counts(self) -> dict[str, int]:
        """How many candidates have each displayed status, sorted by status."""
        counts: dict[str, int] = {}
        for record in self.candidates:
            key = display_status(record)
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items()))

    def candidate(self, candidate_id: int) -> CandidateRecord:
        """One candidate of this run by id. UsageError (naming the ids it has) when there is none."""
        for record in self.candidates:
            if record.id == candidate_id:
                return record
        raise UsageError(f"run {self.run_id} has no candidate #{candidate_id} "
                         f"(it has {describe_ids([c.id for c in self.candidates])})")


def describe_ids(ids: list[int]) -> str:
    """A range of candidate ids for a message: `#1..#7`, `#3` or `none`."""
    if not ids:
        return "none"
    return f"#{ids[0]}" if len(ids) == 1 else f"#{min(ids)}..#{max(ids)}"


def load_run(run_dir: Path, with_candidates: bool = True) -> RunView:
    """Read one run (its candidates too, unless with_candidates is False). Raises UsageError
    when its archive cannot be read."""
    path = run_dir / ARCHIVE_FILE
    try:
        with Archive.open(run_dir, readonly=True) as archive, archive.snapshot():
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


def sort_key(view: RunView) -> tuple:
    """Sort key of a run: its start time (unreadable: first), then its id."""
    try:
        created = datetime.fromisoformat(view.record.created_at or "").timestamp()
    except ValueError:
        created = float("-inf")
    return created, view.run_id


# ---------------------------------------------------------------- plain data (--json)


def display_reason(record: CandidateRecord) -> str | None:
    """Why a candidate ended as it did: its verdict's reason, or the message of one without code."""
    return record.verdict_reason or (record.message if record.status == "no_code" else None)


def run_summary(view: RunView) -> dict[str, Any]:
    """One run as `kagent runs --json` lists it (a JSON object; cost in USD)."""
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
    """One candidate as `kagent show --json` lists it (no source, no verdict)."""
    return {
        "id": record.id, "parent_id": record.parent_id, "operation": record.operation, "island": record.island,
        "iteration": record.iteration, "inspiration_ids": record.inspiration_ids, "status": record.status,
        "verdict_status": record.verdict_status, "reason": record.verdict_reason, "message": record.message,
        "speedup": record.speedup, "fitness": record.fitness, "kernel_path": record.kernel_path,
    }


def show_json(view: RunView) -> dict[str, Any]:
    """`kagent show RUN --json`: the run, its totals, verdict counts, best and candidates."""
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
    """`kagent show RUN --candidate ID --json`: the candidate with its code, diff against its parent,
    verdict and Judge feedback."""
    data = {"run_id": view.run_id, "run_dir": str(view.run_dir), **candidate_summary(record)}
    data.update(
        code=record.source, diff=parent_diff(view, record),
        verdict=record.verdict.model_dump(mode="json") if record.verdict else None, judge=record.judge,
        created_at=record.created_at, evaluated_at=record.evaluated_at,
    )
    return data


# ---------------------------------------------------------------- rendering


def state_text(view: RunView) -> Text:
    """The run's state for the terminal, coloured, with why (pid gone, other host, stop reason)."""
    text = Text(view.state, style=STATE_STYLES.get(view.state, ""))
    if view.state == "crashed" and view.record.state == "running":
        text.append(f" (pid {view.record.pid} gone)", style="dim")
    elif view.state == "running" and not on_this_host(view.record):
        text.append(f" (on {view.record.host}, not checked from here)", style="dim")
    elif view.record.stop_reason:
        text.append(f" ({view.record.stop_reason})", style="dim")
    return text


def when(stamp: str | None) -> str:
    """A stored UTC timestamp in local time, to the second; the text itself when unreadable."""
    try:
        return datetime.fromisoformat(stamp or "").astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return stamp or "-"


def runs_table(views: list[RunView], runs_dir: Path, width: int) -> Table:
    """The table `kagent runs` prints, fitted to `width` columns without cutting run ids."""
    headers = ("run", "task", "model", "best", "ok", "cost", "state")
    rows = []
    for view in views:
        totals = view.totals
        best = "-" if totals.best_candidate_id is None else (
            "untimed" if totals.best_speedup is None else speedup_text(totals.best_speedup))
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
    """A candidate's line in the lineage tree: id, operation, coloured status, reason, speedup, best
    mark and, for one that died, the last line of its output."""
    status = display_status(record)
    label = Text(f"#{record.id} {record.operation} {status}", style=STATUS_STYLES.get(status, ""))
    reason = display_reason(record)
    if reason:
        label.append(f" ({reason})")
    if record.speedup is not None:
        label.append(f" {speedup_text(record.speedup)}")
    if record.id == best_id:
        label.append(" best", style="bold")
    last = failure_tail(record.verdict, lines=1)
    if last and status in ("runtime_error", "timeout", "error"):
        label.append(f"  {one_line(last, 100)}", style="dim")  # why it died, at a glance
    return label


def lineage_tree(view: RunView) -> Tree:
    """The run's candidates as a tree from drafts to their refinements and repairs."""
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
    """The facts `kagent show RUN` starts with: task, models, state, counts, tokens, cost, best."""
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
        counts.append(f"{status} {count}", style=STATUS_STYLES.get(status, ""))
    table.add_row("candidates", Text.assemble(f"{totals.candidates}", ": " if totals.candidates else "", counts))
    estimated = " (estimated)" if view.estimated_tokens else ""
    table.add_row("tokens in / out", f"{totals.tokens_in} / {totals.tokens_out}{estimated}, {totals.llm_calls} LLM calls")
    table.add_row("cost", f"${totals.cost_usd:.4f}")
    if totals.best_candidate_id is None:
        table.add_row("best", Text("no correct candidate", style="dim"))
    else:
        speed = speedup_text(totals.best_speedup) if totals.best_speedup is not None else "speedup not measured"
        table.add_row("best", Text(f"#{totals.best_candidate_id}  {speed}", style="green"))
        if view.best_path:
            table.add_row("best kernel", Text(str(view.best_path)))
    return table


def print_run(view: RunView) -> None:
    """Print `kagent show RUN`: summary, the best kernel's code, the lineage tree."""
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


def print_candidate(view: RunView, record: CandidateRecord) -> None:
    """Print `kagent show RUN --candidate ID`: status, code, diff against the parent, verdict with
    logs, Judge feedback."""
    status = display_status(record)
    parent = f", from #{record.parent_id}" if record.parent_id is not None else ""
    console.print(Text.assemble(
        (f"candidate #{record.id}", "bold"), f" of {view.run_id}: {record.operation} "
        f"(island {record.island}, iteration {record.iteration}{parent})"))
    line = Text(status, style=f"bold {STATUS_STYLES.get(status, '')}".strip())
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
        print_verdict(verdict)

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
    """Write `data` as one line of JSON on stdout."""
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
        view = load_run(resolve_run(run, runs_dir)[1])
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
