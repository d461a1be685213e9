"""The run archive: schema migrations, record round-trips, durability, totals."""

from __future__ import annotations

import json
import os
import socket
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kagent.agent.archive import ARCHIVE_FILE, SCHEMA_VERSION, Archive, LLMCallRecord, RunRecord
from kagent.errors import UsageError
from kagent.sandbox.models import Verdict

ROOT = Path(__file__).resolve().parent.parent


def verdict(status="correct", speedup=None, meaningful=False, reason="ok") -> Verdict:
    return Verdict(status=status, reason=reason, message=f"{status} ({reason})", backend="cpp", device="cpu",
                   speedup=speedup, timing_meaningful=meaningful)


def run_record(**overrides) -> RunRecord:
    fields = dict(id="r1", task_path="/tasks/add.py", task_name="add", model="fake:coder", judge_model="fake:judge",
                  backend="cpp", device="cpu", config_json=json.dumps({"iterations": 5, "islands": 2}))
    return RunRecord(**{**fields, **overrides})


@pytest.fixture
def archive(tmp_path):
    with Archive.open(tmp_path / "run", create=True) as archive:
        archive.create_run(run_record())
        yield archive


def test_fresh_archive_is_migrated_and_reopen_keeps_version(tmp_path):
    run_dir = tmp_path / "runs" / "r1"
    with Archive.open(run_dir, create=True) as archive:
        assert archive.schema_version == SCHEMA_VERSION == 2
    conn = sqlite3.connect(run_dir / ARCHIVE_FILE)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"runs", "candidates", "llm_calls"} <= tables
    conn.close()
    with Archive.open(run_dir, create=False) as archive:
        assert archive.schema_version == SCHEMA_VERSION


def test_a_v1_archive_is_migrated_on_open(tmp_path):
    """An archive written before runs.host existed: opening it for writing (a resume) adds the
    column; the run reads back with no host until it is set running again."""
    with Archive.open(tmp_path, create=True) as archive:
        archive.create_run(run_record())
    with sqlite3.connect(tmp_path / ARCHIVE_FILE) as conn:
        conn.execute("ALTER TABLE runs DROP COLUMN host")
        conn.execute("PRAGMA user_version = 1")
    with Archive.open(tmp_path, create=False) as archive:
        assert archive.schema_version == SCHEMA_VERSION
        assert archive.run().host is None
        archive.set_state("running")
        assert archive.run().host == socket.gethostname()


def test_missing_archive_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no run archive"):
        Archive.open(tmp_path / "nope", create=False)
    assert not (tmp_path / "nope").exists()


def test_newer_schema_is_refused(tmp_path):
    Archive.open(tmp_path, create=True).close()
    conn = sqlite3.connect(tmp_path / ARCHIVE_FILE)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(UsageError, match="newer"):
        Archive.open(tmp_path)


def test_run_round_trip_and_state(archive):
    run = archive.run()
    assert run.model_dump(exclude={"created_at", "updated_at", "pid", "host"}) == run_record().model_dump(
        exclude={"created_at", "updated_at", "pid", "host"})
    assert run.pid == os.getpid() and run.host == socket.gethostname() and run.state == "running"
    assert run.created_at.endswith("+00:00")
    archive.set_state("stopped", "budget")
    run = archive.run()
    assert (run.state, run.stop_reason) == ("stopped", "budget")
    with pytest.raises(UsageError):
        archive.create_run(run_record())


def test_run_missing_is_a_usage_error(tmp_path):
    with Archive.open(tmp_path, create=True) as archive, pytest.raises(UsageError, match="no run"):
        archive.run()


def test_candidate_round_trip(archive):
    first = archive.add_candidate(iteration=0, island=0, operation="draft")
    second = archive.add_candidate(iteration=1, island=1, operation="refine", parent_id=first, inspiration_ids=[first])
    pending = archive.candidate(second)
    assert (pending.status, pending.parent_id, pending.inspiration_ids) == ("pending", first, [first])
    assert pending.verdict is None and pending.source is None

    archive.set_candidate_source(second, "def f(): pass\n", "abc", "/runs/r1/kernels/2.py")
    v = verdict("correct", speedup=1.7, meaningful=True)
    archive.record_verdict(second, v, 2.7)
    archive.record_judge(second, {"diagnosis": "memory bound", "suggestions": ["vectorize"]})
    archive.mark_no_code(first, "the reply had no code block")

    got = archive.candidate(second)
    assert got.status == "evaluated" and got.verdict == v
    assert (got.verdict_status, got.verdict_reason, got.speedup, got.fitness) == ("correct", "ok", 1.7, 2.7)
    assert (got.source, got.source_hash, got.kernel_path) == ("def f(): pass\n", "abc", "/runs/r1/kernels/2.py")
    assert got.judge == {"diagnosis": "memory bound", "suggestions": ["vectorize"]}
    assert got.message == v.message and got.evaluated_at
    no_code = archive.candidate(first)
    assert (no_code.status, no_code.message, no_code.verdict) == ("no_code", "the reply had no code block", None)
    assert [c.id for c in archive.candidates()] == [first, second]
    with pytest.raises(KeyError):
        archive.candidate(99)
    with pytest.raises(KeyError):
        archive.record_judge(99, {})


