"""`kagent report`: one self-contained HTML page about a run or a batch of runs.

    kagent report RUN [-o report.html]

RUN is a run directory (it holds `archive.db`), a run id under `--runs-dir`, or a batch
directory (it holds `summary.json` and one run directory per task).

The page needs nothing but a browser: inline CSS, plots drawn here as inline SVG, no scripts,
no fonts, images or styles fetched from anywhere. Everything that comes from an archive or a
summary (kernel sources, messages, task names, model specs) is HTML-escaped, so a candidate
that writes markup into its kernel or its error message cannot script the page.

A run's page: the best speedup over candidates (best fitness, marked "not timed", when no
timing was a performance measurement), the lineage graph coloured by verdict, the verdict
counts, the table of candidates and the best kernel's code. A batch's page: the batch summary
table with its aggregates, then one compact section per task run.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import typer

from kagent.agent.console import fail, failure_tail
from kagent.agent.locate import ARCHIVE_FILE, SUMMARY_FILE, resolve_run
from kagent.agent.present import OTHER_COLOUR, STATUS_COLOURS, TASK_STATUS_COLOURS, display_status, now, speedup_text
from kagent.agent.report_plots import (
    BEST_RING, CURVE_COLOUR, POINT_COLOUR, STATUS_ORDER, curve_caption, curve_svg, esc, finite, lineage_legend,
    lineage_svg, verdicts_svg,
)
from kagent.errors import KagentError, UsageError

# ---------------------------------------------------------------- reading runs and batches


@dataclass
class Node:
    """One candidate, as the report needs it."""

    id: int
    number: int  # 1-based position in creation order (the curve's x)
    iteration: int
    island: int
    parent_id: int | None
    operation: str
    status: str  # the verdict status, or no_code / pending
    reason: str | None
    speedup: float | None
    timed: bool  # the speedup is a performance measurement
    fitness: float | None
    message: str | None
    source: str | None
    depth: int = 0
    tail: str | None = None  # the end of a failed candidate's traceback or stderr


@dataclass
class RunData:
    """One run, as the report needs it: its facts from the archive, its candidates as lineage nodes,
    the best candidate's id, tokens and cost in USD."""

    run_dir: Path
    run_id: str = ""
    task_name: str = ""
    model: str = ""
    judge_model: str | None = None
    backend: str = ""
    device: str = ""
    state: str = ""
    stop_reason: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    max_iters: int | None = None
    nodes: list[Node] = field(default_factory=list)
    best_id: int | None = None
    tokens: int = 0
    cost_usd: float = 0.0
    llm_calls: int = 0

    @property
    def best(self) -> Node | None:
        """The best candidate's node (`agent.best`, as the archive's totals name it), or None."""
        return next((n for n in self.nodes if n.id == self.best_id), None)

    @property
    def correct(self) -> int:
        """How many candidates are correct."""
        return sum(n.status == "correct" for n in self.nodes)

    def counts(self) -> dict[str, int]:
        """Candidates per status, in the order of the verdict colours (unknown statuses last)."""
        counts: dict[str, int] = {}
        for node in self.nodes:
            counts[node.status] = counts.get(node.status, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (
            STATUS_ORDER.index(kv[0]) if kv[0] in STATUS_ORDER else len(STATUS_ORDER), kv[0])))


