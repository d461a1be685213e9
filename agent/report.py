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

import html
import json
import math
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import typer

from agent.console import fail
from sandbox.errors import KagentError, UsageError

ARCHIVE_FILE = "archive.db"  # agent.archive.ARCHIVE_FILE (not imported: keep `kagent --help` light)
SUMMARY_FILE = "summary.json"

# Verdict colours, shared by the lineage graph, the verdict counts and the status badges.
# (fill, text drawn on it)
STATUS_COLOURS: dict[str, tuple[str, str]] = {
    "correct": ("#2e9e44", "#ffffff"),
    "incorrect": ("#d62728", "#ffffff"),
    "compile_error": ("#ff7f0e", "#1a1a1a"),
    "runtime_error": ("#8c564b", "#ffffff"),
    "timeout": ("#e6b400", "#1a1a1a"),
    "rejected": ("#9467bd", "#ffffff"),
    "not_run": ("#17becf", "#1a1a1a"),
    "no_code": ("#a0a0a0", "#1a1a1a"),
    "pending": ("#dddddd", "#1a1a1a"),
}
OTHER_COLOUR = ("#606060", "#ffffff")
# A batch task's status (agent.batch): its badge in the batch table and the task's heading.
TASK_STATUS_COLOURS: dict[str, tuple[str, str]] = {
    "correct": STATUS_COLOURS["correct"],
    "no_correct": ("#d62728", "#ffffff"),
    "task_error": ("#7a1010", "#ffffff"),
    "error": ("#7a1010", "#ffffff"),
    "skipped": ("#a0a0a0", "#1a1a1a"),
    "interrupted": ("#e6b400", "#1a1a1a"),
    "running": ("#1f5fbf", "#ffffff"),
    "pending": ("#dddddd", "#1a1a1a"),
}
STATUS_ORDER = list(STATUS_COLOURS)
CURVE_COLOUR = "#1f5fbf"  # the best-so-far line
POINT_COLOUR = "#9ab6e0"  # every timed candidate's own speedup
BEST_RING = "#111111"


def esc(value: Any) -> str:
    """Text or attribute value, escaped for HTML (quotes included)."""
    return html.escape("" if value is None else str(value), quote=True)


def colour(status: str) -> tuple[str, str]:
    return STATUS_COLOURS.get(status, OTHER_COLOUR)


def finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


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


@dataclass
class RunData:
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
        return next((n for n in self.nodes if n.id == self.best_id), None)

    @property
    def correct(self) -> int:
        return sum(n.status == "correct" for n in self.nodes)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for node in self.nodes:
            counts[node.status] = counts.get(node.status, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (
            STATUS_ORDER.index(kv[0]) if kv[0] in STATUS_ORDER else len(STATUS_ORDER), kv[0])))


def load_run(run_dir: Path) -> RunData:
    """Everything the report shows about one run, read through the archive API."""
    from agent.archive import Archive

    try:
        with Archive.open(run_dir, create=False) as archive:
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
            status=record.verdict_status or record.status, reason=record.verdict_reason,
            speedup=finite(record.speedup), timed=bool(verdict and verdict.timing_meaningful),
            fitness=finite(record.fitness), message=record.message, source=record.source,
        )
        node.depth = depth[node.id] = depth[node.parent_id] + 1 if node.parent_id in depth else 0
        data.nodes.append(node)
    return data


def resolve(target: str, runs_dir: Path) -> tuple[str, Path]:
    """("run" | "batch", directory) for what the user named, or a UsageError."""
    tried = [Path(target)]
    if not Path(target).is_absolute():
        tried.append(runs_dir / target)
    for path in tried:
        if not path.is_dir():
            continue
        if (path / ARCHIVE_FILE).is_file():
            return "run", path
        if (path / SUMMARY_FILE).is_file():
            return "batch", path
        hint = ": a batch writes it when it ends" if (path / "batch.json").is_file() else ""
        raise UsageError(f"{path}: not a run or batch directory (no {ARCHIVE_FILE}, no {SUMMARY_FILE}{hint})")
    raise UsageError(f"{target}: no such run (not a directory, and no run {target!r} under {runs_dir})")


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


