"""The search: a Coder writes, the sandbox judges, a Judge diagnoses, the archive remembers,
the selection policy picks what to refine next.

One attempt = choose a parent -> ask the Coder -> extract the code -> evaluate it -> ask the
Judge. Several attempts are in flight at once (their LLM calls overlap); evaluations are
bounded by a pool of sandboxes. Every step is written to the archive as it happens, so a run
killed at any point can be inspected and resumed.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

from kagent.agent.archive import Archive, LLMCallRecord, RunRecord
from kagent.agent.config import RunConfig
from kagent.agent.best import best_candidate
from kagent.agent.executors import make_executor
from kagent.agent.extract import extract_code, extract_idea
from kagent.agent.knowledge import guides_for
from kagent.agent.judge import JudgeFeedback, judge_messages, parse_feedback, retry_message, verdict_facts
from kagent.agent.present import candidate_line, now, speedup_text
from kagent.agent.prompts import backend_guide, render
from kagent.agent.providers import Completion, Message, Provider, make_provider
from kagent.agent.selection import Choice, fitness, make_policy
from kagent.sandbox import sizes
from kagent.errors import KagentError, ProviderError, SandboxError, UsageError, one_line
from kagent.sandbox import EvalRequest, Verdict

MAX_PROVIDER_FAILURES = 3  # consecutive failed LLM calls end the run
MAX_HARNESS_FAILURES = 3  # consecutive evaluations kagent itself could not run end the run
HISTORY_LINES = 12  # the Coder sees this many of the run's latest candidates, one line each
# At the end of a run the best is re-timed; when that dethrones it, the new best is re-timed in
# turn, at most this many candidates (each costs one evaluation).
FINAL_RETIMES = 3


def device_description(device: str) -> str:
    """One line describing the device for the prompts: the GPU's name and memory, or the CPU's model,
    cores and widest SIMD."""
    if device == "cuda":
        import subprocess

        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True).stdout.strip().splitlines()
        return f"NVIDIA GPU: {out[0] if out else 'unknown'}"
    flags, name = set(), "unknown CPU"
    if os.path.exists("/proc/cpuinfo"):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and name == "unknown CPU":
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    simd = next((label for flag, label in (("avx512f", "AVX-512 (16 fp32 lanes)"), ("avx2", "AVX2 (8 fp32 lanes)"),
                                           ("sse4_2", "SSE4.2 (4 fp32 lanes)")) if flag in flags), "unknown SIMD")
    return f"CPU: {name}, {os.cpu_count()} cores, {simd}"


@dataclass
class RunSummary:
    """What a finished run reports (`kagent optimize --json`): stop reason, counts, the best candidate
    and its speedups (ratios over eager PyTorch and torch.compile), tokens, cost in USD."""

    run_id: str
    run_dir: Path
    stop_reason: str
    candidates: int
    correct: int
    best_candidate_id: int | None
    best_speedup: float | None
    best_speedup_vs_compile: float | None
    best_path: Path | None
    tokens: int
    cost_usd: float
    error: str | None = None  # why the run ended, when a provider or kagent itself kept failing
    scaled_sizes: dict[str, int] | None = None  # the task's sizes shrunk to fit (sandbox/sizes.py)

    def as_json(self) -> dict:
        """The summary as the JSON object `kagent optimize --json` prints."""
        return {
            "run_id": self.run_id, "run_dir": str(self.run_dir), "stop_reason": self.stop_reason,
            "candidates": self.candidates, "correct": self.correct, "best_candidate_id": self.best_candidate_id,
            "best_speedup": self.best_speedup, "best_speedup_vs_compile": self.best_speedup_vs_compile,
            "best_path": str(self.best_path) if self.best_path else None,
            "tokens": self.tokens, "cost_usd": round(self.cost_usd, 6), "error": self.error,
            "scaled_sizes": self.scaled_sizes,
        }


def harness_error(config: RunConfig, reason: str, message: str) -> Verdict:
    """A verdict of status `error`: kagent, the machine or a stop failed this evaluation, not the
    kernel. Reasons: `interrupted` (Ctrl-C killed it), `worker_failed` (the sandbox could not
    run it), `harness_error` (anything else: a missing file, a full disk). No fitness, no Judge,
    no repair; `--resume` evaluates the candidate again."""
    return Verdict(status="error", reason=reason, message=message, backend=config.backend, device=config.device)


class Run:
    """One search over one task: the Coder and Judge providers, the archive, the selection policy and
    an executor of sandbox evaluations, with the run's budgets. Built by `start` or `reopen`;
    `run()` searches until a budget or a stop rule ends it; `close()` stops the executor."""

    def __init__(self, config: RunConfig, run_dir: Path, archive: Archive, coder: Provider, judge: Provider,
                 on_update: Callable[["Run"], None] | None = None, facts: sizes.TaskFacts | None = None):
        self.config = config
        # Found once per run in a keyless process (task_facts()): the sizes are sent with every
        # evaluation, the ops choose the Coder's guides.
        facts = facts or task_facts(config)
        self.sizes = facts.sizes
        self.run_dir = run_dir
        self.archive = archive
        self.task_path = Path(config.task_path)
        self.task_source = self.task_path.read_text()
        self.coder, self.judge = coder, judge
        self.policy = make_policy(config)
        self.device_text = device_description(config.device)
        from kagent.sandbox import BACKENDS  # here: the backends' modules import torch

        self.backend_guide = backend_guide(BACKENDS[config.backend])
        self.guides_text = "\n\n".join(render("guide", title=g.title, text=g.text)
                                        for g in guides_for(facts.ops, config.backend))
        self.executor = make_executor(config.executor, config.device, config.eval_workers, run_dir / "sandbox",
                                      config.ray_address)
        self.lock = threading.Lock()  # selection and budget decisions
        self.started = time.monotonic()
        self.provider_failures = 0
        self.harness_failures = 0
        self.last_error: str | None = None  # the last provider or harness failure, one line
        self.stop_reason: str | None = None
        self.interrupted = False
        self.on_update = on_update or (lambda run: None)
        self.say: Callable[[str], None] = lambda message: None  # progress lines for a person
        self.final_timings: dict[int, Verdict] = {}  # candidate id -> its re-timing at the end of the run
        (run_dir / "candidates").mkdir(parents=True, exist_ok=True)

    # -- budgets ------------------------------------------------------------------------------

    def _budget_reached(self) -> str | None:
        config, totals = self.config, self.archive.totals()
        if totals.candidates >= config.max_iters:
            return "max_iters"
        if config.max_cost is not None and totals.cost_usd >= config.max_cost:
            return "max_cost"
        if config.time_limit_s is not None and time.monotonic() - self.started >= config.time_limit_s:
            return "time_limit"
        if self.provider_failures >= MAX_PROVIDER_FAILURES:
            return "provider_error"
        if self.harness_failures >= MAX_HARNESS_FAILURES:
            return "harness_error"
        return self._search_done()

    def _search_done(self) -> str | None:
        """`speed_of_light` when the best kernel is within `stop_at_sol` of the speed of light;
        `patience` after `patience` finished candidates without a better one than the best."""
        finished = [c for c in self.archive.candidates()
                    if c.status != "pending" and c.verdict_status != "error"]  # kagent's failures are no attempt
        best = best_candidate(finished)
        if (self.config.stop_at_sol and best is not None and best.verdict
                and (best.verdict.sol_fraction or 0.0) >= self.config.stop_at_sol):
            return "speed_of_light"
        since = [c for c in finished if best is None or c.id > best.id]
        if self.config.patience is not None and len(since) >= self.config.patience:
            return "patience"
        return None

    def _time_left(self) -> float | None:
        if self.config.time_limit_s is None:
            return None
        return max(0.0, self.config.time_limit_s - (time.monotonic() - self.started))

    @property
    def stopping(self) -> bool:
        """A stop that ends work in flight: Ctrl-C, or the time limit."""
        return self.interrupted or self.stop_reason == "time_limit"

    def cancel_calls(self) -> None:
        """End the LLM calls in flight (cmd: process groups are killed) and refuse new ones."""
        self.coder.cancel()
        self.judge.cancel()

    # -- one attempt --------------------------------------------------------------------------

    def _ask(self, provider: Provider, spec: str, role: str, messages: list[Message], candidate_id: int) -> Completion | None:
        """One LLM call, archived as it returns (reply or error, tokens, cost)."""
        started = now()
        try:
            completion, error = provider.complete(role, messages), None
        except ProviderError as err:
            completion, error = None, str(err)
        if error and not provider.cancelled:  # a cancelled call is the stop's doing, not the provider's
            with self.lock:
                self.provider_failures += 1
                self.last_error = error
            self.say(f"#{candidate_id} {role} LLM call failed: {error}")
        elif not error:
            with self.lock:
                self.provider_failures = 0
        tokens_in, tokens_out = (completion.input_tokens, completion.output_tokens) if completion else (0, 0)
        price = self.config.price(spec)
        self.archive.add_llm_call(LLMCallRecord(
            candidate_id=candidate_id, role=role, provider=spec.split(":", 1)[0], model=spec,
            messages_json=json.dumps([m.model_dump() for m in messages]),
            reply=completion.text if completion else None, error=error,
            input_tokens=tokens_in, output_tokens=tokens_out,
            tokens_estimated=completion.tokens_estimated if completion else True,
            cost_usd=(tokens_in * price[0] + tokens_out * price[1]) / 1e6 if price else 0.0,
            started_at=started, finished_at=now(),
        ))
        return completion

    def _coder_messages(self, choice: Choice) -> list[Message]:
        """The Coder's request for `choice` (prompts/coder.md): task, backend guide, device, the
        parent with its verdict and the Judge's diagnosis, inspirations, guides, history."""
        parent_section = render("parent_none")
        if choice.parent_id is not None:
            parent = self.archive.candidate(choice.parent_id)
            parent_section = render(
                "parent", operation_instruction=render(f"operation_{choice.operation}"), parent=parent,
                verdict=parent.verdict, parent_facts=verdict_facts(parent.verdict) if parent.verdict else "",
                feedback=parent.judge,
            )
        inspirations = [render("inspiration", member=self.archive.candidate(cid)) for cid in choice.inspiration_ids]
        return [
            Message(role="system", content=render("coder_system")),
            Message(role="user", content=render(
                "coder", task_name=self.task_path.name, task_source=self.task_source.strip(),
                backend_guide=self.backend_guide, device_description=self.device_text,
                parent_section=parent_section, inspiration_section="\n\n".join(inspirations),
                guides_section=self.guides_text, history_section=self._history(),
            )),
        ]

    def _history(self) -> str:
        """One line per finished candidate of this run (the latest HISTORY_LINES): its idea, in
        the Coder's words, and what came of it, so the Coder does not repeat failed ideas."""
        replies = {call.candidate_id: call.reply for call in self.archive.llm_calls("coder") if call.reply}
        lines = [render("history_line", record=record, idea=extract_idea(replies.get(record.id, "")) or "no idea stated")
                 for record in self.archive.candidates()
                 if record.status != "pending" and record.verdict_status != "error"]  # error: not the kernel's outcome
        return "\n".join(lines[-HISTORY_LINES:])

    def attempt(self, candidate_id: int, choice: Choice) -> None:
        """One attempt for a new candidate: ask the Coder, then evaluate and judge its reply
        (`finish`). A failed Coder call leaves the candidate without code."""
        completion = self._ask(self.coder, self.config.model, "coder", self._coder_messages(choice), candidate_id)
        if completion is None:
            stopped = self.coder.cancelled
            self.archive.mark_no_code(candidate_id, "the run stopped before the Coder replied" if stopped
                                      else f"the Coder's provider failed: {self.last_error}")
            if not stopped:
                self.say(f"#{candidate_id} no code: the Coder's provider failed")
            return
        self.finish(candidate_id, completion.text, completion.truncated)

    def finish(self, candidate_id: int, reply: str, truncated: bool = False) -> None:
        """From a Coder reply to an evaluated, judged candidate (also used by resume)."""
        source = extract_code(reply)
        if source is None:
            self.archive.mark_no_code(candidate_id, "the reply was cut off at the model's output token limit"
                                      if truncated else "the reply contained no Python code defining ModelNew")
            return
        digest = hashlib.sha256(source.encode()).hexdigest()
        duplicate = self.archive.find_by_hash(digest)
        kernel_path = self.run_dir / "candidates" / f"{candidate_id:04d}.py"
        self.archive.set_candidate_source(candidate_id, source, digest, str(kernel_path))
        try:
            kernel_path.write_text(source)
        except OSError as err:  # a full disk: kagent's failure, not the kernel's (--resume retries)
            verdict = harness_error(self.config, "harness_error", f"cannot write {kernel_path}: {err.strerror or err}")
            self.archive.record_verdict(candidate_id, verdict, None)
            self.say(candidate_line(candidate_id, verdict))
            return
        # A source whose evaluation kagent failed (status error) was never judged: evaluate it again.
        if duplicate is not None and duplicate.id != candidate_id and duplicate.verdict_status != "error":
            self.archive.mark_no_code(candidate_id, f"identical to candidate #{duplicate.id}")
            self.say(f"#{candidate_id} no code: identical to candidate #{duplicate.id}")
            return
        if self.interrupted:
            return  # pending, with its reply archived: --resume evaluates it
        self.evaluate_and_judge(candidate_id, source, kernel_path)

    def evaluate_and_judge(self, candidate_id: int, source: str, kernel_path: Path) -> None:
        """Evaluate a candidate's kernel file, archive the verdict, and ask the Judge about it
        unless kagent failed the evaluation (status error) or the run is stopping."""
        verdict = self.evaluate(kernel_path)
        if verdict.timing_noisy and fitness(verdict, self.config.baseline) > self._best_fitness():
            verdict = self._retimed(kernel_path, verdict)  # not crowned on a noisy measurement
        self.archive.record_verdict(candidate_id, verdict, fitness(verdict, self.config.baseline))
        self.say(candidate_line(candidate_id, verdict))
        self.on_update(self)
        if verdict.status == "error" or self.stopping:
            return
        feedback = self.ask_judge(candidate_id, source, verdict)
        if feedback is not None:
            self.archive.record_judge(candidate_id, feedback.model_dump())

    def evaluate(self, kernel_path: Path) -> Verdict:
        """The sandbox's verdict on one kernel file, or a verdict of status `error` when kagent
        could not evaluate it (see `harness_error`)."""
        request = EvalRequest(
            task_path=str(self.task_path), candidate_path=str(kernel_path), backend=self.config.backend,
            device=self.config.device, seeds=[secrets.randbelow(2**31) for _ in range(3)],
            compile_baseline=self.config.baseline == "compile",
            scaled_sizes=self.sizes.scaled, variant_sizes=self.sizes.variant,
        )
        try:
            verdict = self.executor.evaluate(request, timeout_s=self.config.eval_timeout_s)
        except SandboxError as err:
            verdict = harness_error(self.config, "worker_failed", one_line(err))
        except (KagentError, OSError) as err:
            verdict = harness_error(self.config, "harness_error", one_line(err))
        if self.interrupted:  # Ctrl-C killed the worker: whatever it reported says nothing of the kernel
            verdict = harness_error(self.config, "interrupted",
                                    "the run was interrupted during this evaluation (--resume evaluates it again)")
        with self.lock:
            if verdict.status == "error" and verdict.reason != "interrupted":
                self.harness_failures += 1
                self.last_error = f"{verdict.reason}: {verdict.message}"
            else:
                self.harness_failures = 0
        return verdict

    def _best_fitness(self) -> float:
        best = best_candidate(self.archive.candidates())
        return best.fitness or 0.0 if best else 0.0

    def _retimed(self, kernel_path: Path, first: Verdict) -> Verdict:
        """A fresh evaluation of a candidate whose noisy timing would make it the best. The
        re-timing stands, unless it is noisy too: then the lower of the two speedups (a fluke
        must not crown a candidate). A failing re-evaluation fails the candidate."""
        second = self.evaluate(kernel_path)
        both_noisy = second.status == "correct" and second.timing_noisy
        keep_first = both_noisy and (first.speedup or 0.0) < (second.speedup or 0.0)
        kept, other = (first, second) if keep_first else (second, first)
        measured = speedup_text(other.speedup, missing=other.status)
        kept.artifacts.notes.append(
            f"timed twice, both noisy: this is the lower speedup (the other evaluation: {measured})" if both_noisy
            else f"re-timed: the first timing was noisy ({measured})")
        return kept

    def retime_best(self) -> None:
        """Re-time the best candidate (a fresh evaluation through the same executor) and record
        that verdict in its place, before best.py is written from the archive. When the re-timing
        dethrones it, the new best is re-timed too (at most FINAL_RETIMES candidates). A best
        without a meaningful timing is not re-timed."""
        for _ in range(FINAL_RETIMES):
            best = best_candidate(self.archive.candidates())
            if best is None or best.id in self.final_timings or best.speedup is None:
                return
            self.say(f"re-timing the best, candidate #{best.id} ({speedup_text(best.speedup)})")
            try:
                verdict = self.evaluate(self.run_dir / "candidates" / f"{best.id:04d}.py")
            except KagentError as err:
                self.say(f"the best could not be re-timed: {err}")
                return
            verdict.artifacts.notes.append(f"re-timed at the end of the run; measured {speedup_text(best.speedup)} during the search")
            self.archive.record_verdict(best.id, verdict, fitness(verdict, self.config.baseline))
            self.final_timings[best.id] = verdict

    def ask_judge(self, candidate_id: int, source: str, verdict: Verdict) -> JudgeFeedback | None:
        """The Judge's feedback on an evaluated candidate; one retry after a malformed answer; None
        when the Judge fails twice or its provider fails."""
        messages = judge_messages(self.task_path.name, self.task_source, candidate_id, source, verdict, self.device_text)
        for _ in range(2):  # one retry for a malformed answer
            completion = self._ask(self.judge, self.config.judge, "judge", messages, candidate_id)
            if completion is None:
                return None
            try:
                return parse_feedback(completion.text)
            except ValueError as err:
                messages = messages + [Message(role="assistant", content=completion.text), retry_message(str(err))]
        return None

    # -- the whole run ------------------------------------------------------------------------

    def resume_pending(self) -> None:
        """Candidates a stopped run left unfinished: finish those whose reply was recorded, and
        evaluate again those kagent failed to evaluate (status error: interrupted, ...)."""
        replies = {c.candidate_id: c.reply for c in self.archive.llm_calls(role="coder") if c.reply is not None}
        for record in self.archive.candidates():
            if self.interrupted:
                return
            if record.verdict_status == "error" and record.source is not None:
                kernel_path = self.run_dir / "candidates" / f"{record.id:04d}.py"
                kernel_path.write_text(record.source)
                self.evaluate_and_judge(record.id, record.source, kernel_path)
                continue
            if record.status != "pending":
                continue
            if record.id in replies:
                self.finish(record.id, replies[record.id])
            else:
                self.archive.mark_no_code(record.id, "interrupted before the Coder replied")

    def _next_choice(self) -> tuple[int, Choice] | None:
        with self.lock:
            self.stop_reason = self.stop_reason or self._budget_reached()
            if self.stop_reason:
                return None
            records = self.archive.candidates()
            choice = self.policy.choose(records, iteration=len(records))
            candidate_id = self.archive.add_candidate(
                iteration=len(records), island=choice.island, parent_id=choice.parent_id,
                inspiration_ids=choice.inspiration_ids, operation=choice.operation,
            )
            return candidate_id, choice

    def run(self) -> str:
        """Search until a budget (max_iters, max_cost in USD, time_limit_s in seconds) or a stop rule
        (patience, speed_of_light, repeated provider or harness failures) ends the run,
        `concurrency` attempts in flight; then re-time the best and mark the run finished.
        Returns the stop reason. KeyboardInterrupt stops the run (its state: stopped) and
        propagates; an unexpected error in an attempt propagates."""
        self.archive.set_state("running")
        in_flight: set[Future] = set()
        pool = ThreadPoolExecutor(max_workers=self.config.concurrency)
        try:
            while True:
                while len(in_flight) < self.config.concurrency:
                    nxt = self._next_choice()
                    if nxt is None:
                        break
                    in_flight.add(pool.submit(self.attempt, *nxt))
                if not in_flight:
                    break
                left = None if self.stop_reason else self._time_left()
                done, in_flight = wait(in_flight, timeout=left, return_when=FIRST_COMPLETED)
                if not done and left is not None:  # the time limit passed with calls in flight
                    with self.lock:
                        self.stop_reason = self.stop_reason or "time_limit"
                    self.cancel_calls()
                for future in done:
                    future.result()  # an unexpected error in an attempt is a bug: surface it
                self.on_update(self)
        except KeyboardInterrupt:
            self.interrupt()
            self.say("stopping: LLM calls and evaluations in flight are ended (Ctrl-C again to quit now)")
            try:
                pool.shutdown(wait=True, cancel_futures=True)
            except KeyboardInterrupt:
                os._exit(130)  # everything finished is already in the archive
            raise
        pool.shutdown(wait=True)
        if self.stop_reason != "interrupted":
            self.retime_best()
        self.archive.set_state("finished", self.stop_reason)
        return self.stop_reason or "max_iters"

    def interrupt(self) -> None:
        """Stop now: no new attempt, no further evaluation or Judge call; evaluations running
        are killed. Unfinished candidates stay pending for --resume."""
        self.stop_reason = "interrupted"
        self.interrupted = True
        self.archive.set_state("stopped", "interrupted")
        self.cancel_calls()
        self.executor.close()

    def close(self) -> None:
        """Stop the executor and its sandbox workers."""
        self.executor.close()


