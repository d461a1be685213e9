"""The run archive: everything one run did, in `runs/<run-id>/archive.db` (SQLite).

Storage only: which candidate to build on next is `agent.selection`'s business.

Written as things happen. Every write is its own committed transaction; the database is in
WAL mode with `synchronous=FULL`, so a reader (`kagent status`, a second process) can read
while a run writes, and a run killed with SIGKILL (or a power cut) loses nothing that a write
call had returned from. One connection, guarded by a lock, may be used from a few threads.

Schema (migration 1; `PRAGMA user_version` holds the number of migrations applied):

    runs         one row: the run this archive belongs to
      id TEXT PRIMARY KEY, task_path, task_name, model, judge_model, backend, device,
      config_json (the run's options, a JSON object),
      state (running | finished | stopped | crashed), stop_reason,
      created_at, updated_at, pid (the process that last set the run running),
      host (the machine that process runs on; migration 2)

    candidates   one row per kernel the Coder was asked for, in creation order
      id INTEGER PRIMARY KEY, iteration, island,
      parent_id (REFERENCES candidates, NULL for a draft), inspiration_ids (JSON list of ids),
      operation (draft | refine | repair),
      source, source_hash, kernel_path (NULL until the Coder's reply is in),
      status (pending | evaluated | no_code),
      verdict_status, verdict_reason, speedup, fitness (copied out of the verdict to query on),
      message (one human line: the verdict's message, or why there was no code),
      verdict_json (the whole sandbox Verdict), judge_json (the Judge's feedback, a JSON object),
      created_at, evaluated_at

    llm_calls    one row per LLM request, in the order they finished (the replay provider reads
                 role, reply and error ordered by id)
      id INTEGER PRIMARY KEY, candidate_id (NULL when not tied to a candidate),
      role (coder | judge), provider, model, messages_json (the request's messages),
      reply, error, input_tokens, output_tokens,
      tokens_estimated (1 when the token counts are estimates, not the provider's),
      cost_usd, started_at, finished_at

Timestamps are UTC ISO 8601 (`2025-01-31T12:00:00.123+00:00`).

A later schema change is a new function appended to MIGRATIONS; never edit an applied one.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, NamedTuple
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from kagent.agent.best import best_candidate
from kagent.agent.present import now
from kagent.errors import UsageError
from kagent.sandbox import Verdict

ARCHIVE_FILE = "archive.db"

RunState = Literal["running", "finished", "stopped", "crashed"]
Operation = Literal["draft", "refine", "repair"]
CandidateStatus = Literal["pending", "evaluated", "no_code"]
Role = Literal["coder", "judge"]


# ---------------------------------------------------------------- schema migrations


def _migration_1(conn: sqlite3.Connection) -> None:
    conn.execute("""
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            task_path TEXT NOT NULL,
            task_name TEXT NOT NULL,
            model TEXT NOT NULL,
            judge_model TEXT,
            backend TEXT NOT NULL,
            device TEXT NOT NULL,
            config_json TEXT NOT NULL DEFAULT '{}',
            state TEXT NOT NULL,
            stop_reason TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            pid INTEGER
        )""")
    conn.execute("""
        CREATE TABLE candidates (
            id INTEGER PRIMARY KEY,
            iteration INTEGER NOT NULL,
            island INTEGER NOT NULL,
            parent_id INTEGER REFERENCES candidates(id),
            inspiration_ids TEXT NOT NULL DEFAULT '[]',
            operation TEXT NOT NULL,
            source TEXT,
            source_hash TEXT,
            kernel_path TEXT,
            status TEXT NOT NULL,
            verdict_status TEXT,
            verdict_reason TEXT,
            speedup REAL,
            fitness REAL,
            message TEXT,
            verdict_json TEXT,
            judge_json TEXT,
            created_at TEXT NOT NULL,
            evaluated_at TEXT
        )""")
    conn.execute("CREATE INDEX candidates_island ON candidates(island)")
    conn.execute("CREATE INDEX candidates_source_hash ON candidates(source_hash)")
    conn.execute("""
        CREATE TABLE llm_calls (
            id INTEGER PRIMARY KEY,
            candidate_id INTEGER,
            role TEXT NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            messages_json TEXT NOT NULL,
            reply TEXT,
            error TEXT,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            tokens_estimated INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL NOT NULL DEFAULT 0,
            started_at TEXT NOT NULL,
            finished_at TEXT NOT NULL
        )""")
    conn.execute("CREATE INDEX llm_calls_role ON llm_calls(role)")


def _migration_2(conn: sqlite3.Connection) -> None:
    # A pid says nothing on another machine (a run executed by a Ray worker): record the host.
    conn.execute("ALTER TABLE runs ADD COLUMN host TEXT")


# MIGRATIONS[i] takes the schema from version i to version i + 1.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migration_1, _migration_2]
SCHEMA_VERSION = len(MIGRATIONS)


# ---------------------------------------------------------------- records


class RunRecord(BaseModel):
    """The `runs` row: the run this archive belongs to (task, models, backend, device, its options as a
    JSON object, state and timestamps in UTC ISO 8601)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    task_path: str
    task_name: str
    model: str
    judge_model: str | None = None
    backend: str
    device: str
    config_json: str = "{}"  # the run's options, a JSON object
    state: RunState = "running"
    stop_reason: str | None = None
    created_at: str | None = None  # filled in by create_run when None
    updated_at: str | None = None
    pid: int | None = None  # create_run fills in this process's pid when None
    host: str | None = None  # and this machine's name