def test_find_by_hash_prefers_evaluated(archive):
    a = archive.add_candidate(iteration=0, island=0, operation="draft")
    b = archive.add_candidate(iteration=1, island=0, operation="draft")
    for cid in (a, b):
        archive.set_candidate_source(cid, "x", "h", None)
    assert archive.find_by_hash("h").id == a
    archive.record_verdict(b, verdict("incorrect", reason="mismatch"), 0.4)
    assert archive.find_by_hash("h").id == b
    assert archive.find_by_hash("other") is None


def test_llm_call_round_trip(archive):
    cid = archive.add_candidate(iteration=0, island=0, operation="draft")
    call = LLMCallRecord(candidate_id=cid, role="coder", provider="fake", model="m",
                         messages_json=json.dumps([{"role": "user", "content": "write a kernel"}]), reply="```py\n```",
                         input_tokens=100, output_tokens=50, tokens_estimated=True, cost_usd=0.01,
                         started_at="2025-01-01T00:00:00.000+00:00", finished_at="2025-01-01T00:00:01.000+00:00")
    first = archive.add_llm_call(call)
    second = archive.add_llm_call(LLMCallRecord(role="judge", provider="fake", model="j", error="HTTP 500"))
    assert archive.llm_calls()[0] == call.model_copy(update={"id": first})
    judge = archive.llm_calls("judge")
    assert [c.id for c in judge] == [second] and judge[0].error == "HTTP 500" and judge[0].reply is None
    assert judge[0].started_at and judge[0].tokens_estimated is False
    assert [c.id for c in archive.llm_calls("coder")] == [first]


def test_totals_and_best(archive):
    assert archive.totals().best_candidate_id is None
    ids = [archive.add_candidate(iteration=i, island=i % 2, operation="draft") for i in range(4)]
    archive.record_verdict(ids[0], verdict("correct", 1.5, True), 2.5)
    archive.record_verdict(ids[1], verdict("correct", 3.0, True), 4.0)
    archive.record_verdict(ids[2], verdict("incorrect", reason="mismatch"), 0.4)
    archive.add_llm_call(LLMCallRecord(role="coder", provider="p", model="m", input_tokens=10, output_tokens=5,
                                       cost_usd=0.5))
    archive.add_llm_call(LLMCallRecord(role="judge", provider="p", model="m", input_tokens=1, output_tokens=2,
                                       cost_usd=0.25))
    totals = archive.totals()
    assert (totals.tokens_in, totals.tokens_out, totals.cost_usd, totals.llm_calls) == (11, 7, 0.75, 2)
    assert (totals.candidates, totals.correct, totals.best_candidate_id, totals.best_speedup) == (4, 2, ids[1], 3.0)


def test_writes_are_visible_to_a_second_connection(archive):
    reader = Archive.open(archive.path.parent)
    try:
        cid = archive.add_candidate(iteration=0, island=0, operation="draft")
        assert [c.id for c in reader.candidates()] == [cid]
        archive.record_verdict(cid, verdict("correct"), 2.0)
        assert reader.candidate(cid).status == "evaluated"
        raw = sqlite3.connect(archive.path)
        assert raw.execute("SELECT COUNT(*) FROM candidates").fetchone()[0] == 1
        raw.close()
    finally:
        reader.close()


def test_threads_share_one_archive(archive):
    import threading

    def work(n):
        for i in range(10):
            archive.add_candidate(iteration=n * 10 + i, island=n, operation="draft")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(archive.candidates()) == 40


def test_sigkill_loses_nothing_written(tmp_path):
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from kagent.agent.archive import Archive, RunRecord
        archive = Archive.open(Path({str(tmp_path)!r}), create=True)
        archive.create_run(RunRecord(id="r", task_path="t", task_name="t", model="m", backend="cpp", device="cpu"))
        for i in range(3):
            cid = archive.add_candidate(iteration=i, island=0, operation="draft")
            archive.set_candidate_source(cid, f"s{{i}}", f"h{{i}}", None)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with Archive.open(tmp_path) as archive:
        assert [c.source_hash for c in archive.candidates()] == ["h0", "h1", "h2"]
        assert archive.run().state == "running"


def test_records_reject_unknown_fields():
    with pytest.raises(ValueError):
        run_record(config={"iterations": 5})
    with pytest.raises(ValueError):
        LLMCallRecord(role="coder", provider="p", model="m", messages=[])