def write_best(run: Run) -> Path | None:
    """Write the best candidate (`agent.best`) to RUN_DIR/best.py with a header saying its speedup and
    how it was measured; its path, or None when nothing is correct."""
    best = best_candidate(run.archive.candidates())
    if best is None:
        return None
    speedup = f"{speedup_text(best.speedup)} over eager PyTorch" if best.speedup else "speedup not measured on this device"
    slower = ""
    if best.speedup is not None and best.speedup < 1.0:
        slower = (f"# SLOWER than eager PyTorch: this kernel takes {1 / best.speedup:.1f}x the time of the task's own\n"
                  f"# Model on this device; it is correct, but the PyTorch Model is the faster choice.\n")
    if best.speedup:
        retimed = run.final_timings.get(best.id)
        speedup += ", re-timed at the end of the run" if retimed else ", measured during the search (not re-timed)"
        if best.verdict and best.verdict.timing_noisy:
            speedup += f"; timing noisy (spread {best.verdict.timing_spread:.0%}): not to be trusted"
    header = (
        f"# kagent best kernel: a drop-in ModelNew for {run.task_path.name}\n"
        f"# task: {run.task_path}\n# backend: {run.config.backend}  device: {run.config.device} ({run.device_text})\n"
        f"# speedup: {speedup} (candidate #{best.id})\n{slower}# run: {run.run_dir}\n"
    )
    path = run.run_dir / "best.py"
    path.write_text(header + best.source)
    return path