def load_run(run_dir: Path) -> RunData:
    """Everything the report shows about one run, read through the archive API."""
    from kagent.agent.archive import Archive

    try:  # read-only: a report never migrates or checkpoints the archive of a live run
        with Archive.open(run_dir, readonly=True) as archive, archive.snapshot():
            run = archive.run()
            records = archive.candidates()
            totals = archive.totals()
    except sqlite3.Error as err:
        raise UsageError(f"{run_dir}: cannot read the run archive: {err}") from None
    try:
        config = json.loads(run.config_json or "{}")
    except ValueError:
        config = {}
    max_iters = config.get("max_iters") if isinstance(config, dict) else None
    data = RunData(
        run_dir=Path(run_dir), run_id=run.id, task_name=run.task_name, model=run.model,
        judge_model=run.judge_model, backend=run.backend, device=run.device, state=run.state,
        stop_reason=run.stop_reason, created_at=run.created_at, updated_at=run.updated_at,
        max_iters=max_iters if isinstance(max_iters, int) else None, best_id=totals.best_candidate_id,
        tokens=totals.tokens_in + totals.tokens_out, cost_usd=totals.cost_usd, llm_calls=totals.llm_calls,
    )
    depth: dict[int, int] = {}
    for number, record in enumerate(records, 1):
        verdict = record.verdict
        node = Node(
            id=record.id, number=number, iteration=record.iteration, island=record.island,
            parent_id=record.parent_id, operation=record.operation,
            status=display_status(record), reason=record.verdict_reason,
            speedup=finite(record.speedup), timed=bool(verdict and verdict.timing_meaningful),
            fitness=finite(record.fitness), message=record.message, source=record.source,
            tail=failure_tail(verdict),
        )
        node.depth = depth[node.id] = depth[node.parent_id] + 1 if node.parent_id in depth else 0
        data.nodes.append(node)
    return data


@dataclass
class TaskRow:
    """One task of a batch: its line of summary.json and its run, when there is one."""

    task: str
    status: str
    best_speedup: float | None
    candidates: Any
    correct: Any
    tokens: Any
    cost_usd: float | None
    error: str | None
    run: RunData | None = None
    run_error: str | None = None  # why the run could not be read


def _task_run_dir(batch_dir: Path, value: Any) -> Path | None:
    """A task's run directory: as summary.json names it, or, for a batch directory moved or
    copied since (its paths are absolute), the same trailing path inside this batch directory."""
    if not isinstance(value, str) or not value:
        return None
    path = Path(value)
    options = [path] if path.is_absolute() else [batch_dir / path, path]
    parts = path.parts[1:] if path.is_absolute() else path.parts
    options += [batch_dir.joinpath(*parts[-k:]) for k in range(1, min(len(parts), 3) + 1)]
    return next((p for p in options if (p / ARCHIVE_FILE).is_file()), None)


def load_batch(batch_dir: Path) -> tuple[dict, list[TaskRow]]:
    """A batch directory's summary.json and one row per task, each with its run read (or why it could
    not be). UsageError when the summary cannot be read."""
    try:
        summary = json.loads((batch_dir / SUMMARY_FILE).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise UsageError(f"{batch_dir / SUMMARY_FILE}: cannot read the batch summary: {err}") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("tasks", []), list):
        raise UsageError(f"{batch_dir / SUMMARY_FILE}: not a batch summary (expected an object with a tasks list)")
    rows = []
    for entry in summary.get("tasks", []):
        if not isinstance(entry, dict):
            continue
        row = TaskRow(
            task=str(entry.get("task") or "?"), status=str(entry.get("status") or "?"),
            best_speedup=finite(entry.get("best_speedup")), candidates=entry.get("candidates"),
            correct=entry.get("correct"), tokens=entry.get("tokens"), cost_usd=finite(entry.get("cost_usd")),
            error=entry.get("error"),
        )
        run_dir = _task_run_dir(batch_dir, entry.get("run_dir"))
        if run_dir is None:
            row.run_error = "no run archive" + (f" at {entry['run_dir']}" if entry.get("run_dir") else "")
        else:
            try:
                row.run = load_run(run_dir)
            except KagentError as err:
                row.run_error = str(err)
        rows.append(row)
    return summary, rows


# ---------------------------------------------------------------- HTML pieces


def badge(status: str, palette: dict[str, tuple[str, str]] = STATUS_COLOURS) -> str:
    """A coloured status badge (HTML), from `palette` (candidate statuses by default)."""
    fill, ink = palette.get(status, OTHER_COLOUR)
    return f'<span class="badge" style="background:{fill};color:{ink}">{esc(status)}</span>'


def fmt_speedup(value: float | None, timed: bool = True) -> str:
    """A speedup for the page (`agent.present.speedup_text`), marked when it was not timed."""
    if value is None:
        return "–"
    return speedup_text(value) + ("" if timed else ' <span class="muted">(not timed)</span>')


