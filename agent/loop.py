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
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from kagent.agent.archive import Archive, LLMCallRecord, RunRecord
from kagent.agent.config import RunConfig
from kagent.agent.executors import make_executor
from kagent.agent.extract import extract_code
from kagent.agent.judge import JudgeFeedback, judge_messages, parse_feedback, retry_message, verdict_facts
from kagent.agent.prompts import render
from kagent.agent.providers import Completion, Message, Provider, make_provider
from kagent.agent.selection import Choice, IslandPolicy, fitness
from kagent.sandbox.errors import KagentError, ProviderError
from kagent.sandbox.models import EvalRequest, Verdict
from kagent.sandbox.task import validate_task

MAX_PROVIDER_FAILURES = 3  # consecutive failed LLM calls end the run
# At the end of a run the best is re-timed; when that dethrones it, the new best is re-timed in
# turn, at most this many candidates (each costs one evaluation).
FINAL_RETIMES = 3


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def device_description(device: str) -> str:
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
    run_id: str
    run_dir: Path
    stop_reason: str
    candidates: int
    correct: int
    best_candidate_id: int | None
    best_speedup: float | None
    best_path: Path | None
    tokens: int
    cost_usd: float

    def as_json(self) -> dict:
        return {
            "run_id": self.run_id, "run_dir": str(self.run_dir), "stop_reason": self.stop_reason,
            "candidates": self.candidates, "correct": self.correct, "best_candidate_id": self.best_candidate_id,
            "best_speedup": self.best_speedup, "best_path": str(self.best_path) if self.best_path else None,
            "tokens": self.tokens, "cost_usd": round(self.cost_usd, 6),
        }


class Run:
    def __init__(self, config: RunConfig, run_dir: Path, archive: Archive, coder: Provider, judge: Provider,
                 on_update: Callable[["Run"], None] | None = None):
        self.config = config
        self.run_dir = run_dir
        self.archive = archive
        self.task_path = Path(config.task_path)
        self.task_source = self.task_path.read_text()
        self.coder, self.judge = coder, judge
        self.policy = IslandPolicy(num_islands=config.islands, seed=config.seed)
        self.device_text = device_description(config.device)
        self.backend_guide = render(f"backend_{config.backend}")
        self.executor = make_executor(config.executor, config.device, config.eval_workers, run_dir / "sandbox",
                                      config.ray_address)
        self.lock = threading.Lock()  # selection and budget decisions
        self.started = time.monotonic()
        self.provider_failures = 0
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
        return None

    # -- one attempt --------------------------------------------------------------------------

    def _ask(self, provider: Provider, spec: str, role: str, messages: list[Message], candidate_id: int) -> Completion | None:
        """One LLM call, archived as it returns (reply or error, tokens, cost)."""
        started = now()
        try:
            completion, error = provider.complete(role, messages), None
        except ProviderError as err:
            completion, error = None, str(err)
        with self.lock:
            self.provider_failures = self.provider_failures + 1 if error else 0
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
        parent_section = render("parent_none")
        if choice.parent_id is not None:
            parent = self.archive.candidate(choice.parent_id)
            verdict = parent.verdict
            feedback = parent.judge
            parent_section = render(
                "parent", operation_instruction=render(f"operation_{choice.operation}"),
                parent_id=parent.id, parent_source=(parent.source or "").strip(),
                parent_status=verdict.status if verdict else "unknown", parent_reason=verdict.reason if verdict else "",
                parent_message=verdict.message if verdict else "", parent_facts=verdict_facts(verdict) if verdict else "",
                judge_feedback=(f"{feedback['diagnosis']}\nRecommendation: {feedback['recommendation']}"
                                if feedback else "none available"),
            )
        inspirations = []
        for cid in choice.inspiration_ids:
            member = self.archive.candidate(cid)
            speedup = f"{member.speedup:.2f}x" if member.speedup else "speed not measured"
            inspirations.append(render("inspiration", candidate_id=member.id, status=member.verdict_status,
                                       speedup_text=speedup, source=(member.source or "").strip()))
        return [
            Message(role="system", content=render("coder_system")),
            Message(role="user", content=render(
                "coder", task_name=self.task_path.name, task_source=self.task_source.strip(),
                backend_guide=self.backend_guide, device_description=self.device_text,
                parent_section=parent_section, inspiration_section="\n\n".join(inspirations) or "none yet",
            )),
        ]

    def attempt(self, candidate_id: int, choice: Choice) -> None:
        completion = self._ask(self.coder, self.config.model, "coder", self._coder_messages(choice), candidate_id)
        if completion is None:
            self.archive.mark_no_code(candidate_id, "the Coder's provider failed")
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
        kernel_path.write_text(source)
        self.archive.set_candidate_source(candidate_id, source, digest, str(kernel_path))
        if duplicate is not None and duplicate.id != candidate_id:
            self.archive.mark_no_code(candidate_id, f"identical to candidate #{duplicate.id}")
            return
        if self.interrupted:
            return  # pending, with its reply archived: --resume evaluates it
        verdict = self.evaluate(kernel_path)
        if verdict.timing_noisy and fitness(verdict) > self._best_fitness():
            verdict = self._retimed(kernel_path, verdict)  # not crowned on a noisy measurement
        self.archive.record_verdict(candidate_id, verdict, fitness(verdict))
        self.on_update(self)
        if self.interrupted:
            return
        feedback = self.ask_judge(candidate_id, source, verdict)
        if feedback is not None:
            self.archive.record_judge(candidate_id, feedback.model_dump())

    def evaluate(self, kernel_path: Path) -> Verdict:
        request = EvalRequest(
            task_path=str(self.task_path), candidate_path=str(kernel_path), backend=self.config.backend,
            device=self.config.device, seeds=[secrets.randbelow(2**31) for _ in range(3)],
        )
        return self.executor.evaluate(request, timeout_s=self.config.eval_timeout_s)

    def _best_fitness(self) -> float:
        return max((c.fitness or 0.0 for c in self.archive.candidates() if c.verdict_status == "correct"), default=0.0)

    def _retimed(self, kernel_path: Path, first: Verdict) -> Verdict:
        """A fresh evaluation of a candidate whose noisy timing would make it the best. The
        re-timing stands, unless it is noisy too: then the lower of the two speedups (a fluke
        must not crown a candidate). A failing re-evaluation fails the candidate."""
        second = self.evaluate(kernel_path)
        both_noisy = second.status == "correct" and second.timing_noisy
        keep_first = both_noisy and (first.speedup or 0.0) < (second.speedup or 0.0)
        kept, other = (first, second) if keep_first else (second, first)
        measured = f"{other.speedup:.2f}x" if other.speedup is not None else other.status
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
            correct = [c for c in self.archive.candidates() if c.verdict_status == "correct"]
            best = max(correct, key=lambda c: (c.fitness or 0.0, -c.id), default=None)
            if best is None or best.id in self.final_timings or best.speedup is None:
                return
            self.say(f"re-timing the best, candidate #{best.id} ({best.speedup:.2f}x)")
            try:
                verdict = self.evaluate(self.run_dir / "candidates" / f"{best.id:04d}.py")
            except KagentError as err:
                self.say(f"the best could not be re-timed: {err}")
                return
            verdict.artifacts.notes.append(f"re-timed at the end of the run; measured {best.speedup:.2f}x during the search")
            self.archive.record_verdict(best.id, verdict, fitness(verdict))
            self.final_timings[best.id] = verdict

    def ask_judge(self, candidate_id: int, source: str, verdict: Verdict) -> JudgeFeedback | None:
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
        """Candidates a killed run left unfinished: finish those whose reply was recorded."""
        replies = {c.candidate_id: c.reply for c in self.archive.llm_calls(role="coder") if c.reply is not None}
        for record in self.archive.candidates():
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
                done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()  # an unexpected error in an attempt is a bug: surface it
                self.on_update(self)
        except KeyboardInterrupt:
            self.interrupt()
            self.say("stopping: LLM calls in flight finish and are archived (Ctrl-C again to quit now)")
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
        self.executor.close()

    def close(self) -> None:
        self.executor.close()


