"""The agent itself, measured: `kagent batch` on example tasks with the cpp backend and a given
model, reporting what the issue asks a kernel agent to be judged by: correct rate, geometric-mean
speedup over eager PyTorch and over torch.compile (of each task's best kernel), its fraction of
the speed of light, and tokens per task.

    .venv/bin/python bench/bench_agent.py --model MODEL [--tasks 02_swish 05_layernorm ...]
        [--max-iters 2] [--out bench/results/agent.json]
    .venv/bin/python bench/bench_agent.py --retime BATCH_DIR [--out ...]

`--retime` judges each task's best kernel of an earlier batch again with `kagent eval` (one at
a time, default baseline: torch.compile), so a benchmark run on a busy machine can have its
speed figures taken again on a quiet one; tokens and candidates still come from the batch.

MODEL is any `--model` kagent takes: `openai:...`, `anthropic:...`, `replay:...`, or a `cmd:`
stand-in such as `cmd:python bench/mailbox_model.py DIR` (a capable model answering through a
folder). The batch runs one task at a time (`--workers 1 --concurrency 1`) so evaluations and
LLM calls do not overlap, with kagent's defaults otherwise (torch.compile baseline, stop at 0.8
of the speed of light). The batch directory is kept under --runs-dir; the metrics go to --out
(JSON) and stdout (a Markdown table for bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TASKS = ("02_swish", "05_layernorm", "08_linear_bias_relu", "10_rmsnorm", "12_cross_entropy")


def best_verdict(run_dir: str | None) -> dict | None:
    """The verdict of the run's best candidate (highest fitness among correct ones), read-only."""
    if not run_dir or not (Path(run_dir) / "archive.db").is_file():
        return None
    db = sqlite3.connect(f"file:{Path(run_dir) / 'archive.db'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT verdict_json FROM candidates WHERE verdict_status = 'correct' "
                         "ORDER BY fitness DESC, id LIMIT 1").fetchone()
    finally:
        db.close()
    return json.loads(row[0]) if row else None


def geomean(values: list[float]) -> float | None:
    """Geometric mean of positive values; None for none."""
    values = [v for v in values if v and v > 0]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def metrics(summary: dict) -> dict:
    """The benchmark's figures from a `kagent batch --json` summary and each run's archive.
    Speedups of a task without a correct kernel count in correct_rate only (geomean over
    correct tasks, as kagent batch reports it)."""
    rows = []
    for task in summary["tasks"]:
        verdict = best_verdict(task["run_dir"]) or {}
        rows.append({
            "task": task["task"], "status": task["status"], "candidates": task["candidates"],
            "speedup": verdict.get("speedup"), "speedup_vs_compile": verdict.get("speedup_vs_compile"),
            "sol_fraction": verdict.get("sol_fraction"), "timing_noisy": verdict.get("timing_noisy"),
            "tokens": task["tokens"], "stop_reason": task["stop_reason"],
        })
    return {"tasks": rows, **metrics_of(rows)}


def metrics_of(rows: list[dict]) -> dict:
    """The totals over per-task rows."""
    n = len(rows)
    return {
        "correct_rate": sum(r["status"] == "correct" for r in rows) / n if n else 0.0,
        "geomean_speedup": geomean([r["speedup"] for r in rows]),
        "geomean_speedup_vs_compile": geomean([r["speedup_vs_compile"] for r in rows]),
        "mean_sol_fraction": (sum(r["sol_fraction"] for r in rows if r["sol_fraction"] is not None)
                              / max(1, sum(r["sol_fraction"] is not None for r in rows))),
        "tokens_per_task": sum(r["tokens"] for r in rows) / n if n else 0.0,
    }