class CandidateRecord(BaseModel):
    """One `candidates` row, with verdict_json parsed into `verdict` and judge_json into `judge`.
    speedup is over eager PyTorch (a ratio, None when not timed); fitness is
    `agent.selection.fitness` of the verdict."""

    model_config = ConfigDict(extra="forbid")

    id: int
    iteration: int
    island: int
    parent_id: int | None = None
    inspiration_ids: list[int] = []
    operation: Operation
    source: str | None = None
    source_hash: str | None = None
    kernel_path: str | None = None
    status: CandidateStatus = "pending"
    verdict_status: str | None = None
    verdict_reason: str | None = None
    speedup: float | None = None
    fitness: float | None = None
    message: str | None = None
    verdict: Verdict | None = None
    judge: dict[str, Any] | None = None
    created_at: str = ""
    evaluated_at: str | None = None


class LLMCallRecord(BaseModel):
    """One `llm_calls` row: the request's messages (a JSON list), the reply or the error, token counts
    (estimates when tokens_estimated), cost in USD, start and finish times."""

    model_config = ConfigDict(extra="forbid")

    id: int | None = None  # set by the archive
    candidate_id: int | None = None
    role: Role
    provider: str
    model: str
    messages_json: str = "[]"  # the request's messages, a JSON list
    reply: str | None = None
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    tokens_estimated: bool = False
    cost_usd: float = 0.0
    started_at: str | None = None  # filled in by add_llm_call when None
    finished_at: str | None = None


class Totals(BaseModel):
    """What a run has spent and found so far: tokens, USD, LLM calls, candidates, correct ones, and the
    best candidate (`agent.best`) with its speedups."""

    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    llm_calls: int = 0
    candidates: int = 0
    correct: int = 0
    best_candidate_id: int | None = None  # the correct candidate with the highest fitness
    best_speedup: float | None = None  # its speedup (None when its timing was not meaningful)
    best_speedup_vs_compile: float | None = None  # its speedup over torch.compile (None: not measured)


# ---------------------------------------------------------------- the archive


def _candidate(row: sqlite3.Row) -> CandidateRecord:
    fields = {key: row[key] for key in row.keys() if key not in ("inspiration_ids", "verdict_json", "judge_json")}
    fields["inspiration_ids"] = json.loads(row["inspiration_ids"] or "[]")
    fields["verdict"] = Verdict.model_validate_json(row["verdict_json"]) if row["verdict_json"] else None
    fields["judge"] = json.loads(row["judge_json"]) if row["judge_json"] else None
    return CandidateRecord(**fields)