def fmt_cost(value: float | None) -> str:
    """A cost in USD for the page, `–` when unknown."""
    return "–" if value is None else f"${value:.4f}"


def fmt_rate(value: Any) -> str:
    """A batch aggregate: a fraction in [0, 1] as a percentage, a count as it is."""
    number = finite(value)
    if number is None:
        return "–"
    if isinstance(value, float) and 0.0 <= number <= 1.0:
        return f"{number * 100:.1f}%"
    return f"{number:g}"


def facts_table(rows: list[tuple[str, str]]) -> str:
    """A two-column HTML table of (label, HTML value) rows; labels are escaped, values are not."""
    body = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="facts">{body}</table>'


def candidates_table(data: RunData, prefix: str) -> str:
    """The table of a run's candidates (HTML), each row linked to its lineage node by `prefix`."""
    if not data.nodes:
        return '<p class="muted">No candidates yet.</p>'
    head = ("<tr><th>id</th><th>parent</th><th>operation</th><th>island</th><th>status</th><th>reason</th>"
            "<th>speedup</th><th>message</th></tr>")
    body = []
    for node in data.nodes:
        best = ' class="best"' if node.id == data.best_id else ""
        parent = f'<a href="#{prefix}c{node.parent_id}">#{node.parent_id}</a>' if node.parent_id is not None else "–"
        tail = f'<pre class="tail">{esc(node.tail)}</pre>' if node.tail else ""
        body.append(
            f'<tr id="{prefix}c{node.id}"{best}><td>#{node.id}{" ★" if best else ""}</td><td>{parent}</td>'
            f"<td>{esc(node.operation)}</td><td>{node.island}</td><td>{badge(node.status)}</td>"
            f"<td>{esc(node.reason or '')}</td><td class=\"num\">{fmt_speedup(node.speedup, node.timed)}</td>"
            f'<td class="msg">{esc(node.message or "")}{tail}</td></tr>'
        )
    return f'<div class="scroll"><table class="cands"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table></div>'


def best_code(data: RunData) -> str:
    """The best kernel's source as an HTML code block, or a line saying there is none."""
    best = data.best
    if best is None:
        return '<p class="muted">No correct kernel yet.</p>'
    speed = (f"{speedup_text(best.speedup)} over eager PyTorch" if best.speedup is not None and best.timed
             else "speedup not measured on this device")
    return (f'<p>Candidate <a href="#c{best.id}">#{best.id}</a> ({esc(best.operation)}), {esc(speed)}.</p>'
            f'<pre class="code"><code>{esc(best.source or "")}</code></pre>')


def run_facts(data: RunData) -> list[tuple[str, str]]:
    """The (label, HTML value) rows about a run: task, models, backend, state, best speedup, counts,
    tokens, cost."""
    best = data.best
    best_text = ("–" if best is None else
                 f"{fmt_speedup(best.speedup, best.timed)} (#{best.id})" if best.speedup is not None
                 else f"#{best.id} (not timed)")
    judge = f" / judge {esc(data.judge_model)}" if data.judge_model and data.judge_model != data.model else ""
    state = esc(data.state) + (f" ({esc(data.stop_reason)})" if data.stop_reason else "")
    candidates = f"{len(data.nodes)}" + (f" / {data.max_iters}" if data.max_iters else "")
    return [
        ("run", f"{esc(data.run_id)} <span class=\"muted\">{esc(data.run_dir)}</span>"),
        ("model", f"{esc(data.model)}{judge}"),
        ("backend / device", f"{esc(data.backend)} / {esc(data.device)}"),
        ("state", state),
        ("started / updated", f"{esc(data.created_at)} / {esc(data.updated_at)}"),
        ("candidates", f"{candidates}, {data.correct} correct"),
        ("best", best_text),
        ("LLM calls / tokens / cost", f"{data.llm_calls} / {data.tokens} / {fmt_cost(data.cost_usd)}"),
    ]


