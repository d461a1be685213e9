"""How kagent shows things to a person, in one place: the colour of each status (terminal and
HTML), how a speedup is written, how a verdict is rendered, and the timestamp format.

Every command that prints (`eval`, `optimize`, `runs`, `show`, `batch`, `report`) takes its
colours and formats from here, so a status looks the same everywhere.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from rich.table import Table
from rich.text import Text

from kagent.agent.console import console, failure_tail
from kagent.errors import one_line

# ---------------------------------------------------------------- statuses and their colours

# A candidate's status (its verdict status, else its archive status): terminal style (rich),
# then HTML (fill, text drawn on it) for the report's lineage graph, verdict counts and badges.
STATUS_STYLES: dict[str, str] = {
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
STATUS_COLOURS: dict[str, tuple[str, str]] = {
    "correct": ("#2e9e44", "#ffffff"),
    "incorrect": ("#d62728", "#ffffff"),
    "compile_error": ("#ff7f0e", "#1a1a1a"),
    "runtime_error": ("#8c564b", "#ffffff"),
    "timeout": ("#e6b400", "#1a1a1a"),
    "rejected": ("#9467bd", "#ffffff"),
    "not_run": ("#17becf", "#1a1a1a"),
    "no_code": ("#a0a0a0", "#1a1a1a"),
    "error": ("#1f77b4", "#ffffff"),  # not a grey: anti-aliased dark text passes through greys
    "pending": ("#dddddd", "#1a1a1a"),
}
OTHER_COLOUR = ("#606060", "#ffffff")  # HTML colours of a status not listed above

# A run's state (`kagent runs`, `kagent show`).
STATE_STYLES: dict[str, str] = {"running": "cyan", "finished": "green", "stopped": "yellow", "crashed": "red"}

# A batch task's status (agent.batch_files): terminal style, then HTML (fill, ink).
TASK_STATUS_STYLES: dict[str, str] = {
    "correct": "green", "no_correct": "red", "task_error": "magenta", "skipped": "yellow",
    "interrupted": "yellow", "running": "cyan", "pending": "white",
}
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


def display_status(record: Any) -> str:
    """A candidate record's status as shown: its verdict status (correct, incorrect, ...), else
    its archive status (pending, no_code)."""
    return record.verdict_status or record.status


# ---------------------------------------------------------------- numbers and times


def speedup_text(speedup: float | None, missing: str = "-") -> str:
    """A speedup (a ratio of times, reference over candidate) as `1.23x`; `missing` for None."""
    return f"{speedup:.2f}x" if speedup is not None else missing


def now() -> str:
    """The current time, UTC, ISO 8601 with milliseconds (`2025-01-31T12:00:00.123+00:00`): the
    one timestamp format of archives, batch files and reports."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


# ---------------------------------------------------------------- verdicts


def candidate_line(candidate_id: int, verdict: Any) -> str:
    """One line for a person about a finished candidate: id, verdict, speedup, why it failed
    (the verdict's message and, for one that died, the last line of its stderr)."""
    speedup = f" {speedup_text(verdict.speedup)}" if verdict.speedup is not None else ""
    line = f"#{candidate_id} {verdict.status}{speedup}"
    if verdict.status != "correct":
        line += f" ({verdict.reason}): {verdict.message}"
        last = failure_tail(verdict, lines=1)
        if last and verdict.status in ("runtime_error", "timeout", "compile_error"):
            line += f" | {one_line(last, 160)}"
    return line


def print_verdict(verdict: Any, out: Any = None) -> None:
    """A verdict for a person, the one layout of `kagent eval` and `kagent show --candidate`:
    the status line (status, reason, message), `verdict_table`, then the tails of the compile
    log or traceback and of stderr where the verdict holds them. Printed on `out` (a rich
    Console; default: stdout's)."""
    out = out or console
    style = STATUS_STYLES.get(verdict.status, "red")
    out.print(Text.assemble((verdict.status, f"bold {style}"), f" ({verdict.reason}) {verdict.message}"))
    out.print(verdict_table(verdict))
    artifacts = verdict.artifacts
    log = artifacts.compile_log or artifacts.traceback
    if log and log.strip():
        out.print(Text("compile log (tail)" if artifacts.compile_log else "traceback (tail)", style="bold"))
        out.print(Text(log.strip()[-2000:]))
    if artifacts.stderr_tail and artifacts.stderr_tail.strip():
        out.print(Text("stderr (tail)", style="bold"))
        out.print(Text(artifacts.stderr_tail.strip()[-1000:]))


def verdict_table(verdict: Any) -> Table:
    """Every fact a verdict holds, one per row: sizes, input sets, errors, times (median, with
    their spread in ms), speedups, speed of light, ops and launches, resources, notes. Fits an
    80-column terminal: long values break between items (input sets) or words, never inside a
    number."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
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
    if verdict.ref_time_ms is not None and verdict.candidate_time_ms is not None:
        table.add_row("time reference / candidate", f"{verdict.ref_time_ms:.4f} ms / {verdict.candidate_time_ms:.4f} ms")
    for side, stats in (("reference", verdict.ref_timing), ("torch.compile", verdict.compile_timing),
                        ("candidate", verdict.candidate_timing)):
        if stats is not None:
            table.add_row(f"{side} spread", f"p20 {stats.p20_ms:.4f} ms, p80 {stats.p80_ms:.4f} ms, {stats.runs} runs")
    if verdict.ref_time_ms is not None and not verdict.timing_meaningful:
        table.add_row("timing", Text("not a performance measurement on this device", style="dim"))
    if verdict.speedup is not None:
        table.add_row("speedup", Text.assemble(speedup_text(verdict.speedup),
                                               ("  implausible" if verdict.implausible_speedup else "", "red")))
    if verdict.speedup_vs_compile is not None:
        compiled = f" ({verdict.compile_time_ms:.4f} ms compiled)" if verdict.compile_time_ms is not None else ""
        table.add_row("vs torch.compile", speedup_text(verdict.speedup_vs_compile) + compiled)
    if verdict.sol_fraction is not None:
        table.add_row("speed of light", f"{verdict.sol_fraction:.0%} ({verdict.sol_time_ms:.4f} ms bound)")
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