def new_run_dir(config: RunConfig) -> tuple[str, Path]:
    """A fresh run id (local time, task name, random suffix) and its directory under the runs
    directory."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_id = f"{stamp}-{Path(config.task_path).stem}-{uuid.uuid4().hex[:4]}"
    return run_id, Path(config.runs_dir) / run_id


def summarize(run: Run, stop_reason: str) -> RunSummary:
    """The summary of a run that ended with `stop_reason`; writes best.py."""
    totals = run.archive.totals()
    best_path = write_best(run)
    return RunSummary(
        run_id=run.run_dir.name, run_dir=run.run_dir, stop_reason=stop_reason, candidates=totals.candidates,
        correct=totals.correct, best_candidate_id=totals.best_candidate_id, best_speedup=totals.best_speedup,
        best_speedup_vs_compile=totals.best_speedup_vs_compile, best_path=best_path,
        tokens=totals.tokens_in + totals.tokens_out, cost_usd=totals.cost_usd,
        error=run.last_error if stop_reason in ("provider_error", "harness_error") else None,
        scaled_sizes=run.sizes.scaled or None,
    )


def start(config: RunConfig, on_update=None) -> Run:
    """Validate the task and the models, then create a run directory and archive; return the
    Run (not started). A bad task, model spec or missing key fails before anything is written."""
    facts = task_facts(config)  # the task is checked where no API key is: a bad one fails here
    coder, judge = providers(config)
    run_id, run_dir = new_run_dir(config)
    run_dir.mkdir(parents=True)
    archive = Archive.open(run_dir, create=True)
    archive.create_run(RunRecord(
        id=run_id, task_path=config.task_path, task_name=Path(config.task_path).stem, model=config.model,
        judge_model=config.judge, backend=config.backend, device=config.device,
        config_json=config.model_dump_json(), state="running", stop_reason=None,
        created_at=now(), updated_at=now(), pid=os.getpid(),
    ))
    (run_dir / "config.json").write_text(config.model_dump_json(indent=2))
    return Run(config, run_dir, archive, coder, judge, on_update, facts)


def task_facts(config: RunConfig) -> sizes.TaskFacts:
    """The run's task checked, sized and traced in a process without API keys (sizes.decide).
    Raises TaskError, TaskTooLarge."""
    from kagent.sandbox import DEFAULT_MEMORY_MB

    budget = sizes.DEFAULT_MAX_INPUT_MB[config.device] if config.max_input_mb is None else config.max_input_mb
    return sizes.decide(config.task_path, budget, DEFAULT_MEMORY_MB, config.device)


def reopen(run_dir: Path, overrides: dict, on_update=None) -> Run:
    """The run in `run_dir`, its archived config updated with `overrides` (budgets), set running
    again. UsageError when another live process still runs it."""
    archive = Archive.open(run_dir, create=False)
    try:
        record = archive.run()
        if record.state == "running" and record.pid != os.getpid() and running_here(record.pid, record.host):
            raise UsageError(f"{run_dir}: the run is still running (pid {record.pid}): stop it before --resume")
        config = RunConfig.model_validate(json.loads(record.config_json) | overrides)
        coder, judge = providers(config)
    except BaseException:
        archive.close()
        raise
    archive.set_state("running")
    return Run(config, run_dir, archive, coder, judge, on_update)


def running_here(pid: int | None, host: str | None) -> bool:
    """Whether `pid` is a live kagent process on this machine (not another that reused the pid)."""
    import socket

    if pid is None or host not in (None, socket.gethostname()):
        return False
    try:
        return b"kagent" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def providers(config: RunConfig) -> tuple[Provider, Provider]:
    """The Coder's and the Judge's providers for `config`. ConfigError for a bad model spec or a
    missing key."""
    return (make_provider(config.model, base_url=config.base_url, timeout_s=config.llm_timeout_s),
            make_provider(config.judge, base_url=config.base_url, timeout_s=config.llm_timeout_s))
