"""The `kagent` command line."""

from __future__ import annotations

import json
import math
import re
import secrets
import sys
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from kagent.agent import options as opt
from kagent.agent.console import console, err_console, fail
from kagent.sandbox import backend_names
from kagent.agent.present import print_verdict, speedup_text

from kagent.errors import CandidateError, KagentError, UsageError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="An LLM agent that writes fast, honest kernels.")

# typer 0.29 labels every option with its type, so a flag reads `--json <bool>` as if it took a
# value: show flags bare.
_display_type = typer.core.TyperOption.display_type_rich
typer.core.TyperOption.display_type_rich = lambda self, ctx: None if self.is_flag else _display_type(self, ctx)


def _print_version(value: bool) -> None:
    if value:
        import kagent

        console.print(f"kagent {kagent.__version__}", highlight=False)
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """kagent: turn a PyTorch task into a fast, honest kernel."""


# Said once on stderr when a candidate ran with less isolation than the sandbox aims for.
ISOLATION_WARNING = {
    "pid_namespace": "warning: the filesystem could not be made read-only for the candidate (isolation: pid_namespace): "
                     "it could write wherever this user can",
    "none": "warning: the candidate ran without PID and mount namespaces (isolation: none; refused by the system "
            "or turned off with KAGENT_SANDBOX_NAMESPACES=0): it could see other processes and write wherever this user can",
}


def read_candidate(candidate: Path) -> str:
    try:
        return candidate.read_text()
    except OSError as err:
        raise CandidateError(f"{candidate}: cannot read candidate: {err.strerror}") from None
    except UnicodeDecodeError:
        raise CandidateError(f"{candidate}: not a UTF-8 text file") from None


def resolve_backend_device(candidate: Path, backend: Optional[str], device: Optional[str]) -> tuple[str, str]:
    from kagent.sandbox import BACKENDS, detect_backend
    from kagent.sandbox import gpu_ready, probe_gpu, probe_torch

    if backend is None:
        backend = detect_backend(read_candidate(candidate))
        if backend is None:
            raise UsageError(f"{candidate}: cannot tell the backend (no load_cpp, load_inline or triton.jit): pass --backend")
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}: choose one of {backend_names()}")
    chosen = BACKENDS[backend]
    gpu = gpu_ready(probe_gpu(), probe_torch())  # what `kagent doctor` says
    device = device or chosen.default_device(gpu.can_run)
    if device not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {device!r}: choose cpu or cuda")
    if device not in chosen.devices:
        raise UsageError(f"the {backend} backend runs on {', '.join(chosen.devices)}, not {device}")
    if device == "cuda" and not gpu.can_run:
        raise UsageError(f"--device cuda: {gpu.reason}")
    return backend, device


MEMORY_UNITS = {"": 1, "k": 2**-10, "m": 1, "g": 2**10, "t": 2**20}  # in MB (2**20 bytes)
MEMORY_LIMIT = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", re.IGNORECASE)


def parse_memory_limit(text: str) -> int:
    """'8192', '8192MB', '8G', '8GiB', '512m' -> MB (2**20 bytes; units are binary, as `free`).
    Raises UsageError."""
    match = MEMORY_LIMIT.fullmatch(text)
    if not match:
        raise UsageError(f"--memory-limit: {text!r} is not a size (give MB, or a number with K, M, G or T)")
    mb = float(match.group(1)) * MEMORY_UNITS[match.group(2).lower()]
    if not 64 <= mb < 2**30:
        raise UsageError(f"--memory-limit: {text!r} is out of range (at least 64 MB)")
    return int(mb)


def error_object(err: KagentError) -> dict:
    """What `kagent eval --json` prints for an error that is not a candidate's verdict: the
    verdict's fields, null, with status `error` and a reason naming the kind."""
    from kagent.errors import TaskError, TaskTooLarge
    from kagent.sandbox import Verdict

    reason = ("task_too_large" if isinstance(err, TaskTooLarge) else "task_error" if isinstance(err, TaskError)
              else "usage_error" if isinstance(err, UsageError) else "sandbox_error")
    return {**{name: None for name in Verdict.model_fields}, "status": "error", "reason": reason, "message": str(err)}


