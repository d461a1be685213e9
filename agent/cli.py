"""The `kagent` command line."""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from sandbox.errors import KagentError, UsageError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="An LLM agent that writes fast, honest kernels.")
err_console = Console(stderr=True)
console = Console()



@app.callback()
def _root() -> None:
    """kagent: turn a PyTorch task into a fast, honest kernel."""


STATUS_STYLE = {"correct": "green", "incorrect": "red", "rejected": "magenta", "timeout": "yellow", "not_run": "cyan"}


def fail(err: KagentError) -> None:
    err_console.print(f"[red]error:[/red] {err}", highlight=False, soft_wrap=True)
    raise typer.Exit(err.exit_code)


def resolve_backend_device(candidate: Path, backend: Optional[str], device: Optional[str]) -> tuple[str, str]:
    from sandbox.backends import BACKENDS, detect_backend
    from sandbox.executor import gpu_available

    if backend is None:
        backend = detect_backend(candidate.read_text())
        if backend is None:
            raise UsageError(f"{candidate}: cannot tell the backend (no load_cpp, load_inline or triton.jit): pass --backend")
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    chosen = BACKENDS[backend]
    device = device or chosen.default_device(gpu_available())
    if device not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {device!r}: choose cpu or cuda")
    if device not in chosen.devices:
        raise UsageError(f"the {backend} backend runs on {', '.join(chosen.devices)}, not {device}")
    if device == "cuda" and not gpu_available():
        raise UsageError("--device cuda: no NVIDIA GPU found on this machine")
    return backend, device


def print_verdict(verdict) -> None:
    style = STATUS_STYLE.get(verdict.status, "red")
    console.print(f"[bold {style}]{verdict.status}[/] ({verdict.reason}) {verdict.message}", highlight=False)
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_row("backend / device", f"{verdict.backend} / {verdict.device}")
    if verdict.input_sets:
        table.add_row("input sets", ", ".join(verdict.input_sets))
    if verdict.max_abs_error is not None:
        table.add_row("max abs / rel error", f"{verdict.max_abs_error:.3g} / {verdict.max_rel_error:.3g}")
    if verdict.ref_time_ms is not None:
        meaningful = "" if verdict.timing_meaningful else "  (not a performance measurement)"
        table.add_row("time ref / candidate", f"{verdict.ref_time_ms:.3f} ms / {verdict.candidate_time_ms:.3f} ms{meaningful}")
    if verdict.speedup is not None:
        table.add_row("speedup", f"{verdict.speedup:.2f}x" + ("  [red]implausible[/]" if verdict.implausible_speedup else ""))
    for use in verdict.artifacts.resources:
        facts = use.error or f"{use.registers} regs, {use.shared_memory_bytes} B smem, {use.spill_stores_bytes} B spill stores"
        table.add_row(f"{use.kernel} @ {use.target}", facts)
    for note in verdict.artifacts.notes:
        table.add_row("note", note)
    console.print(table)
    if verdict.status in ("compile_error", "runtime_error") and (verdict.artifacts.compile_log or verdict.artifacts.traceback):
        console.print((verdict.artifacts.compile_log or verdict.artifacts.traceback).strip()[-1500:], highlight=False, markup=False)


@app.command("eval")
def eval_command(
    task: Path = typer.Argument(..., help="KernelBench task file (class Model, get_inputs, get_init_inputs)."),
    candidate: Path = typer.Argument(..., help="Candidate file defining ModelNew."),
    backend: Optional[str] = typer.Option(None, help="triton, cuda or cpp (default: detected from the candidate)."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: the GPU if the backend can use it)."),
    timeout: float = typer.Option(120.0, help="Seconds for the candidate's whole evaluation."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON verdict on stdout."),
) -> None:
    """Check a candidate kernel against a task: correctness, anti-cheat checks, speedup."""
    from sandbox.executor import Sandbox
    from sandbox.models import EvalRequest

    try:
        if not task.is_file():
            raise UsageError(f"{task}: task file not found")
        if not candidate.is_file():
            raise UsageError(f"{candidate}: candidate file not found")
        if timeout <= 0:
            raise UsageError(f"--timeout must be positive, got {timeout:g}")
        backend, device = resolve_backend_device(candidate, backend, device)
        request = EvalRequest(
            task_path=str(task.resolve()), candidate_path=str(candidate.resolve()), backend=backend,
            device=device, seeds=[secrets.randbelow(2**31) for _ in range(3)],
        )
        with Sandbox(device) as sandbox:
            verdict = sandbox.evaluate(request, timeout_s=timeout)
    except KagentError as err:
        fail(err)
    if as_json:
        sys.stdout.write(json.dumps(verdict.model_dump(mode="json")) + "\n")
    else:
        print_verdict(verdict)
    raise typer.Exit(0 if verdict.status == "correct" else 1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