def retime(batch_dir: Path, result: dict) -> dict:
    """`result` with each correct task's speed figures from a fresh `kagent eval` of its best.py
    (the verdict's own fields: speedup, speedup_vs_compile, sol_fraction, timing_noisy)."""
    summary = json.loads((batch_dir / "summary.json").read_text())
    runs = {task["task"]: task["run_dir"] for task in summary["tasks"]}
    for row in result["tasks"]:
        best = Path(runs[row["task"]] or "") / "best.py"
        if row["status"] != "correct" or not best.is_file():
            continue
        task = Path(json.loads((Path(runs[row["task"]]) / "config.json").read_text())["task_path"])
        proc = subprocess.run([sys.executable, "-m", "kagent.agent.cli", "eval", str(task), str(best), "--json"],
                              stdout=subprocess.PIPE, text=True)
        verdict = json.loads(proc.stdout)
        row.update({key: verdict.get(key) for key in ("speedup", "speedup_vs_compile", "sol_fraction", "timing_noisy")})
        row["retimed_status"] = verdict["status"]
    return {**result, **metrics_of(result["tasks"]), "retimed": True}


def table(result: dict) -> str:
    """The per-task rows and the totals as Markdown."""
    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    lines = ["| task | status | candidates | vs eager | vs torch.compile | of speed of light | noisy | tokens |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["tasks"]:
        lines.append(f"| {r['task']} | {r['status']} | {r['candidates']} | {fmt(r['speedup'], '.2f')}x | "
                     f"{fmt(r['speedup_vs_compile'], '.2f')}x | {fmt(r['sol_fraction'], '.0%')} | "
                     f"{'yes' if r['timing_noisy'] else 'no'} | {r['tokens']} |")
    lines.append(f"| **all** | {result['correct_rate']:.0%} correct | | {fmt(result['geomean_speedup'], '.2f')}x "
                 f"(geomean) | {fmt(result['geomean_speedup_vs_compile'], '.2f')}x (geomean) | "
                 f"{result['mean_sol_fraction']:.0%} (mean) | | {result['tokens_per_task']:.0f} / task |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="PROVIDER:MODEL for the Coder and the Judge")
    parser.add_argument("--retime", type=Path, help="judge the best kernels of this batch directory again")
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), help="task names under tasks/")
    parser.add_argument("--max-iters", type=int, default=2, help="candidates per task")
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "bench" / "runs", help="where the batch is kept")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "agent.json")
    parser.add_argument("--llm-timeout", type=float, default=3600.0, help="seconds per LLM call (a stand-in is slow)")
    args = parser.parse_args()
    if args.retime:
        result = json.loads(args.out.read_text()) if args.out.is_file() else None
        if result is None or Path(result["batch_dir"]) != args.retime.resolve():
            summary = json.loads((args.retime / "summary.json").read_text())
            result = {"model": None, "batch_dir": str(args.retime.resolve()), **metrics(summary)}
        result = retime(args.retime.resolve(), result)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(table(result))
        return 0
    if not args.model:
        parser.error("give --model (or --retime BATCH_DIR)")
    task_dir = args.runs_dir / f"tasks-{time.strftime('%Y%m%d-%H%M%S')}"
    task_dir.mkdir(parents=True)
    for name in args.tasks:
        shutil.copy(ROOT / "tasks" / f"{name}.py", task_dir / f"{name}.py")
    began = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "kagent.agent.cli", "batch", str(task_dir), "--model", args.model, "--backend", "cpp",
         "--device", "cpu", "--max-iters", str(args.max_iters), "--workers", "1", "--concurrency", "1",
         "--llm-timeout", str(args.llm_timeout), "--runs-dir", str(args.runs_dir), "--json"],
        stdout=subprocess.PIPE, text=True)
    try:
        summary = json.loads(proc.stdout)
    except ValueError:
        print(f"kagent batch printed no summary (exit {proc.returncode})", file=sys.stderr)
        return 1
    result = {"model": args.model, "max_iters": args.max_iters, "wall_s": round(time.monotonic() - began, 1),
              "batch_dir": summary.get("batch_dir"), **metrics(summary)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    return 0 if proc.returncode == 0 else proc.returncode


if __name__ == "__main__":
    sys.exit(main())