@app.command("eval")
def eval_command(
    task: Path = typer.Argument(..., help="KernelBench task file (class Model, get_inputs, get_init_inputs)."),
    candidate: Path = typer.Argument(..., help="Candidate file defining ModelNew."),
    backend: Optional[str] = typer.Option(None, help=f"{backend_names(' or ')} (default: detected from the candidate)."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: the GPU if the backend can use it)."),
    timeout: float = typer.Option(120.0, help="Seconds for the candidate's whole evaluation."),
    memory_limit: str = typer.Option("8192", help="Memory for the whole evaluation: MB, or with a unit (16G, 512M)."),
    baseline: opt.Baseline = None,
    max_input_mb: opt.MaxInputMb = None,
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON verdict on stdout."),
) -> None:
    """Check a candidate kernel against a task: correctness, anti-cheat checks, speedup."""
    from kagent.agent.config import default_baseline
    from kagent.agent.options import check_field
    from kagent.sandbox import EvalRequest, Sandbox, sizes

    try:
        if not task.is_file():
            raise UsageError(f"{task}: task file not found")
        if not candidate.is_file():
            raise UsageError(f"{candidate}: candidate file not found")
        if not 0 < timeout < math.inf:  # NaN fails this too: it would never expire
            raise UsageError(f"--timeout must be a positive number of seconds, got {timeout:g}")
        memory_mb = parse_memory_limit(memory_limit)
        baseline = check_field("baseline", baseline) if baseline is not None else default_baseline()
        read_candidate(candidate)  # the worker reads it too: fail here, in one line
        backend, device = resolve_backend_device(candidate, backend, device)
        if max_input_mb is not None and max_input_mb < 0:
            raise UsageError(f"--max-input-mb must be 0 (never shrink) or a positive number of MB, got {max_input_mb}")
        with Sandbox(device) as sandbox:
            # The sandbox starts while the task is checked and sized as optimize does it
            # (sizes.decide: a process without API keys): both import torch for seconds.
            warming = threading.Thread(target=sandbox.warm_up, daemon=True)
            warming.start()
            try:
                plan = sizes.decide(str(task.resolve()), sizes.DEFAULT_MAX_INPUT_MB[device] if max_input_mb is None
                                    else max_input_mb, memory_mb, device).sizes
            finally:
                warming.join()
            request = EvalRequest(
                task_path=str(task.resolve()), candidate_path=str(candidate.resolve()), backend=backend,
                device=device, seeds=[secrets.randbelow(2**31) for _ in range(3)],
                scaled_sizes=plan.scaled, variant_sizes=plan.variant, compile_baseline=baseline == "compile",
            )
            verdict = sandbox.evaluate(request, timeout_s=timeout, memory_mb=memory_mb)
    except KagentError as err:
        if as_json:
            sys.stdout.write(json.dumps(error_object(err)) + "\n")
        fail(err)
    if verdict.isolation != "namespaces":
        err_console.print(ISOLATION_WARNING[verdict.isolation], soft_wrap=True, highlight=False, markup=False)
    if as_json:
        sys.stdout.write(json.dumps(verdict.model_dump(mode="json")) + "\n")
    else:
        print_verdict(verdict)
    raise typer.Exit(0 if verdict.status == "correct" else 1)


# The run ended for a reason other than a budget or Ctrl-C: its provider (or kagent's own
# evaluation) kept failing. The exit code of such a run (README).
EXIT_RUN_FAILED = 3
RESUME_FIXED = "leave them out (budgets may change: --max-iters, --max-cost, --time-limit, --concurrency, --llm-timeout)"