# ---------------------------------------------------------------- SVG helpers


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def nice_ticks(high: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least `high`."""
    if high <= 0:
        return [0.0, 1.0]
    raw = high / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    ticks = [0.0]
    while ticks[-1] < high - 1e-12:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _fmt_tick(value: float) -> str:
    return f"{value:g}"


def _svg_open(kind: str, width: float, height: float, label: str) -> str:
    return (f'<svg class="plot plot-{kind}" data-plot="{kind}" viewBox="0 0 {_num(width)} {_num(height)}" '
            f'width="{_num(width)}" height="{_num(height)}" role="img" aria-label="{esc(label)}">'
            f'<title>{esc(label)}</title>')


def _text(x: float, y: float, text: str, cls: str = "", anchor: str = "start", extra: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<text x="{_num(x)}" y="{_num(y)}" text-anchor="{anchor}"{klass}{extra}>{esc(text)}</text>'


# ---------------------------------------------------------------- the curve


CURVE_LABELS = {  # mode -> (what the plot shows, its y axis, a warning drawn on it)
    "speedup": ("best speedup so far over candidates", "best speedup (x)", ""),
    "untimed": ("best fitness so far over candidates (not timed)", "best fitness (not timed)",
                "not timed: showing best fitness"),
    "failing": ("best fitness so far over candidates (no correct candidate)", "best fitness",
                "no correct candidate yet: showing best fitness"),
    "empty": ("no candidate evaluated yet", "", ""),
}


def curve_series(nodes: list[Node]) -> tuple[str, list[tuple[int, float]], list[tuple[int, float]]]:
    """(mode, best-so-far points, each candidate's own value), x = candidate number. mode:
    "speedup" when some correct candidate's timing was a performance measurement (the values are
    those speedups); otherwise the values are fitness (agent.selection): "untimed" when candidates
    were correct but none timed, "failing" when none was correct, "empty" when none was evaluated."""
    timed = [n for n in nodes if n.status == "correct" and n.timed and n.speedup is not None]
    if timed:
        pick = {n.id: n.speedup for n in timed}
        mode = "speedup"
    else:
        pick = {n.id: n.fitness for n in nodes if n.fitness is not None}
        mode = "empty" if not pick else "untimed" if any(n.status == "correct" for n in nodes) else "failing"
    best, steps, own = None, [], []
    for node in nodes:
        value = pick.get(node.id)
        if value is not None:
            own.append((node.number, value))
            best = value if best is None else max(best, value)
        if best is not None:
            steps.append((node.number, best))
    return mode, steps, own


def curve_svg(data: RunData, width: float = 600, height: float = 300) -> str:
    mode, steps, own = curve_series(data.nodes)
    what, y_label, warning = CURVE_LABELS[mode]
    left, right, top, bottom = 58, 18, 16, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(len(data.nodes), 1)
    values = [v for _, v in own] + ([1.0] if mode == "speedup" else [])
    y_ticks = nice_ticks(max(values) * 1.08 if values else 1.0)
    y_max = y_ticks[-1]

    def sx(number: float) -> float:  # candidates 1..n, half a step of margin on each side
        return left + (number - 0.5) / n * plot_w

    def sy(value: float) -> float:
        return top + plot_h - max(value, 0.0) / y_max * plot_h

    out = [_svg_open("curve", width, height, f"{data.task_name}: {what}")]
    out.append(f'<rect x="{left}" y="{top}" width="{_num(plot_w)}" height="{_num(plot_h)}" class="frame"/>')
    for tick in y_ticks:
        y = sy(tick)
        out.append(f'<line x1="{left}" x2="{_num(left + plot_w)}" y1="{_num(y)}" y2="{_num(y)}" class="grid"/>')
        out.append(_text(left - 6, y + 4, _fmt_tick(tick), "tick", "end"))
    step = next(s for s in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 10**9) if n / s <= 12)
    for number in range(1, n + 1):
        if number == 1 or number % step == 0:
            out.append(_text(sx(number), top + plot_h + 16, str(number), "tick", "middle"))
    out.append(_text(left + plot_w / 2, height - 6, "candidate", "axis", "middle"))
    out.append(_text(14, top + plot_h / 2, y_label, "axis", "middle",
                     f' transform="rotate(-90 14 {_num(top + plot_h / 2)})"'))
    if mode == "speedup":
        y = sy(1.0)
        out.append(f'<line x1="{left}" x2="{_num(left + plot_w)}" y1="{_num(y)}" y2="{_num(y)}" class="parity"/>')
        out.append(_text(left + plot_w - 4, y - 5, "eager PyTorch (1x)", "note", "end"))
    if mode == "empty":
        out.append(_text(left + plot_w / 2, top + plot_h / 2, "no candidate evaluated yet", "empty", "middle"))
    for number, value in own:
        out.append(f'<circle cx="{_num(sx(number))}" cy="{_num(sy(value))}" r="3.5" class="own">'
                   f'<title>{esc(f"candidate {number}: {value:.3g}")}</title></circle>')
    if steps:
        path = f"M{_num(sx(steps[0][0]))},{_num(sy(steps[0][1]))}"
        for number, value in steps[1:]:
            path += f" H{_num(sx(number))} V{_num(sy(value))}"
        out.append(f'<path d="{path}" class="best-line"/>')
        previous = None
        for number, value in steps:
            if value != previous:
                out.append(f'<circle cx="{_num(sx(number))}" cy="{_num(sy(value))}" r="4.5" class="best-point">'
                           f'<title>{esc(f"best after candidate {number}: {value:.3g}")}</title></circle>')
            previous = value
    if warning:
        out.append(_text(left + 8, top + 16, warning, "warn"))
    out.append("</svg>")
    return "".join(out)


def curve_caption(data: RunData) -> str:
    mode, steps, _ = curve_series(data.nodes)
    if mode == "speedup":
        return (f"Best speedup over eager PyTorch after each candidate (correct, timed candidates only): "
                f"{steps[-1][1]:.2f}x after {len(data.nodes)} candidates. Light dots: each timed candidate.")
    if mode == "untimed":
        return ("Not timed: no candidate's timing was a performance measurement on this device "
                "(e.g. an interpreter or compile-only check), so this shows the best fitness so far "
                "(correct = 2, failures below 0.5) instead of a speedup.")
    if mode == "failing":
        return ("No correct candidate yet, so no speedup: this shows the best fitness so far "
                "(failures score below 0.5: compiled but wrong above what did not compile).")
    return "No candidate has been evaluated yet."


# ---------------------------------------------------------------- the lineage graph


def lineage_legend(data: RunData) -> str:
    """The lineage graph's key, in HTML above the graph (it stays readable however wide the graph)."""
    items = [f'<span><i class="dot" style="background:{colour(s)[0]}"></i>{esc(s)} ({c})</span>'
             for s, c in data.counts().items()]
    ids = {n.id for n in data.nodes}
    operations = {n.operation for n in data.nodes if n.parent_id in ids}
    if operations - {"repair"}:
        items.append('<span><i class="line"></i>refine: parent → child</span>')
    if "repair" in operations:
        items.append('<span><i class="line dashed"></i>repair: parent → child</span>')
    if data.best is not None:
        items.append('<span><i class="ring"></i>best kernel</span>')
    return f'<div class="legend">{"".join(items)}</div>'


def lineage_svg(data: RunData, prefix: str, width: float = 1080, compact: bool = False) -> str:
    """One node per candidate: x by creation order, y by depth (drafts on top, a child one row
    below its parent); edges parent -> child, dashed for repairs; the best kernel ringed. The
    graph is at least 12 px (9 when compact) a candidate wide: a long run scrolls sideways rather than
    shrinks."""
    nodes = data.nodes
    label = f"{data.task_name}: lineage of {len(nodes)} candidates, coloured by verdict"
    if not nodes:
        return "".join([_svg_open("lineage", 320, 60, label),
                        _text(160, 34, "no candidates yet", "empty", "middle"), "</svg>"])
    left, right, top = 62, 16, 8
    row_h = 34 if compact else 44
    col_w = min(52.0, max(9.0 if compact else 12.0, (width - left - right) / len(nodes)))
    width = left + right + col_w * len(nodes)
    radius = max(3.6, min(10.0 if compact else 13.0, col_w * 0.42, row_h * 0.3))
    depth_max = max(n.depth for n in nodes)
    height = top * 2 + (depth_max + 1) * row_h

    def pos(node: Node) -> tuple[float, float]:
        return left + (node.number - 0.5) * col_w, top + node.depth * row_h + row_h / 2

    out = [_svg_open("lineage", width, height, label)]
    for depth in range(depth_max + 1):
        y = top + depth * row_h + row_h / 2
        out.append(f'<line x1="{left - 4}" x2="{_num(width - right)}" y1="{_num(y)}" y2="{_num(y)}" class="lane"/>')
        out.append(_text(left - 10, y + 4, "drafts" if depth == 0 else f"depth {depth}", "tick", "end"))
    by_id = {n.id: n for n in nodes}
    faint = ' stroke-opacity="0.55"' if len(nodes) > 40 else ""
    for node in nodes:
        parent = by_id.get(node.parent_id)
        if parent is None:
            continue
        (px, py), (cx, cy) = pos(parent), pos(node)
        bend = (cx - px) / 2
        dash = ' stroke-dasharray="5 3"' if node.operation == "repair" else ""
        out.append(f'<path d="M{_num(px)},{_num(py)} C{_num(px + bend)},{_num(py)} {_num(cx - bend)},{_num(cy)} '
                   f'{_num(cx)},{_num(cy)}" class="edge"{dash}{faint}/>')
    for node in nodes:
        x, y = pos(node)
        fill, ink = colour(node.status)
        speed = f", {node.speedup:.2f}x" + ("" if node.timed else " (not timed)") if node.speedup is not None else ""
        tip = (f"#{node.id} {node.operation}" + (f" of #{node.parent_id}" if node.parent_id is not None else "")
               + f": {node.status}" + (f" ({node.reason})" if node.reason else "") + speed)
        pending = ' stroke-dasharray="3 2" stroke="#888888"' if node.status == "pending" else ""
        out.append(f'<a href="#{prefix}c{node.id}"><g class="node"><title>{esc(tip)}</title>')
        if node.id == data.best_id:
            out.append(f'<circle cx="{_num(x)}" cy="{_num(y)}" r="{_num(radius + 3.5)}" class="best-ring" fill="none"/>')
        out.append(f'<circle cx="{_num(x)}" cy="{_num(y)}" r="{_num(radius)}" fill="{fill}" class="node-ring"'
                   f'{pending}/>')
        if radius >= 8.5:
            size = 10 if node.id < 100 else 8
            out.append(f'<text x="{_num(x)}" y="{_num(y + size * 0.36)}" text-anchor="middle" class="node-id" '
                       f'fill="{ink}" font-size="{size}">{node.id}</text>')
        out.append("</g></a>")
    out.append("</svg>")
    return "".join(out)


# ---------------------------------------------------------------- the verdict counts


def verdicts_svg(data: RunData, width: float = 420) -> str:
    counts = data.counts()
    label = f"{data.task_name}: verdict counts"
    bar_h, gap, label_w, top = 22, 8, 118, 8
    height = top * 2 + max(len(counts), 1) * (bar_h + gap)
    out = [_svg_open("verdicts", width, height, label)]
    if not counts:
        out.append(_text(width / 2, height / 2 + 4, "no candidates yet", "empty", "middle"))
    biggest = max(counts.values(), default=1)
    span = width - label_w - 56
    for row, (status, count) in enumerate(counts.items()):
        y = top + row * (bar_h + gap)
        fill, _ = colour(status)
        length = max(2.0, count / biggest * span)
        out.append(_text(label_w - 8, y + bar_h * 0.7, status, "legend", "end"))
        out.append(f'<rect x="{label_w}" y="{y}" width="{_num(length)}" height="{bar_h}" fill="{fill}" rx="2">'
                   f'<title>{esc(f"{status}: {count}")}</title></rect>')
        out.append(_text(label_w + length + 6, y + bar_h * 0.7, str(count), "count"))
    out.append("</svg>")
    return "".join(out)


# ---------------------------------------------------------------- HTML pieces


def badge(status: str, palette: dict[str, tuple[str, str]] = STATUS_COLOURS) -> str:
    fill, ink = palette.get(status, OTHER_COLOUR)
    return f'<span class="badge" style="background:{fill};color:{ink}">{esc(status)}</span>'


def fmt_speedup(value: float | None, timed: bool = True) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}x" + ("" if timed else ' <span class="muted">(not timed)</span>')