CSS = """
:root { --ink: #1d232b; --muted: #67707c; --line: #d9dee5; --panel: #ffffff; --bg: #f3f5f8; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "DejaVu Sans", "Liberation Sans", Arial, sans-serif; }
main { max-width: 1140px; margin: 0 auto; padding: 20px 16px 40px; }
h1 { font-size: 22px; margin: 4px 0 2px; }
h2 { font-size: 17px; margin: 0 0 10px; }
h3 { font-size: 14px; margin: 0 0 6px; color: var(--muted); font-weight: 600; }
.sub { color: var(--muted); margin: 0 0 14px; }
.muted { color: var(--muted); }
section, .card { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px;
  margin: 0 0 14px; }
.row { display: flex; gap: 14px; flex-wrap: wrap; align-items: stretch; }
.row > .card { flex: 1 1 320px; margin: 0; min-width: 0; }
.row + * { margin-top: 14px; }
svg.plot { display: block; max-width: 100%; height: auto; font-size: 12px; }
svg.plot-lineage { max-width: none; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; font-size: 12.5px; margin: 0 0 8px; }
.legend span { display: inline-flex; align-items: center; gap: 6px; white-space: nowrap; }
.legend i { display: inline-block; }
.legend .dot { width: 12px; height: 12px; border-radius: 50%; }
.legend .ring { width: 11px; height: 11px; border-radius: 50%; border: 2.5px solid """ + BEST_RING + """; }
.legend .line { width: 18px; border-top: 1.6px solid #7d8794; }
.legend .line.dashed { border-top-style: dashed; }
svg .frame { fill: #fbfcfe; stroke: var(--line); }
svg .grid { stroke: #e8ebf0; }
svg .lane { stroke: #eef0f4; stroke-width: 1; }
svg .tick { fill: var(--muted); font-size: 11px; }
svg .axis { fill: var(--ink); font-size: 12px; }
svg .note { fill: var(--muted); font-size: 11px; }
svg .warn { fill: #a15c00; font-size: 12px; font-weight: 600; }
svg .empty { fill: var(--muted); font-size: 14px; }
svg .legend { fill: var(--ink); font-size: 12px; }
svg .count { fill: var(--ink); font-size: 12px; font-weight: 600; }
svg .parity { stroke: #8a939f; stroke-dasharray: 6 4; }
svg .best-line { fill: none; stroke: """ + CURVE_COLOUR + """; stroke-width: 3; stroke-linejoin: round; }
svg .best-point { fill: """ + CURVE_COLOUR + """; }
svg .own { fill: """ + POINT_COLOUR + """; }
svg .edge { fill: none; stroke: #7d8794; stroke-width: 1.6; }
svg .node-ring { stroke: #ffffff; stroke-width: 1.5; }
svg .best-ring { stroke: """ + BEST_RING + """; stroke-width: 2.5; }
svg .node-id { font-weight: 700; pointer-events: none; }
svg a:hover .node-ring { stroke: var(--ink); }
.caption { color: var(--muted); font-size: 12.5px; margin: 6px 0 0; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; white-space: nowrap; }
table.facts { width: auto; }
table.facts th { color: var(--muted); font-weight: 500; padding-right: 18px; }
table.cands tbody tr:nth-child(even), table.tasks tbody tr:nth-child(even) { background: #f8f9fb; }
tr.best { outline: 2px solid #2e9e44; outline-offset: -2px; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.msg { max-width: 520px; overflow-wrap: anywhere; }
pre.tail { margin: 4px 0 0; font-size: 11px; white-space: pre-wrap; color: #8a3b12; }
.scroll { overflow-x: auto; }
.badge { display: inline-block; padding: 1px 7px; border-radius: 10px; font-size: 12px; font-weight: 600;
  white-space: nowrap; }
pre.code { background: #0f1720; color: #e6edf3; padding: 12px 14px; border-radius: 6px; overflow: auto;
  max-height: 640px; font: 12.5px/1.45 "DejaVu Sans Mono", Menlo, Consolas, monospace; margin: 0; }
.stats { display: flex; flex-wrap: wrap; gap: 10px; margin: 0 0 14px; }
.stat { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 8px 14px;
  min-width: 118px; }
.stat b { display: block; font-size: 20px; }
.stat span { color: var(--muted); font-size: 12px; }
.error { color: #b42318; overflow-wrap: anywhere; }
details > summary { cursor: pointer; color: var(--muted); margin: 8px 0 6px; }
a { color: #1f5fbf; text-decoration: none; }
a:hover { text-decoration: underline; }
footer { color: var(--muted); font-size: 12px; text-align: center; margin-top: 18px; }
"""