def write_best(run: Run) -> Path | None:
    best = max((c for c in run.archive.candidates() if c.verdict_status == "correct"),
               key=lambda c: c.fitness or 0.0, default=None)
    if best is None:
        return None
    speedup = f"{best.speedup:.2f}x over eager PyTorch" if best.speedup else "speedup not measured on this device"
    if best.speedup:
        retimed = run.final_timings.get(best.id)
        speedup += ", re-timed at the end of the run" if retimed else ", measured during the search (not re-timed)"
        if best.verdict and best.verdict.timing_noisy:
            speedup += f"; timing noisy (spread {best.verdict.timing_spread:.0%}): not to be trusted"
    header = (
        f"# kagent best kernel: a drop-in ModelNew for {run.task_path.name}\n"
        f"# task: {run.task_path}\n# backend: {run.config.backend}  device: {run.config.device} ({run.device_text})\n"
        f"# speedup: {speedup} (candidate #{best.id})\n# run: {run.run_dir}\n"
    )
    path = run.run_dir / "best.py"
    path.write_text(header + best.source)
    return path


def new_run_dir(config: RunConfig) -> tuple[str, Path]:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_id = f"{stamp}-{Path(config.task_path).stem}-{uuid.uuid4().hex[:4]}"
    return run_id, Path(config.runs_dir) / run_id


def summarize(run: Run, stop_reason: str) -> RunSummary:
    totals = run.archive.totals()
    best_path = write_best(run)
    return RunSummary(
        run_id=run.run_dir.name, run_dir=run.run_dir, stop_reason=stop_reason, candidates=totals.candidates,
        correct=totals.correct, best_candidate_id=totals.best_candidate_id, best_speedup=totals.best_speedup,
        best_path=best_path, tokens=totals.tokens_in + totals.tokens_out, cost_usd=totals.cost_usd,
    )


def start(config: RunConfig, on_update=None) -> Run:
    """Validate the task and the models, then create a run directory and archive; return the
    Run (not started). A bad task, model spec or missing key fails before anything is written."""
    validate_task(config.task_path)
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
    return Run(config, run_dir, archive, coder, judge, on_update)


def reopen(run_dir: Path, overrides: dict, on_update=None) -> Run:
    archive = Archive.open(run_dir, create=False)
    config = RunConfig.model_validate(json.loads(archive.run().config_json) | overrides)
    coder, judge = providers(config)
    archive.set_state("running")
    return Run(config, run_dir, archive, coder, judge, on_update)


def providers(config: RunConfig) -> tuple[Provider, Provider]:
    return (make_provider(config.model, base_url=config.base_url),
            make_provider(config.judge, base_url=config.base_url))