def fmt_cost(value: float | None) -> str:
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
    body = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="facts">{body}</table>'


def candidates_table(data: RunData, prefix: str) -> str:
    if not data.nodes:
        return '<p class="muted">No candidates yet.</p>'
    head = ("<tr><th>id</th><th>parent</th><th>operation</th><th>island</th><th>status</th><th>reason</th>"
            "<th>speedup</th><th>message</th></tr>")
    body = []
    for node in data.nodes:
        best = ' class="best"' if node.id == data.best_id else ""
        parent = f'<a href="#{prefix}c{node.parent_id}">#{node.parent_id}</a>' if node.parent_id is not None else "–"
        body.append(
            f'<tr id="{prefix}c{node.id}"{best}><td>#{node.id}{" ★" if best else ""}</td><td>{parent}</td>'
            f"<td>{esc(node.operation)}</td><td>{node.island}</td><td>{badge(node.status)}</td>"
            f"<td>{esc(node.reason or '')}</td><td class=\"num\">{fmt_speedup(node.speedup, node.timed)}</td>"
            f'<td class="msg">{esc(node.message or "")}</td></tr>'
        )
    return f'<div class="scroll"><table class="cands"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table></div>'


def best_code(data: RunData) -> str:
    best = data.best
    if best is None:
        return '<p class="muted">No correct kernel yet.</p>'
    speed = (f"{best.speedup:.2f}x over eager PyTorch" if best.speedup is not None and best.timed
             else "speedup not measured on this device")
    return (f'<p>Candidate <a href="#c{best.id}">#{best.id}</a> ({esc(best.operation)}), {esc(speed)}.</p>'
            f'<pre class="code"><code>{esc(best.source or "")}</code></pre>')


def run_facts(data: RunData) -> list[tuple[str, str]]:
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
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{body}<footer>generated by kagent report at {esc(stamp)}</footer></main></body></html>\n"
    )


def render_run(data: RunData) -> str:
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
               ("fast_2", "fast_2"), ("geomean_speedup", "geomean speedup")]


def render_batch(batch_dir: Path, summary: dict, rows: list[TaskRow]) -> str:
    stats = [f'<div class="stat"><b>{len(rows)}</b><span>tasks</span></div>']
    for key, name in BATCH_STATS:
        value = summary.get(key)
        shown = (f"{finite(value):.2f}x" if key == "geomean_speedup" and finite(value) is not None
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
    return "–" if value is None else value


def task_speedup(row: TaskRow) -> str:
    if row.best_speedup is None and row.status == "correct":
        return '<span class="muted">correct, not timed</span>'
    return fmt_speedup(row.best_speedup)


def task_section(index: int, row: TaskRow) -> str:
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
    kind, directory = resolve(target, runs_dir)
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