def page(title: str, body: str) -> str:
    """The whole HTML page: inline style, `title` escaped, `body` as given, and when it was generated."""
    stamp = now()
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{body}<footer>generated by kagent report at {esc(stamp)}</footer></main></body></html>\n"
    )


def render_run(data: RunData) -> str:
    """The HTML page about one run."""
    snapshot = ' <span class="badge" style="background:#e6b400">in progress</span>' if data.state == "running" else ""
    body = [
        f"<h1>kagent run: {esc(data.task_name)}{snapshot}</h1>",
        f'<p class="sub">{esc(data.run_id)}</p>',
        f"<section><h2>Summary</h2>{facts_table(run_facts(data))}</section>",
        '<div class="row">',
        f'<div class="card"><h2>Best speedup over candidates</h2>{curve_svg(data)}'
        f'<p class="caption">{esc(curve_caption(data))}</p></div>',
        f'<div class="card"><h2>Verdicts</h2>{verdicts_svg(data)}</div>',
        "</div>",
        f'<section><h2>Lineage</h2>{lineage_legend(data)}<div class="scroll">{lineage_svg(data, prefix="")}</div>'
        '<p class="caption">One node per candidate, left to right in creation order, one row per depth '
        "(drafts on top; a child sits one row below its parent). Hover a node for its verdict; click it "
        "for its row below.</p></section>",
        f"<section><h2>Candidates</h2>{candidates_table(data, prefix='')}</section>",
        f"<section><h2>Best kernel</h2>{best_code(data)}</section>",
    ]
    return page(f"kagent report: {data.task_name} ({data.run_id})", "".join(body))


BATCH_STATS = [("correct_rate", "correct rate"), ("fast_1", "fast_1"), ("fast_1_5", "fast_1.5"),
               ("fast_2", "fast_2"), ("geomean_speedup", "geomean speedup"),
               ("fast_1_vs_compile", "fast_1 vs compile"), ("fast_1_5_vs_compile", "fast_1.5 vs compile"),
               ("fast_2_vs_compile", "fast_2 vs compile"), ("geomean_speedup_vs_compile", "geomean vs compile")]


def render_batch(batch_dir: Path, summary: dict, rows: list[TaskRow]) -> str:
    """The HTML page about a batch: its summary table and aggregates, then one section per task."""
    stats = [f'<div class="stat"><b>{len(rows)}</b><span>tasks</span></div>']
    for key, name in BATCH_STATS:
        value = summary.get(key)
        shown = (speedup_text(finite(value)) if key.startswith("geomean_speedup") and finite(value) is not None
                 else fmt_rate(value))
        stats.append(f'<div class="stat"><b>{esc(shown)}</b><span>{esc(name)}</span></div>')
    stats.append(f'<div class="stat"><b>{esc(fmt_cost(finite(summary.get("cost_usd"))))}</b><span>cost</span></div>')
    tokens = summary.get("tokens")
    stats.append(f'<div class="stat"><b>{esc(tokens if tokens is not None else "–")}</b><span>tokens</span></div>')
    table = []
    for index, row in enumerate(rows):
        run = row.run
        candidates = row.candidates if row.candidates is not None else (len(run.nodes) if run else None)
        correct = row.correct if row.correct is not None else (run.correct if run else None)
        tokens = row.tokens if row.tokens is not None else (run.tokens if run else None)
        table.append(
            f'<tr><td><a href="#task{index}">{esc(row.task)}</a></td><td>{badge(row.status, TASK_STATUS_COLOURS)}</td>'
            f'<td class="num">{task_speedup(row)}</td><td class="num">{esc(dash(candidates))}</td>'
            f'<td class="num">{esc(dash(correct))}</td><td class="num">{esc(dash(tokens))}</td>'
            f'<td class="num">{fmt_cost(row.cost_usd)}</td><td class="error">{esc(row.error or "")}</td></tr>'
        )
    body = [
        f"<h1>kagent batch: {esc(batch_dir.resolve().name)}</h1>",
        f'<p class="sub">{esc(batch_dir.resolve())}</p>',
        f'<div class="stats">{"".join(stats)}</div>',
        '<section><h2>Tasks</h2><div class="scroll"><table class="tasks"><thead><tr><th>task</th><th>status</th>'
        '<th>best speedup</th><th>candidates</th><th>correct</th><th>tokens</th><th>cost</th><th>error</th></tr></thead>'
        f'<tbody>{"".join(table) or "<tr><td colspan=8 class=muted>no tasks</td></tr>"}</tbody></table></div></section>',
    ]
    for index, row in enumerate(rows):
        body.append(task_section(index, row))
    return page(f"kagent batch report: {batch_dir.resolve().name}", "".join(body))