def _progress_table(run) -> Table:
    totals = run.archive.totals()
    counts: dict[str, int] = {}
    for record in run.archive.candidates():
        key = record.verdict_status or record.status
        counts[key] = counts.get(key, 0) + 1
    table = Table(title=f"kagent optimize {run.task_path.name}", show_header=False, box=None)
    table.add_row("candidates", f"{totals.candidates} / {run.config.max_iters}")
    table.add_row("verdicts", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-")
    best = f"{speedup_text(totals.best_speedup)} (#{totals.best_candidate_id})" if totals.best_speedup else (
        f"#{totals.best_candidate_id} (not timed)" if totals.best_candidate_id else "-")
    table.add_row("best speedup", best)
    table.add_row("tokens / cost", f"{totals.tokens_in + totals.tokens_out} / ${totals.cost_usd:.4f}")
    if run.last_error:
        table.add_row("last error", Text(run.last_error))
    return table


@app.command("optimize")
def optimize_command(
    task: Optional[Path] = typer.Argument(None, help="KernelBench task file (omit with --resume)."),
    config: opt.Config = None,
    model: opt.Model = None,
    judge_model: opt.JudgeModel = None,
    base_url: opt.BaseUrl = None,
    backend: opt.Backend = None,
    device: opt.Device = None,
    max_iters: opt.MaxIters = None,
    max_cost: Annotated[Optional[float], typer.Option(help="Stop once this many USD were spent on LLM calls.")] = None,
    time_limit: opt.TimeLimit = None,
    concurrency: opt.Concurrency = None,
    llm_timeout: opt.LlmTimeout = None,
    stop_at_sol: opt.StopAtSol = None,
    patience: opt.Patience = None,
    baseline: opt.Baseline = None,
    max_input_mb: opt.MaxInputMb = None,
    runs_dir: opt.RunsDir = None,
    prices: opt.Prices = None,
    resume: Annotated[Optional[str], typer.Option(
        help="Continue a run: its directory, or its id (or a unique start of one) under --runs-dir.")] = None,
    executor: opt.Executor = None,
    ray_address: opt.RayAddress = None,
    as_json: opt.AsJson = False,
) -> None:
    """Search for the fastest correct kernel for a task with a Coder and a Judge LLM."""
    from rich.live import Live

    from pydantic import ValidationError

    from kagent.agent import loop
    from kagent.agent.config import RunConfig, load_config, load_prices
    from kagent.agent.locate import resolve_run
    from kagent.agent.options import absolute, choose_target, invalid_option, merge, run_flags
    from kagent.agent.providers import parse_model_spec

    # Every path the user gave, made absolute here: it crosses into worker processes that run
    # in other directories (README, "Paths").
    task, runs_dir, prices, config = absolute(task), absolute(runs_dir), absolute(prices), absolute(config)
    budgets = run_flags(max_iters=max_iters, max_cost=max_cost, time_limit=time_limit, concurrency=concurrency,
                        llm_timeout=llm_timeout, stop_at_sol=stop_at_sol, patience=patience)
    try:
        if resume is not None:
            given = (("TASK", task), ("--config", config), ("--model", model), ("--judge-model", judge_model),
                     ("--base-url", base_url), ("--backend", backend), ("--device", device), ("--prices", prices),
                     ("--executor", executor), ("--ray-address", ray_address), ("--baseline", baseline))
            fixed = [flag for flag, value in given if value is not None]
            if fixed:
                raise UsageError(f"--resume continues the run with its own {', '.join(fixed)}: {RESUME_FIXED}")
            # --runs-dir, if given, is where a run id is looked up (as kagent show's).
            run_dir = absolute(resolve_run(resume, runs_dir or absolute(Path("runs")))[1])
            try:
                run = loop.reopen(run_dir, budgets)
            except ValidationError as err:
                raise invalid_option(err) from None
        else:
            flags = budgets | run_flags(task_path=task and str(task), model=model, judge_model=judge_model,
                                        base_url=base_url, backend=backend, device=device,
                                        runs_dir=runs_dir and str(runs_dir), executor=executor,
                                        ray_address=ray_address, baseline=baseline, max_input_mb=max_input_mb,
                                        prices=load_prices(prices) if prices else None)
            settings = merge(load_config(config), flags)
            if settings.batch:
                raise UsageError(f"{config}: the [batch] section is for kagent batch")
            fields = settings.run
            if "task_path" not in fields or "model" not in fields:
                raise UsageError("give a TASK and --model PROVIDER:MODEL (or --resume RUN_DIR)")
            for spec in (fields["model"], fields.get("judge_model") or fields["model"]):
                parse_model_spec(spec)
            fields["backend"], fields["device"] = choose_target(
                fields.get("backend"), fields.get("device"), here=fields.get("executor", "local") == "local")
            fields.setdefault("runs_dir", str(absolute(Path("runs"))))
            try:
                run_config = RunConfig(**fields).with_environment()
            except ValidationError as err:
                raise invalid_option(err, origin=settings) from None
            run_config.apply_environment()
            run = loop.start(run_config)
    except KagentError as err:
        fail(err, as_json)
    try:
        with Live(_progress_table(run), console=err_console, refresh_per_second=4, transient=as_json) as live:
            run.on_update = lambda r: live.update(_progress_table(r))
            run.say = lambda message: live.console.print(Text(message), highlight=False, soft_wrap=True)
            if resume is not None:
                run.resume_pending()
            stop_reason = run.run()
    except KeyboardInterrupt:
        if not run.interrupted:  # interrupted outside the loop (resuming pending candidates)
            run.interrupt()
        run.close()
        err_console.print(Text(f"stopped: resume with kagent optimize --resume {run.run_dir}"), soft_wrap=True)
        if as_json:
            sys.stdout.write(json.dumps(loop.summarize(run, "interrupted").as_json()) + "\n")
        raise typer.Exit(130)
    except KagentError as err:
        run.archive.set_state("crashed", str(err))
        fail(err, as_json)
    finally:
        run.close()
    summary = loop.summarize(run, stop_reason)
    if as_json:
        sys.stdout.write(json.dumps(summary.as_json()) + "\n")
    else:
        best = speedup_text(summary.best_speedup) if summary.best_speedup else "n/a"
        console.print(f"stopped by {summary.stop_reason}: {summary.correct}/{summary.candidates} correct, "
                      f"best {best}, {summary.tokens} tokens, ${summary.cost_usd:.4f}", highlight=False)
        if summary.error:
            console.print(Text(f"error: {summary.error}"), soft_wrap=True)
        if summary.best_path:
            console.print(Text(f"best kernel: {summary.best_path}"), soft_wrap=True)
    raise typer.Exit(EXIT_RUN_FAILED if summary.stop_reason in ("provider_error", "harness_error") else 0)


# Commands defined in their own modules register here, one line each.
from kagent.agent.batch import batch_command  # noqa: E402  (kagent batch)
app.command("batch")(batch_command)
from kagent.agent.report import report_command  # noqa: E402  (kagent report)
app.command("report")(report_command)
from kagent.agent.inspect_runs import runs_command, show_command  # noqa: E402  (kagent runs, kagent show)
app.command("runs")(runs_command)
app.command("show")(show_command)
from kagent.agent.doctor import doctor_command  # noqa: E402  (kagent doctor)
app.command("doctor")(doctor_command)


def main() -> None:
    """The console script. A `kagent eval` command line that cannot be parsed (a missing
    argument, an unknown option) is one error line, and with --json one JSON object too."""
    args = sys.argv[1:]
    if args[:1] != ["eval"]:
        app()
        return
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as err:  # the parser's errors (typer's own copy of click's)
        message = UsageError(" ".join((err.format_message() if hasattr(err, "format_message") else str(err)).split()))
        if "--json" in args:
            sys.stdout.write(json.dumps(error_object(message)) + "\n")
        err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
        raise SystemExit(2)
    except typer.Abort:
        raise SystemExit(130)
    raise SystemExit(code or 0)


if __name__ == "__main__":
    main()