def _llm_call(row: sqlite3.Row) -> LLMCallRecord:
    fields = {key: row[key] for key in row.keys()}
    fields["tokens_estimated"] = bool(row["tokens_estimated"])
    return LLMCallRecord(**fields)


class Archive:
    """One run's archive (the SQLite file `run_dir/archive.db`, schema above).

    Open it with `Archive.open(run_dir, create=...)` to write a run, or
    `Archive.open(run_dir, readonly=True)` to look at one (every command that only reads: `runs`,
    `show`, `report`, the `replay:` provider); close() when done, or use it as a context manager.
    A read-only archive never migrates, changes the journal mode or writes, so looking at a run
    leaves its file's bytes and mtime as they were and never disturbs the process writing it;
    its write methods raise sqlite3.OperationalError. Errors: UsageError for a missing,
    unreadable, uninitialised or too new archive; KeyError for an unknown candidate id."""

    def __init__(self, path: Path, readonly: bool = False):
        self.path = Path(path)
        self._lock = threading.RLock()
        if readonly:  # mode=ro: SQLite itself refuses every write on this connection
            uri = f"file:{quote(str(self.path.resolve()))}?mode=ro"
            self._conn = sqlite3.connect(uri, uri=True, timeout=10.0, isolation_level=None, check_same_thread=False)
        else:
            self._conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        try:
            self._conn.execute("PRAGMA busy_timeout = 10000")
            if readonly:
                self._check_readable()
                return
            if self._conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    @classmethod
    def open(cls, run_dir: Path, create: bool = False, readonly: bool = False) -> "Archive":
        """The archive in `run_dir`. With create=True the directory and database are made when
        missing; otherwise a missing archive is a UsageError, and so is one SQLite cannot read.
        With readonly=True (not together with create) nothing is ever written (see the class)."""
        run_dir = Path(run_dir)
        path = run_dir / ARCHIVE_FILE
        if create and readonly:
            raise ValueError("an archive cannot be created read-only")
        if create:
            run_dir.mkdir(parents=True, exist_ok=True)
        elif not path.is_file():
            raise UsageError(f"{run_dir}: no run archive there (no {ARCHIVE_FILE})")
        try:
            return cls(path, readonly=readonly)
        except sqlite3.DatabaseError as err:
            raise UsageError(f"{path}: not a readable run archive ({err})") from None

    def _check_readable(self) -> None:
        """A read-only archive is read as it is: an older schema lacks only later columns."""
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            raise UsageError(f"{self.path}: the run archive is not initialised yet")
        if version > SCHEMA_VERSION:
            raise UsageError(f"{self.path}: archive schema v{version} is newer than this kagent (v{SCHEMA_VERSION})")

    @contextmanager
    def snapshot(self) -> Iterator["Archive"]:
        """Every read inside sees the archive as it was at one moment, even while a run writes
        (one read transaction; WAL mode lets it run beside the writer)."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self
            finally:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")

    def _migrate(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise UsageError(f"{self.path}: archive schema v{version} is newer than this kagent (v{SCHEMA_VERSION})")
        if version == SCHEMA_VERSION:
            return
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                # Re-read under the write lock: another process may have migrated meanwhile.
                version = self._conn.execute("PRAGMA user_version").fetchone()[0]
                for number in range(version, SCHEMA_VERSION):
                    MIGRATIONS[number](self._conn)
                    self._conn.execute(f"PRAGMA user_version = {number + 1}")
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        """The number of migrations applied to this archive (`PRAGMA user_version`)."""
        with self._lock:
            return self._conn.execute("PRAGMA user_version").fetchone()[0]

    def close(self) -> None:
        """Close the connection; the archive cannot be used afterwards."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "Archive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _write(self, sql: str, params: tuple | dict = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._conn.execute(sql, params)  # autocommit: committed on return

    def _read(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    # ------------------------------------------------------------ the run

    def create_run(self, run: RunRecord) -> None:
        """Record the run this archive belongs to, filling in timestamps, pid and host when None.
        UsageError when the archive already holds a run."""
        stamp = now()
        fields = run.model_dump()
        fields["created_at"] = run.created_at or stamp
        fields["updated_at"] = run.updated_at or stamp
        fields["pid"] = run.pid if run.pid is not None else os.getpid()
        fields["host"] = run.host or socket.gethostname()
        try:
            self._write(
                "INSERT INTO runs (id, task_path, task_name, model, judge_model, backend, device, config_json,"
                " state, stop_reason, created_at, updated_at, pid, host) VALUES (:id, :task_path, :task_name,"
                " :model, :judge_model, :backend, :device, :config_json, :state, :stop_reason, :created_at,"
                " :updated_at, :pid, :host)",
                fields,
            )
        except sqlite3.IntegrityError:
            raise UsageError(f"{self.path}: already holds a run") from None

    def run(self) -> RunRecord:
        """The run's record. UsageError when none is recorded yet."""
        rows = self._read("SELECT * FROM runs LIMIT 1")
        if not rows:
            raise UsageError(f"{self.path}: no run recorded in this archive")
        return RunRecord(**{key: rows[0][key] for key in rows[0].keys()})

    def set_state(self, state: RunState, stop_reason: str | None = None) -> None:
        """Set the run's state. Setting it running (a resume) also records this process's pid."""
        if state == "running":
            self._write("UPDATE runs SET state = ?, stop_reason = ?, updated_at = ?, pid = ?, host = ?",
                        (state, stop_reason, now(), os.getpid(), socket.gethostname()))
        else:
            self._write("UPDATE runs SET state = ?, stop_reason = ?, updated_at = ?", (state, stop_reason, now()))

    # ------------------------------------------------------------ candidates

    def add_candidate(self, *, iteration: int, island: int, operation: Operation, parent_id: int | None = None,
                      inspiration_ids: list[int] | None = None) -> int:
        """A new pending candidate, before the Coder is asked (its source comes with
        set_candidate_source); returns its id."""
        cursor = self._write(
            "INSERT INTO candidates (iteration, island, parent_id, inspiration_ids, operation, status, created_at)"
            " VALUES (?, ?, ?, ?, ?, 'pending', ?)",
            (iteration, island, parent_id, json.dumps(list(inspiration_ids or [])), operation, now()),
        )
        return cursor.lastrowid

    def set_candidate_source(self, candidate_id: int, source: str, source_hash: str, kernel_path: str | None) -> None:
        """Record the kernel the Coder wrote for a candidate: its source, SHA-256 hex digest and file
        path. KeyError for an unknown id."""
        self._update(candidate_id, "source = ?, source_hash = ?, kernel_path = ?", (source, source_hash, kernel_path))

    def record_verdict(self, candidate_id: int, verdict: Verdict, fitness: float | None) -> None:
        """Mark a candidate evaluated with the sandbox's verdict and its fitness (None for status
        error). KeyError for an unknown id."""
        self._update(
            candidate_id,
            "status = 'evaluated', verdict_status = ?, verdict_reason = ?, speedup = ?, fitness = ?, message = ?,"
            " verdict_json = ?, evaluated_at = ?",
            (verdict.status, verdict.reason, verdict.speedup, fitness, verdict.message, verdict.model_dump_json(),
             now()),
        )

    def mark_no_code(self, candidate_id: int, message: str) -> None:
        """The Coder's reply held no usable kernel (or the call failed): nothing to evaluate."""
        self._update(candidate_id, "status = 'no_code', message = ?, evaluated_at = ?", (message, now()))

    def record_judge(self, candidate_id: int, feedback: dict[str, Any]) -> None:
        """Store the Judge's feedback (a JSON object) on a candidate. KeyError for an unknown id."""
        self._update(candidate_id, "judge_json = ?", (json.dumps(feedback),))

    def _update(self, candidate_id: int, assignments: str, params: tuple) -> None:
        cursor = self._write(f"UPDATE candidates SET {assignments} WHERE id = ?", (*params, candidate_id))
        if cursor.rowcount == 0:
            raise KeyError(f"no candidate {candidate_id} in {self.path}")

    def candidates(self) -> list[CandidateRecord]:
        """Every candidate, in creation order (by id)."""
        return [_candidate(row) for row in self._read("SELECT * FROM candidates ORDER BY id")]

    def candidate(self, candidate_id: int) -> CandidateRecord:
        """One candidate by id. KeyError when there is none."""
        rows = self._read("SELECT * FROM candidates WHERE id = ?", (candidate_id,))
        if not rows:
            raise KeyError(f"no candidate {candidate_id} in {self.path}")
        return _candidate(rows[0])

    def find_by_hash(self, source_hash: str) -> CandidateRecord | None:
        """The earliest candidate with this source, preferring one already evaluated."""
        rows = self._read(
            "SELECT * FROM candidates WHERE source_hash = ? ORDER BY status = 'evaluated' DESC, id LIMIT 1",
            (source_hash,),
        )
        return _candidate(rows[0]) if rows else None

    # ------------------------------------------------------------ LLM calls

    def add_llm_call(self, call: LLMCallRecord) -> int:
        """Record one LLM call as it returned (reply or error); returns its id. Timestamps default to
        now."""
        stamp = now()
        cursor = self._write(
            "INSERT INTO llm_calls (candidate_id, role, provider, model, messages_json, reply, error, input_tokens,"
            " output_tokens, tokens_estimated, cost_usd, started_at, finished_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (call.candidate_id, call.role, call.provider, call.model, call.messages_json, call.reply,
             call.error, call.input_tokens, call.output_tokens, int(call.tokens_estimated), call.cost_usd,
             call.started_at or stamp, call.finished_at or stamp),
        )
        return cursor.lastrowid

    def tokens_estimated(self) -> bool:
        """Whether any LLM call's token counts are estimates rather than the provider's."""
        return bool(self._read("SELECT COALESCE(MAX(tokens_estimated), 0) FROM llm_calls")[0][0])

    def llm_calls(self, role: Role | None = None) -> list[LLMCallRecord]:
        """The LLM calls in the order they finished, all or those of one role."""
        if role is None:
            rows = self._read("SELECT * FROM llm_calls ORDER BY id")
        else:
            rows = self._read("SELECT * FROM llm_calls WHERE role = ? ORDER BY id", (role,))
        return [_llm_call(row) for row in rows]

    # ------------------------------------------------------------ summary

    def totals(self) -> Totals:
        """Token, cost and candidate counts, and the best candidate (as `agent.best` defines it)
        with its speedup over eager PyTorch and over torch.compile (None: not measured)."""
        with self._lock:
            calls = self._conn.execute(
                "SELECT COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cost_usd), 0),"
                " COUNT(*) FROM llm_calls").fetchone()
            rows = self._conn.execute(
                "SELECT id, verdict_status, fitness, speedup,"
                " json_extract(verdict_json, '$.speedup_vs_compile') AS vs_compile FROM candidates").fetchall()
        best = best_candidate(_Ranked(*row) for row in rows)
        return Totals(
            tokens_in=calls[0], tokens_out=calls[1], cost_usd=calls[2], llm_calls=calls[3],
            candidates=len(rows), correct=sum(row["verdict_status"] == "correct" for row in rows),
            best_candidate_id=best.id if best else None, best_speedup=best.speedup if best else None,
            best_speedup_vs_compile=best.vs_compile if best else None,
        )


class _Ranked(NamedTuple):
    """The columns `agent.best` ranks a candidate by, without parsing its verdict."""

    id: int
    verdict_status: str | None
    fitness: float | None
    speedup: float | None
    vs_compile: float | None