def dash(value: Any) -> Any:
    """`value`, or `–` for None."""
    return "–" if value is None else value


def task_speedup(row: TaskRow) -> str:
    """A batch task's best speedup for the page, `correct, not timed` or `–`."""
    if row.best_speedup is None and row.status == "correct":
        return '<span class="muted">correct, not timed</span>'
    return fmt_speedup(row.best_speedup)


def task_section(index: int, row: TaskRow) -> str:
    """A batch task's section of the page: its status, run facts, curve, lineage, candidates, best
    kernel."""
    prefix = f"t{index}-"
    head = (f'<section id="task{index}"><h2>{esc(row.task)} {badge(row.status, TASK_STATUS_COLOURS)} '
            f'<span class="muted">best {task_speedup(row)}</span></h2>')
    if row.error:
        head += f'<p class="error">{esc(row.error)}</p>'
    data = row.run
    if data is None:
        return head + f'<p class="muted">{esc(row.run_error or "no run")}</p></section>'
    counts = ", ".join(f"{badge(s)} {c}" for s, c in data.counts().items()) or "none"
    best = data.best
    code = ("" if best is None else
            f'<details><summary>best kernel: candidate #{best.id}</summary>'
            f'<pre class="code"><code>{esc(best.source or "")}</code></pre></details>')
    cands = f"<details><summary>candidates ({len(data.nodes)})</summary>{candidates_table(data, prefix)}</details>"
    return (
        head
        + f'<p class="muted">{esc(data.run_id)} · {esc(data.model)} · {esc(data.backend)}/{esc(data.device)} · '
          f"{len(data.nodes)} candidates, {data.correct} correct · {fmt_cost(data.cost_usd)}</p>"
        + f"<p>verdicts: {counts}</p>"
        + '<div class="row">'
        + f'<div class="card"><h3>best speedup over candidates</h3>{curve_svg(data, 440, 210)}'
          f'<p class="caption">{esc(curve_caption(data))}</p></div>'
        + f'<div class="card"><h3>lineage</h3>{lineage_legend(data)}'
          f'<div class="scroll">{lineage_svg(data, prefix, width=600, compact=True)}</div></div>'
        + "</div>"
        + cands + code + "</section>"
    )


def build_report(target: str, runs_dir: Path = Path("runs")) -> tuple[Path, str]:
    """(the run or batch directory, the page's HTML) for what the user named."""
    kind, directory = resolve_run(target, runs_dir, batches=True)
    if kind == "run":
        return directory, render_run(load_run(directory))
    summary, rows = load_batch(directory)
    return directory, render_batch(directory, summary, rows)


# ---------------------------------------------------------------- the command


def report_command(
    run: str = typer.Argument(..., help="A run directory, a run id under --runs-dir, or a batch directory."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="HTML file to write (default: RUN/report.html)."),
    runs_dir: Path = typer.Option(Path("runs"), help="Where run ids are looked up."),
) -> None:
    """Write one self-contained HTML report (plots, lineage, candidates, best kernel) for a run or a batch."""
    try:
        directory, text = build_report(run, runs_dir)
        path = output or directory / "report.html"
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as err:
            raise UsageError(f"{path}: cannot write the report: {err.strerror}") from None
    except KagentError as err:
        fail(err)
    print(path)
